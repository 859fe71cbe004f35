"""What a run logs besides metrics and files: the pictures of learning and the servable model.

One object per run, so that ``track_run`` needs three small call sites: the snapshots for the
tracker (copies at chosen epochs only), ``start`` when training is over (drawing begins on a
thread while the last metrics are written), and ``log`` among the run's artifacts. The last
decision boundary is also a plain file, ``plots/decision_boundary.png``, beside ``plots/loss.png``.
"""

from __future__ import annotations

from typing import Any, Sequence

from backproplab.numerics.trainer import Step
from backproplab.run.context import RunContext
from ..records.images import ImageThread, PlaneData, Snapshots, log_final_boundary, log_images
from ..records.model import log_model, model_name, servable
from .settings import TrackingSettings


class RunExtras:
    def __init__(self, settings: TrackingSettings, context: RunContext, child_name: str | None = None) -> None:
        """``child_name``: the run's name when it is a sweep's child, which its model's name repeats."""
        self.settings = settings
        self.context = context
        self.child_name = child_name
        self.snapshots: Snapshots | None = None
        if settings.images_enabled and context.iterations_per_epoch > 0:
            self.snapshots = Snapshots(context.network.params, context.epochs, context.iterations_per_epoch, settings.images_max_per_key)
        self._thread: ImageThread | None = None
        self._last: Step | None = None

    def start(self, last: Step | None) -> None:
        """Training is over (``last``: its last iteration, None if none ran): start drawing."""
        self._last = last
        if self.snapshots is None:
            return
        self.snapshots.finish(last)
        plane = PlaneData.of(self.context.dataset, self.context.input_scaling)
        self._thread = ImageThread(self.snapshots, plane, list(self.context.network.activations), self.context.epochs)

    def log(self, client: Any, run_id: str, trained: bool, final: Sequence[tuple[str, float, int, int]] = ()) -> None:
        """The pictures (whatever the run's outcome), then the model of a run that trained to the
        end, linked to the run's ``final`` metrics (key, value, timestamp in ms, step)."""
        if self._thread is not None:
            images = self._thread.wait()
            log_images(client, run_id, images)
            log_final_boundary(client, run_id, images)
        # A context built by hand without its activations cannot be rebuilt where it is served.
        if trained and self.settings.log_model and self._last is not None and servable(self.context):
            log_model(
                client,
                run_id,
                self.context,
                self.settings.register_model,
                step=self._last.iteration + 1,
                name=model_name(self.context, self.child_name),
                final=final,
            )
