"""The trainer callback that turns each ``Step`` into one buffered row of metrics.

``on_iteration`` runs inside the training loop, so it only copies numbers into a preallocated
row of a ``MetricBuffer`` (no MLflow objects, no dicts of metric names); everything else happens
at flush time, when the rows leave as a ``Block`` for the transport's writer.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from backproplab.numerics.trainer import Callback, EpochSummary, History, Step
from ..transport.buffer import BatchWriter, Block
from ..records.metric_names import EPOCH, EPOCH_METRICS, MetricLayout
from ..records.images import Snapshots
from ..records.trace import TraceRecorder


class MetricBuffer:
    """Preallocated rows of per-iteration values plus a short list of sparse (per-epoch) metrics.

    The caller writes ``values[n]``, ``steps[n]`` and ``times[n]`` and advances ``n``; ``full``
    tells it when to ``take`` a block. The leading summary columns (loss and norms) of every
    block are kept so the run's plots can be drawn after the metrics have left the process.
    """

    def __init__(self, layout: MetricLayout, max_metrics: int) -> None:
        self.layout = layout
        self.capacity = max(1, max_metrics // layout.n_columns)
        self.values = np.zeros((self.capacity, layout.n_columns), dtype=np.float64)
        self.steps = np.zeros(self.capacity, dtype=np.int64)
        self.times = np.zeros(self.capacity, dtype=np.float64)  # seconds since the epoch
        self.n = 0
        self.extra: list[tuple[str, float, int, int]] = []
        self._summary_steps: list[np.ndarray] = []
        self._summary_values: list[np.ndarray] = []

    def add_sparse(self, key: str, value: float, timestamp_s: float, step: int) -> None:
        self.extra.append((key, float(value), int(timestamp_s * 1000), int(step)))

    def take(self) -> Block | None:
        n = self.n
        if n == 0 and not self.extra:
            return None
        values = self.values[:n].copy()
        self.layout.finish_rows(values)
        steps = self.steps[:n].copy()
        self._summary_steps.append(steps)
        self._summary_values.append(values[:, : self.layout.n_summary].copy())
        block = Block(self.layout.keys, steps, (self.times[:n] * 1000).astype(np.int64), values, self.extra)
        self.n = 0
        self.extra = []
        return block

    def summary(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps, loss-and-norm columns) of everything taken so far, for plotting."""
        if not self._summary_steps:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.layout.n_summary))
        return np.concatenate(self._summary_steps), np.concatenate(self._summary_values)


