"""A tracked run continued from its checkpoint: the same MLflow run, reopened, no step twice.

A checkpoint is written only once every metric before it is in the store (the checkpoint
callback flushes first), so the steps from the checkpoint on are all a resumed run must log.
Some of them may be stored already: those flushed after the checkpoint, before a ``kill -9``.
The resumed run recomputes them (bit for bit the same values), and ``SkipStored`` drops every
metric whose key already has that step in the store, so no step is stored twice or missing.
A run's metrics reach the store in step order per key, so "stored" is "at or below the key's
latest stored step", which one ``get_run`` tells for every key at once.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from backproplab.run.checkpoint import STATE_JSON, STATE_NPZ
from ..transport.buffer import Block, Sink
from ..records.tags import one_line

FAILURE_TAG = "failure_reason"
RESUMED_TAG = "backproplab.resumed_from"
ARTIFACT_DIR = "checkpoint"


def latest_steps(run: Any) -> dict[str, int]:
    """Every metric key of ``run`` with the highest step the store holds for it."""
    return {metric.key: int(metric.step) for metric in run.data.to_proto().metrics}


def reopen(client: Any, run_id: str, tags: Mapping[str, str]) -> dict[str, int]:
    """Set the checkpoint's run RUNNING again, with ``tags`` (this process's, the resumes);
    its latest stored step per metric key."""
    from ..transport.store import stored_run

    run = stored_run(
        client, run_id, missing=f"the checkpoint's MLflow run {run_id} is not in this store",
        valid="logger.tracking_uri of the store the run was logged to",
    )
    stored = latest_steps(run)
    client.update_run(run_id, status="RUNNING")
    if FAILURE_TAG in run.data.tags:
        client.delete_tag(run_id, FAILURE_TAG)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    return stored


class SkipStored:
    """A sink that passes on only the metrics the store does not hold yet (see the module
    docstring); once every row is past the stored steps it is a plain pass-through."""

    def __init__(self, sink: Sink, stored: Mapping[str, int]) -> None:
        self.sink = sink
        self.stored = dict(stored)
        self.horizon = max(self.stored.values(), default=-1)

    def __getattr__(self, name: str) -> Any:  # calls, close, ...: the wrapped sink's
        return getattr(self.sink, name)

    def __call__(self, block: Block) -> int:
        if self.horizon < 0:
            return self.sink(block)
        block = self._unstored(block)
        if block.n_metrics == 0:
            return 0
        return self.sink(block)

    def _unstored(self, block: Block) -> Block:
        stored, horizon = self.stored, self.horizon
        extra = [m for m in block.extra if m[3] > stored.get(m[0], -1)]
        new = block.steps > horizon
        for row in np.flatnonzero(~new).tolist():
            step, ts = int(block.steps[row]), int(block.timestamps_ms[row])
            for key, value in zip(block.keys, block.values[row].tolist()):
                if step > stored.get(key, -1):
                    extra.append((key, value, ts, step))
        if new.all() and block.steps.size and not block.extra:
            self.horizon = -1  # every later block is past what was stored
        return Block(block.keys, block.steps[new], block.timestamps_ms[new], block.values[new], extra)


def publish(client: Any, run_id: str, directory: Path) -> None:
    """The checkpoint in ``directory`` as the run's ``checkpoint/`` artifacts (npz first, as on
    disk), so ``backproplab runs resume RUN_ID`` finds it from any machine. A store that cannot
    take it now leaves the run training: the checkpoint is still in the output folder."""
    try:
        client.log_artifact(run_id, str(directory / STATE_NPZ), ARTIFACT_DIR)
        client.log_artifact(run_id, str(directory / STATE_JSON), ARTIFACT_DIR)
    except Exception as exc:  # noqa: BLE001 - a lost server must not end training
        warnings.warn(f"the checkpoint could not be logged to run {run_id}'s artifacts ({one_line(exc)[:160]}); it is in {directory}", stacklevel=2)
