"""A run's checkpoint on disk: ``checkpoint/state.json`` and ``checkpoint/state.npz``.

The folder is the job's output folder's ``checkpoint/`` (and a copy of it is the tracked run's
``checkpoint/`` artifacts). No pickle anywhere:

- ``state.npz`` holds the arrays: the parameters (``param/W1``, ...), the optimizer's state
  (``optimizer/<its key>``), each stateful callback's state (``callback/<its place and
  class>/<its key>``: early stopping's best epoch, patience and best parameters), the run's ``History`` as the trainer keeps it (its bounded record of
  losses, ``losses``, and of epoch summaries, ``epochs``: one row of ``EPOCH_COLUMNS`` each, NaN
  for a figure the run has not got, and its last epoch, ``last_epoch``), and the bytes of the
  JSON record written with it (``state_json``);
- ``state.json`` holds the rest: ``format``, ``run_id`` (the MLflow run, or null when untracked),
  ``epoch``, ``iteration``, ``finished`` (true once the run ended FINISHED), ``failed`` (the
  error a run failed with, else null: such a run is not continued), the shuffler's state,
  the current epoch's running sums, the iterations the run was resumed from, the resolved
  config, and where it was launched and wrote its output. It stays small whatever the run's
  length, so that a look at it (is the run finished, whose is it) costs nothing.

Each file is written to a temporary name, fsynced and renamed over the old one (a rename within
one folder is atomic: a killed process leaves the old file or the new one), ``state.npz``
first and ``state.json`` last: a ``state.json`` present means a complete checkpoint. A process
killed between the two renames leaves a newer ``state.npz`` beside the older ``state.json``;
``read`` then takes the record embedded in the npz, so the pair never mixes two checkpoints.
Marking a checkpoint finished rewrites ``state.json`` alone: a record of the same iteration as
the npz's own is the newer word on it.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from backproplab.errors import ConfigError
from backproplab.numerics.trainer import EpochSummary, History, Position

FORMAT = 1
DIRECTORY = "checkpoint"
STATE_JSON = "state.json"
STATE_NPZ = "state.npz"
_CALLBACK = "callback/"
_PARAM, _OPTIMIZER, _LOSSES, _EPOCHS, _LAST_EPOCH, _RECORD = "param/", "optimizer/", "losses", "epochs", "last_epoch", "state_json"
EPOCH_COLUMNS = ("epoch", "iterations", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")


@dataclass
class Checkpoint:
    """Everything a run needs to continue exactly where the checkpoint was written."""

    run_id: str | None
    position: Position
    params: dict[str, np.ndarray]
    optimizer_state: dict[str, np.ndarray]
    # The trainer's History at the checkpoint, thinned exactly as the trainer thins it, so the
    # continued run's History (and result.json) equals the uninterrupted run's.
    history_state: History
    config: dict[str, Any]
    finished: bool = False
    failed: str | None = None  # the error a run failed with: not to be continued
    reason: str = ""  # start | interval | end | a signal's name | finished
    resumed_from: list[int] = field(default_factory=list)  # the iteration of every earlier resume
    overrides: list[str] = field(default_factory=list)
    job_num: int | None = None
    launch_dir: str | None = None
    output_dir: str | None = None
    # Each stateful callback's state, by ``trainer.stateful_callbacks``'s key; None in a
    # checkpoint written before callbacks kept state.
    callback_state: dict[str, dict[str, np.ndarray]] | None = field(default_factory=dict)

    @property
    def iteration(self) -> int:
        return self.position.iteration

    @property
    def epochs_completed(self) -> int:
        return self.history_state.n_epochs

    def history(self) -> History:
        """A fresh copy of the saved History, for a fit to continue."""
        return self.history_state.copy()

    def record(self) -> dict[str, Any]:
        """The JSON record (``state.json``)."""
        p = self.position
        return {
            "format": FORMAT,
            "run_id": self.run_id,
            "epoch": p.epoch,
            "iteration": p.iteration,
            "finished": self.finished,
            "failed": self.failed,
            "reason": self.reason,
            "written_at": time.time(),
            "rng_state": p.rng_state,
            "epoch_loss_sum": p.epoch_loss_sum,
            "epoch_correct": p.epoch_correct,
            "epochs_completed": self.epochs_completed,
            "history": {
                "iterations": self.history_state.iterations,
                "last_loss": self.history_state.last_loss,
                "loss_stride": self.history_state.loss_stride,
                "epoch_stride": self.history_state.epoch_stride,
                "max_points": self.history_state.max_points,
                "stop_reason": self.history_state.stop_reason,
            },
            "callbacks": None if self.callback_state is None else sorted(self.callback_state),
            "resumed_from": list(self.resumed_from),
            "optimizer_keys": sorted(self.optimizer_state),
            "config": self.config,
            "overrides": list(self.overrides),
            "job_num": self.job_num,
            "launch_dir": self.launch_dir,
            "output_dir": self.output_dir,
        }


def _replace(path: Path, data: bytes) -> None:
    """``data`` as ``path``, atomically: a reader sees the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _epoch_rows(epochs: list[EpochSummary]) -> np.ndarray:
    rows = [[np.nan if (v := getattr(summary, c)) is None else v for c in EPOCH_COLUMNS] for summary in epochs]
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(EPOCH_COLUMNS))


def _epoch_summaries(rows: np.ndarray) -> list[EpochSummary]:
    out = []
    for row in rows.tolist():
        values = dict(zip(EPOCH_COLUMNS, row))
        out.append(EpochSummary(
            epoch=int(values.pop("epoch")),
            iterations=int(values.pop("iterations")),
            **{k: None if v != v else v for k, v in values.items()},  # NaN: the figure was not there
        ))
    return out


