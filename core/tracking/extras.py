"""What a run logs besides metrics and files: the pictures of learning and the servable model.

One object per run, so that ``track_run`` needs three small call sites: the snapshots for the
tracker (copies at chosen epochs only), ``start`` when training is over (drawing begins on a
thread while the last metrics are written), and ``log`` among the run's artifacts.
"""

from __future__ import annotations

from typing import Any

from backproplab.numerics.trainer import Step
from backproplab.run.context import RunContext
from .images import ImageThread, PlaneData, Snapshots, log_images
from .model import log_model, servable
from .settings import TrackingSettings


class RunExtras:
    def __init__(self, settings: TrackingSettings, context: RunContext) -> None:
        self.settings = settings
        self.context = context
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

    def log(self, client: Any, run_id: str, trained: bool) -> None:
        """The pictures (whatever the run's outcome), then the model of a run that trained to the end."""
        if self._thread is not None:
            log_images(client, run_id, self._thread.wait())
        # A context built by hand without its activations cannot be rebuilt where it is served.
        if trained and self.settings.log_model and self._last is not None and servable(self.context):
            log_model(client, run_id, self.context, self.settings.register_model, step=self._last.iteration + 1)
