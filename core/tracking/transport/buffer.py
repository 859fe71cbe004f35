"""Metrics written a block at a time.

A single MLflow write costs milliseconds while a small network trains in microseconds per
iteration, so the hot path only copies numbers into a row of a preallocated array (the tracker's
``lifecycle.callback.MetricBuffer``), and the rows leave it as a ``Block``. At flush time a block
goes to a sink: ``LogBatchSink`` builds MLflow ``Metric`` objects and sends ``log_batch`` calls of
at most ``MAX_METRICS_PER_BATCH`` metrics (MLflow's own limit), and ``sql_writer.SqlMetricSink``
inserts the same rows into a sqlite or PostgreSQL store's tables directly. A block is keys, steps,
timestamps and values: nothing here knows what a metric's name means.

The writer is synchronous by default; ``background=True`` moves conversion and writes to one
thread, which overlaps the sqlite commit with training (see benchmarks/bench_tracking.py).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
from mlflow.entities import Metric

MAX_METRICS_PER_BATCH = 1000


@dataclass
class Block:
    """Rows taken out of the buffer: ready to become ``Metric`` objects off the hot path."""

    keys: tuple[str, ...]
    steps: np.ndarray  # (rows,) int64
    timestamps_ms: np.ndarray  # (rows,) int64
    values: np.ndarray  # (rows, columns) float64, norms already finished
    extra: list[tuple[str, float, int, int]] = field(default_factory=list)  # (key, value, ts_ms, step)

    @property
    def n_metrics(self) -> int:
        return self.values.size + len(self.extra)

    def metrics(self) -> list[Metric]:
        keys = self.keys
        out = [Metric(k, v, t, s) for k, v, t, s in self.extra]
        for step, ts, row in zip(self.steps.tolist(), self.timestamps_ms.tolist(), self.values.tolist()):
            out.extend([Metric(k, v, ts, step) for k, v in zip(keys, row)])
        return out

    def chunks(self, size: int = MAX_METRICS_PER_BATCH) -> Iterator[list[Metric]]:
        metrics = self.metrics()
        for start in range(0, len(metrics), size):
            yield metrics[start : start + size]


class LogBatchSink:
    """Writes a block with ``MlflowClient.log_batch``: works with every MLflow store."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.calls = 0

    def __call__(self, block: Block) -> int:
        written = 0
        for chunk in block.chunks():
            self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)
            written += len(chunk)
            self.calls += 1
        return written

    def close(self) -> None:
        pass


Sink = Callable[[Block], int]


class BatchWriter:
    """Sends blocks to one run through a sink, inline or from one background thread.

    A write error in the background thread is re-raised in the training thread at the next
    ``submit`` or at ``close``, so a broken store still fails the run instead of losing data
    silently. The queue is bounded: a store slower than training applies back-pressure.

    An inline write cut short (Ctrl-C lands mid-transaction, the store hiccups) keeps its block,
    and the next ``submit`` or ``close`` sends it again before anything newer. A resent block is
    safe: the SQL sink's transaction left nothing behind, a tracking server's sink sends only the
    chunks not yet stored, and any other rows are duplicates that ``log_batch`` skips.
    """

    def __init__(self, sink: Sink, run_id: str, *, background: bool = False) -> None:
        self.sink = sink
        self.run_id = run_id
        self.metrics_written = 0
        self._unsent: Block | None = None
        self._error: BaseException | None = None
        self._queue: queue.Queue[Block | None] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=4)
            self._thread = threading.Thread(target=self._drain, name=f"mlflow-writer-{run_id[:8]}", daemon=True)
            self._thread.start()

    @property
    def write_calls(self) -> int:
        """log_batch calls, or transactions for the SQL sink."""
        return getattr(self.sink, "calls", 0)

    def write(self, block: Block) -> None:
        self.metrics_written += self.sink(block)

    def _write_inline(self, block: Block) -> None:
        self._unsent = block
        self.write(block)
        self._unsent = None

    def submit(self, block: Block | None) -> None:
        self._raise_pending()
        if self._queue is None:
            if self._unsent is not None:
                self._write_inline(self._unsent)
            if block is not None:
                self._write_inline(block)
        elif block is not None:
            self._queue.put(block)

    def drain(self) -> None:
        """Wait until every submitted block is written, and keep the writer open (a checkpoint
        is written only once the store holds every step before it)."""
        if self._unsent is not None:
            self._write_inline(self._unsent)
        if self._queue is not None:
            self._queue.join()
        self._raise_pending()

    def close(self) -> None:
        """Wait until every submitted block is written; raise the first write error, if any."""
        if self._unsent is not None:
            self._write_inline(self._unsent)
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        close = getattr(self.sink, "close", None)
        if close is not None:
            close()
        self._raise_pending()

    def _drain(self) -> None:
        assert self._queue is not None
        while True:
            block = self._queue.get()
            if block is None:
                self._queue.task_done()
                return
            if self._error is None:  # after a failure, keep draining so producers never block
                try:
                    self.write(block)
                except BaseException as exc:  # noqa: BLE001 - handed to the training thread
                    self._error = exc
            self._queue.task_done()

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