def write(directory: Path, checkpoint: Checkpoint, *, record_only: bool = False) -> None:
    """Write ``checkpoint`` into ``directory`` (created if need be): npz first, then JSON.
    ``record_only``: the JSON alone, for a change of the record (finished) at the same iteration."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(checkpoint.record())  # no indent: json's C encoder, not its Python one
    if not record_only:
        arrays: dict[str, np.ndarray] = {f"{_PARAM}{name}": np.asarray(value) for name, value in checkpoint.params.items()}
        arrays.update({f"{_OPTIMIZER}{key}": np.asarray(value) for key, value in checkpoint.optimizer_state.items()})
        for owner, state in (checkpoint.callback_state or {}).items():
            arrays.update({f"{_CALLBACK}{owner}/{key}": np.asarray(value) for key, value in state.items()})
        h = checkpoint.history_state
        arrays[_LOSSES] = np.asarray(h.losses, dtype=np.float64)
        arrays[_EPOCHS] = _epoch_rows(h.epochs)
        arrays[_LAST_EPOCH] = _epoch_rows([] if h.last_epoch is None else [h.last_epoch])
        arrays[_RECORD] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        _replace(directory / STATE_NPZ, buffer.getvalue())
    _replace(directory / STATE_JSON, (text + "\n").encode("utf-8"))


def read_record(directory: Path) -> dict[str, Any] | None:
    """``state.json``'s record, or None when the folder holds no checkpoint. A quick look (is it
    finished, whose run is it) without loading the arrays."""
    path = directory / STATE_JSON
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        raise ConfigError(f"{path} is not a checkpoint record (not JSON); valid: a file backproplab wrote") from None
    _check_format(path, record)
    return record


def _check_format(path: Path, record: Any) -> None:
    if not isinstance(record, dict) or not isinstance(record.get("format"), int):
        raise ConfigError(f"{path} is not a checkpoint record; valid: a file backproplab wrote")
    if record["format"] > FORMAT:
        raise ConfigError(f"{path} has checkpoint format {record['format']}, newer than this backproplab's {FORMAT}; valid: upgrade backproplab")


def read(directory: Path) -> Checkpoint | None:
    """The checkpoint in ``directory``, or None when there is none."""
    latest = read_record(directory)
    if latest is None:
        return None
    path = directory / STATE_NPZ
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read ({exc}); valid: the state.npz written with {directory / STATE_JSON}") from None
    record = json.loads(bytes(arrays.pop(_RECORD)).decode("utf-8"))  # the npz's own record: see the module docstring
    _check_format(path, record)
    if (latest.get("run_id"), latest.get("iteration")) == (record.get("run_id"), record.get("iteration")):
        record = latest
    position = Position(
        epoch=int(record["epoch"]),
        iteration=int(record["iteration"]),
        rng_state=record["rng_state"],
        epoch_loss_sum=float(record["epoch_loss_sum"]),
        epoch_correct=float(record["epoch_correct"]),
    )
    return Checkpoint(
        run_id=record.get("run_id"),
        position=position,
        params={k[len(_PARAM):]: v for k, v in arrays.items() if k.startswith(_PARAM)},
        optimizer_state={k[len(_OPTIMIZER):]: v for k, v in arrays.items() if k.startswith(_OPTIMIZER)},
        history_state=_history(record, arrays),
        config=record["config"],
        finished=bool(record["finished"]),
        failed=record.get("failed"),
        reason=str(record.get("reason", "")),
        resumed_from=[int(i) for i in record.get("resumed_from", [])],
        overrides=list(record.get("overrides", [])),
        job_num=record.get("job_num"),
        launch_dir=record.get("launch_dir"),
        output_dir=record.get("output_dir"),
        callback_state=_callback_state(record, arrays),
    )


def _callback_state(record: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]] | None:
    owners = record.get("callbacks")
    if owners is None:
        return None
    state: dict[str, dict[str, np.ndarray]] = {owner: {} for owner in owners}
    for name, value in arrays.items():
        if name.startswith(_CALLBACK):
            owner, _, key = name[len(_CALLBACK):].partition("/")
            state.setdefault(owner, {})[key] = value
    return state


def _history(record: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> History:
    kept = record["history"]
    last = _epoch_summaries(arrays[_LAST_EPOCH])
    last_loss = kept["last_loss"]
    return History(
        losses=[float(v) for v in arrays[_LOSSES]],
        epochs=_epoch_summaries(arrays[_EPOCHS]),
        iterations=int(kept["iterations"]),
        last_loss=None if last_loss is None else float(last_loss),
        last_epoch=last[0] if last else None,
        loss_stride=int(kept["loss_stride"]),
        epoch_stride=int(kept["epoch_stride"]),
        max_points=int(kept["max_points"]),
        stop_reason=kept.get("stop_reason"),
    )


def restore_parameters(params: Mapping[str, np.ndarray], saved: Mapping[str, np.ndarray]) -> None:
    """Copy ``saved`` into the network's own arrays (in place: the trainer and the optimizer
    hold references to them), refusing a checkpoint of another network."""
    if sorted(params) != sorted(saved) or any(params[k].shape != saved[k].shape for k in params):
        ours = ", ".join(f"{k} {params[k].shape}" for k in params)
        theirs = ", ".join(f"{k} {saved[k].shape}" for k in saved)
        raise ConfigError(f"the checkpoint's parameters ({theirs}) do not fit this run's network ({ours}); valid: a checkpoint of the same config")
    for name, value in saved.items():
        np.copyto(params[name], value, casting="no")