class MlflowTracker(Callback):
    """Per-iteration and per-epoch metrics of one run, written through a ``BatchWriter``.

    Per-epoch metrics use step = the number of iterations completed at the end of the epoch
    (``EpochSummary.iterations``), so on MLflow's shared step axis they sit just after the last
    iteration of that epoch.

    ``epoch`` is logged at every step that carries another metric, as the epochs completed at that
    step (step / iterations per epoch: 0.5 half-way through the first epoch, 3 at the end of the
    third), because MLflow's charts plot a metric against another only at the steps both have.
    The per-iteration rows carry it as one more column; a per-epoch step gets its own point only
    when no iteration row lands on it (the last epoch, a thinned-out step).
    """

    def __init__(
        self,
        layout: MetricLayout,
        writer: BatchWriter,
        *,
        max_metrics: int,
        every_n_iterations: int = 1,
        every_n_epochs: int = 1,
        total_epochs: int = 0,
        iterations_per_epoch: int = 0,
        flush_interval_s: float = 15.0,
        trace: TraceRecorder | None = None,
        snapshots: Snapshots | None = None,
    ) -> None:
        self.layout = layout
        self.writer = writer
        self.buffer = MetricBuffer(layout, max_metrics)
        self.every = every_n_iterations
        self.every_epoch = every_n_epochs
        self.total_epochs = total_epochs
        self.flush_interval_s = flush_interval_s
        self.trace = trace
        # Pictures of learning (images.py): parameters and gradients copied at a few chosen epochs.
        self.snapshots = snapshots
        self._snapshot_iteration = -1 if snapshots is None else snapshots.grad_iteration
        # The epochs' summaries, kept as the trainer's History keeps them: all of a run of up to
        # HISTORY_POINTS epochs, an evenly thinned record of a longer one, so that a tracked run's
        # memory does not grow with its length either.
        self._epochs = History()
        self.last_step: Step | None = None
        self.stop_reason: str | None = None  # why training ended early, when a callback ended it
        # Unknown (0) only for callers that do not say: then whole epochs, which still agree
        # with the per-epoch points.
        self._ipe = iterations_per_epoch if iterations_per_epoch > 0 else None
        self._epoch_column = layout.epoch_column
        self._epoch_pending: tuple[int, float] | None = None  # (step, epochs) an iteration row should cover
        self._next_flush = time.time() + flush_interval_s
        # Precomputed (param, start, stop) triples: the hot path never builds names.
        self._grad_slots = [(s.param, s.start, s.stop) for s in layout.grad_slots]
        self._param_slots = [(s.param, s.start, s.stop) for s in layout.param_slots]
        self._norm_slots = [(c, which == "grad", p) for c, which, p in layout.norm_columns]
        # Set by ``track_run``: the run's id and how a checkpoint becomes its artifacts, which the
        # run's checkpoint callback (``backproplab.run.checkpointing``) picks up.
        self.run_id: str | None = None
        self.publish_checkpoint: Callable[[Path], None] | None = None

    def continue_after(self, history: History) -> None:
        """Take up a run resumed after ``history`` (already logged before its checkpoint): its
        epochs count for the final metrics, the description and the plots, and the next
        iteration's row carries the ``epoch`` value of the last one's end, as it would have
        uninterrupted. A long run's history is thinned; the counts come from its last epoch."""
        self._epochs = History(
            epochs=list(history.epochs), last_epoch=history.last_epoch, epoch_stride=history.epoch_stride,
            max_points=history.max_points,
        )
        last = history.last_epoch
        if last is not None:
            self._epoch_pending = (last.iterations, last.epoch + 1 if self._ipe is None else last.iterations / self._ipe)

    @property
    def epochs(self) -> list[EpochSummary]:
        """The epochs' summaries as kept (see ``__init__``), always ending with the last epoch."""
        kept, last = self._epochs.epochs, self._epochs.last_epoch
        if last is not None and (not kept or kept[-1] is not last):
            return [*kept, last]
        return kept

    def flush_and_wait(self) -> None:
        """Everything buffered written into the store before this returns (before a checkpoint)."""
        self.flush()
        self.writer.drain()

    def on_iteration(self, step: Step) -> None:
        self.last_step = step  # the trainer's one live view: where a stopped run stopped
        if self.trace is not None:
            self.trace.record(step)
        iteration = step.iteration
        if iteration == self._snapshot_iteration:
            self.snapshots.grads(step)
            self._snapshot_iteration = -1  # until the epoch's end chooses the next one
        if iteration % self.every:
            return
        buf = self.buffer
        n = buf.n
        row = buf.values[n]
        row[0] = step.loss
        row[self._epoch_column] = step.epoch if self._ipe is None else iteration / self._ipe
        grads = step.grads
        if self._grad_slots:
            params = step.params
            for name, start, stop in self._grad_slots:
                row[start:stop] = grads[name].ravel()
            for name, start, stop in self._param_slots:
                row[start:stop] = params[name].ravel()
        else:
            params = step.params
            vdot = np.vdot
            for column, is_grad, name in self._norm_slots:
                v = grads[name] if is_grad else params[name]
                row[column] = vdot(v, v)
        now = time.time()
        buf.steps[n] = iteration
        buf.times[n] = now
        buf.n = n + 1
        if buf.n == buf.capacity or now >= self._next_flush:
            self.flush()

    def on_epoch_end(self, summary: EpochSummary) -> None:
        self._epochs.add_epoch(summary)
        if self.snapshots is not None:
            self.snapshots.epoch_end(summary)
            self._snapshot_iteration = self.snapshots.grad_iteration
        if (self.total_epochs - summary.epoch - 1) % self.every_epoch:
            return
        now = time.time()
        for field_name, key in EPOCH_METRICS.items():
            value = getattr(summary, field_name)
            if value is not None:
                self.buffer.add_sparse(key, value, now, summary.iterations)
        # The same formula as the iteration rows', so both give one value at a shared step.
        completed = summary.epoch + 1 if self._ipe is None else summary.iterations / self._ipe
        if summary.iterations % self.every:
            self.buffer.add_sparse(EPOCH, completed, now, summary.iterations)
        else:
            # The next iteration's row is logged at this very step with this value; only a run
            # that ends before that row exists needs the point here (see ``close``).
            self._epoch_pending = (summary.iterations, completed)

    def on_train_end(self, history: History) -> None:
        self.stop_reason = history.stop_reason

    def flush(self) -> None:
        self.writer.submit(self.buffer.take())
        self._next_flush = time.time() + self.flush_interval_s

    def close(self, before_write: Callable[[], None] | None = None) -> None:
        """Flush what is buffered and wait for every write to land.

        ``before_write`` runs once the last rows are taken (so ``summary`` is complete) and before
        they are written: the run's plots start rendering there, on a thread, while this one
        waits for the store.
        """
        pending = self._epoch_pending
        if pending is not None and (self.last_step is None or self.last_step.iteration < pending[0]):
            self.buffer.add_sparse(EPOCH, pending[1], time.time(), pending[0])
        try:
            block = self.buffer.take()
            if before_write is not None:
                before_write()
            self.writer.submit(block)
        finally:
            self.writer.close()

    def summary(self) -> tuple[np.ndarray, np.ndarray]:
        return self.buffer.summary()

    def describe(self) -> dict[str, Any]:
        return {"metrics_written": self.writer.metrics_written, "write_calls": self.writer.write_calls}
