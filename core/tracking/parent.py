"""Which sweep parent run the current job belongs to.

The sweep callback creates the parent run in the process that starts the multirun, but jobs may
run in other processes (the joblib launcher). The parent is therefore handed over in a small
JSON file in the sweep directory (and, for launchers that do not share a filesystem view of the
sweep directory, an environment variable set before workers are spawned); the callback's
``on_job_start``, which Hydra runs in the job's own process, loads it into ``current``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

ENV_VAR = "BACKPROPLAB_MLFLOW_PARENT"
FILE_NAME = ".mlflow_parent_run.json"


@dataclass(frozen=True)
class ParentRun:
    run_id: str
    tracking_uri: str
    experiment_id: str
    swept_keys: tuple[str, ...] = ()
    # The sweep's one element-wise decision (grad/* and param/* metrics on every child or on
    # none), taken by the parent when the multirun starts; None: each job decides for itself.
    elementwise: bool | None = None
    # A search sweeper (Optuna) samples the values: children are named with the trial number.
    sampled: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ParentRun":
        data = json.loads(text)
        data["swept_keys"] = tuple(data.get("swept_keys", ()))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def elementwise_limit(parent: "ParentRun | None", own_limit: int, n_parameters: int) -> int:
    """The ``elementwise_max_params`` a run applies: its own, unless its sweep decided for every
    child (then one that gives the sweep's answer for this network)."""
    if parent is None or parent.elementwise is None:
        return own_limit
    return n_parameters if parent.elementwise else n_parameters - 1


def swept_overrides(overrides: Sequence[str], keys: Iterable[str]) -> list[str]:
    """The overrides among a job's that set a swept key (``+`` and ``~`` prefixes ignored): what
    tells one child run of a sweep from another, so it names the run."""
    bare = {key.lstrip("+~") for key in keys}
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in bare]


_current: ParentRun | None = None
interrupted = False  # set when a tracked job was killed, so an unfinished sweep ends KILLED
# The one-line error that stopped a multirun before its end (a launcher that could not start its
# jobs), set by the command line; an unfinished sweep's parent then says why it FAILED.
stop_reason: str | None = None


def current() -> ParentRun | None:
    return _current


def set_current(parent: ParentRun | None) -> None:
    global _current
    _current = parent


def publish(parent: ParentRun, sweep_dir: Path) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / FILE_NAME).write_text(parent.to_json())
    os.environ[ENV_VAR] = parent.to_json()


def unpublish() -> None:
    """Forget the environment hand-over; the file stays in the sweep directory as a record."""
    os.environ.pop(ENV_VAR, None)


def discover(sweep_dir: Path | None) -> ParentRun | None:
    """The sweep directory's file wins over the environment: reused worker processes may carry
    the variable of an earlier multirun."""
    if sweep_dir is not None:
        try:
            return ParentRun.from_json((sweep_dir / FILE_NAME).read_text())
        except (OSError, ValueError, TypeError, KeyError):
            pass
    text = os.environ.get(ENV_VAR)
    if text:
        try:
            return ParentRun.from_json(text)
        except (ValueError, TypeError, KeyError):
            return None
    return None
