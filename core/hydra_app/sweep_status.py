"""How the jobs of a multirun ended, and where to look: the last lines of a sweep's output.

A failed job must not stop the sweep, so the task function returns instead of raising, and its
``result.json`` records the outcome with its job number (``hydra.job.num``) and the sweep's id.
When the sweep ends, the launching process (basic or joblib launcher, whose workers are other
processes, or Ray's, on other machines: the files are what reaches back) reads those records
keyed by job number, writes ``sweep_summary.csv`` into the sweep folder, and prints which job
did best and where the results are; its ``SweepOutcome`` then decides the command's exit status
(``command.CommandCallback``, which also has the MLflow parent print where it is).
"""

from __future__ import annotations

import csv
import json
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from backproplab.run.progress import fmt

RESULT_FILE = "result.json"
SUMMARY_FILE = "sweep_summary.csv"
# Set by the launching process before any job starts; jobs copy it into result.json, so that the
# records of an earlier sweep into the same folder are not read as this one's. An environment
# variable because joblib's worker processes inherit it and nothing else from the launcher.
SWEEP_ID_ENV = "BACKPROPLAB_SWEEP_ID"
SUMMARY_COLUMNS = ("job", "status", "overrides", "final_loss", "final_val_loss", "final_train_accuracy", "final_val_accuracy", "error")


@dataclass(frozen=True)
class JobOutcome:
    num: int
    label: str  # the job's swept overrides (all of them when nothing is swept)
    record: dict[str, Any] | None  # its result.json; None when the job left none

    @property
    def ok(self) -> bool:
        return self.record is not None and self.record.get("status") == "ok"

    @property
    def error(self) -> str:
        if self.record is None:
            return "the job ended without a result (result.json missing)"
        return str(self.record.get("error") or "the job failed")


@dataclass(frozen=True)
class SweepOutcome:
    sweep_dir: Path
    jobs: list[JobOutcome]  # in job-number order
    # A search sweeper's (Optuna) direction: "best" is then the best objective
    # (``trainer.objective``, in result.json's ``objective``) rather than the lowest final loss.
    direction: str | None = None

    @property
    def failures(self) -> list[JobOutcome]:
        return [job for job in self.jobs if not job.ok]

    def best(self) -> JobOutcome | None:
        if self.direction is not None:
            scored = [j for j in self.jobs if j.ok and isinstance((j.record or {}).get("objective"), dict)]
            sign = -1.0 if self.direction == "maximize" else 1.0
            return min(scored, key=lambda j: (sign * j.record["objective"]["value"], j.num)) if scored else None  # type: ignore[index]
        key = self.ranked_by()
        finished = [j for j in self.jobs if j.ok and _finite((j.record or {}).get(key))]
        return min(finished, key=lambda j: (j.record[key], j.num)) if finished else None  # type: ignore[index]

    def ranked_by(self) -> str:
        """The record key "best" compares: the final validation loss when any finished job has
        one (the rule the MLflow parent's best child follows too), else the final loss."""
        if any(j.ok and _finite((j.record or {}).get("final_val_loss")) for j in self.jobs):
            return "final_val_loss"
        return "final_loss"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def job_records(sweep_dir: Path, sweep_id: str | None) -> dict[int, dict[str, Any]]:
    """``hydra.job.num`` -> result record of the sweep ``sweep_id`` under ``sweep_dir``."""
    found: dict[int, dict[str, Any]] = {}
    for path in sorted(sweep_dir.glob(f"**/{RESULT_FILE}")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record.get("job"), int) and record.get("sweep_id") == sweep_id:
            found[record["job"]] = {**record, "dir": str(path.parent)}
    return found


def outcome(config: DictConfig, sweep_dir: Path, sweep_id: str | None) -> SweepOutcome:
    from .preflight import expand, sweeper_choice, swept_overrides, swept_parameters

    records = job_records(sweep_dir, sweep_id)
    try:
        expected = expand(config, None)
    except Exception:  # noqa: BLE001 - Hydra reported a sweep it could not expand
        expected = None
    keys = swept_parameters(config)
    jobs = []
    if expected is None:  # a sweeper that picks jobs as it goes: what ran is what there is
        nums = sorted(records)
        overrides = {n: records[n].get("overrides") or [] for n in nums}
    else:
        nums = [job.num for job in expected]
        overrides = {job.num: list(job.overrides) for job in expected}
    for num in nums:
        label = " ".join(swept_overrides(overrides[num], keys) or overrides[num])
        jobs.append(JobOutcome(num, label, records.get(num)))
    direction = None
    if sweeper_choice(config) not in (None, "basic"):
        names = OmegaConf.select(config, "hydra.sweeper.direction", default=None)
        direction = str(getattr(names, "name", names)) if names is not None else "minimize"
    return SweepOutcome(sweep_dir, jobs, direction)


def write_summary(result: SweepOutcome) -> Path:
    path = result.sweep_dir / SUMMARY_FILE
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for job in result.jobs:
            record = job.record or {}
            row = {column: record.get(column) for column in SUMMARY_COLUMNS}
            row.update(job=job.num, status="ok" if job.ok else "failed", overrides=job.label, error=None if job.ok else job.error)
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def report(result: SweepOutcome, summary: Path) -> list[str]:
    """The closing lines: how many jobs finished, the best one, where the results are."""
    n, failed = len(result.jobs), len(result.failures)
    lines = [f"sweep: {n - failed} of {n} jobs finished" + (f", {failed} failed" if failed else "")]
    best = result.best()
    if best is not None and result.direction is not None:
        objective = best.record["objective"]  # type: ignore[index]
        lines.append(f"best: job #{best.num} ({best.label}), {objective['name']} {fmt(objective['value'])} (the search's objective, {result.direction}d)")
    elif best is not None:
        key = result.ranked_by()
        name = "final validation loss" if key == "final_val_loss" else "final loss"
        lines.append(f"best: job #{best.num} ({best.label}), {name} {fmt(best.record[key])}")  # type: ignore[index]
    lines.append(f"results: {_shown(summary)} (one row per job; each job's folder under {_shown(result.sweep_dir)} has its result.json)")
    return lines


def sweep_dir_of(config: DictConfig) -> Path:
    path = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
    cwd = OmegaConf.select(config, "hydra.runtime.cwd")
    return path if path.is_absolute() or not cwd else Path(str(cwd)) / path


class SweepStatus:
    """A sweep's status records, kept by the launching process (``command.CommandCallback``)."""

    def __init__(self) -> None:
        self._sweep_id: str | None = None

    def start(self) -> None:
        self._sweep_id = uuid.uuid4().hex
        os.environ[SWEEP_ID_ENV] = self._sweep_id

    def job_start(self) -> None:
        # A Ray worker is started by its node's raylet, not by this process, so it inherits no
        # environment from it; what reaches it is this object, pickled with the job after
        # start(). (A reused worker may carry an earlier sweep's id: replaced here.)
        if self._sweep_id is not None:
            os.environ[SWEEP_ID_ENV] = self._sweep_id

    def end(self, config: Any) -> SweepOutcome | None:
        """The sweep's outcome, after writing ``sweep_summary.csv`` and printing the closing
        lines; None when no job started (no sweep folder)."""
        sweep_dir = sweep_dir_of(config)
        os.environ.pop(SWEEP_ID_ENV, None)
        if not sweep_dir.is_dir():
            return None
        result = outcome(config, sweep_dir, self._sweep_id)
        summary = write_summary(result)
        for line in report(result, summary):
            print(line, flush=True)
        return result
