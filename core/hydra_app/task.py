"""The Hydra application behind ``backproplab``: compose, run one job, record its result.

Importing this module stores the generated config nodes (components, experiments) in Hydra's
ConfigStore. That must happen at import, not in ``main``: the joblib launcher composes each
job's config inside a worker process, which only imports the module of the task function.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from backproplab.errors import BackproplabError
from backproplab.run import job as app
from backproplab.tracking.records.naming import typed_overrides
from . import preflight
from .config_store import register_configs
from .compat import main_options
from .error_report import describe, one_line_warnings, stdout_closed, tracebacks_wanted
from backproplab.run.sweep import RESULT_FILE, REUSE, Sweep

register_configs()


def _write_result(out_dir: Path, record: dict[str, Any], hc: Any, sweep: Sweep | None) -> None:
    if hc.mode == RunMode.MULTIRUN:  # what the launching process reads the job's outcome by
        record["job"] = int(hc.job.num)
        record["sweep_id"] = None if sweep is None else sweep.sweep_id
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULT_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def tracked(logger: Any) -> bool:
    """Whether a run or sweep with this ``logger`` node is tracked: anything but ``logger=none``."""
    return logger is not None and logger.get("name") != "none"


def tracker_for(logger: Any, parent: Any = None) -> app.TrackRun:
    """MLflow unless ``logger=none``, as a child of the sweep's ``parent`` run when there is one.
    Imported only for a tracked run: mlflow costs about a second of start-up, which logger=none,
    explain and compose should not pay."""
    if not tracked(logger):
        return app.untracked
    from backproplab.tracking import track_run

    return functools.partial(track_run, parent=parent)


class TrialFailed(BackproplabError):
    """A job of a search sweep (Optuna) that failed. Raised, not returned: the sweeper marks a
    trial whose job raised as failed and goes on (backproplab sets its max_failure_rate to 1
    unless the user chose one), whereas a returned NaN would make Optuna's ``tell`` raise and
    end the study. One message argument, so it pickles back from a joblib worker."""


def searching(hc: Any) -> bool:
    """Whether the job belongs to a sweeper that reads the task's return value (Optuna and its
    kind), rather than Hydra's basic sweeper, which ignores it."""
    return hc.mode == RunMode.MULTIRUN and OmegaConf.select(hc, "runtime.choices.hydra/sweeper") not in (None, "basic")


class Task:
    """Hydra's task function: one job (see ``__call__``). The command's callback hands each job
    what the command already knows (``hand_over``, from its ``on_job_start``, in the job's own
    process): the single run its check prepared, or the sweep the job belongs to. Hydra calls a
    task with its config alone, and passes the task to ``on_job_start``: this is the path."""

    def __init__(self) -> None:
        self._prepared: Any = None
        self._sweep: Sweep | None = None

    def hand_over(self, *, prepared: Any = None, sweep: Sweep | None = None) -> None:
        self._prepared, self._sweep = prepared, sweep

    def _taken(self, cfg: DictConfig) -> tuple[Any, Sweep | None]:
        prepared, sweep = self._prepared, self._sweep
        self._prepared = self._sweep = None  # at most once: training changes the network it holds
        if prepared is not None:
            from backproplab.run.config import to_container

            try:
                if preflight.identity(to_container(cfg)) != preflight.identity(prepared.config.resolved):
                    prepared = None
            except Exception:  # noqa: BLE001 - the job prepares it afresh and reports the problem itself
                prepared = None
        return prepared, sweep

    def __call__(self, cfg: DictConfig) -> float | dict[str, Any] | None:
        return task(cfg, *self._taken(cfg))


def _reused(out_dir: Path, label: str, hc: Any) -> dict[str, Any] | None:
    """A finished job of a continued sweep: its earlier record, not run again."""
    try:
        record = json.loads((out_dir / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("status") != "ok":
        return None
    final = record.get("final_loss")
    shown = "no loss" if final is None else f"final loss {final:.6f}"
    print(f"{label}reused: finished in an earlier run of this sweep ({shown})", flush=True)
    return record


def task(cfg: DictConfig, prepared: Any = None, sweep: Sweep | None = None) -> float | dict[str, Any] | None:
    """One job; returns its objective (``trainer.objective``), the number a search sweeper
    optimises. A failed single run prints its one line and ends the command with its exit code
    (``SystemExit``, which Hydra passes on without an "Error executing job" report of its own); a
    multirun job prints it and returns its result record, so the sweep carries on with the next
    job; a search sweep's job raises ``TrialFailed`` after that, so the trial is marked failed.
    A job the continued ``sweep`` reuses returns its earlier record without training."""
    one_line_warnings()  # a joblib worker process never ran the CLI's main()
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    overrides = list(hc.overrides.task)
    out_dir = Path(hc.runtime.output_dir)
    label = f"[{' '.join(typed_overrides(overrides))}] " if multirun and overrides else ""
    if multirun and sweep is not None and sweep.decision(int(hc.job.num)) == REUSE:
        record = _reused(out_dir, label, hc)
        if record is not None:
            objective = record.get("objective")
            return objective["value"] if isinstance(objective, dict) and searching(hc) else record
    try:
        # Python shows a warning once per code location per process; a fresh filter state per
        # job gives every job of a multirun its own warnings (e.g. the batch_size clamp).
        with warnings.catch_warnings():
            warnings.simplefilter("default", UserWarning)
            # A library's deprecation warning speaks to its callers' developers, not to the user
            # of a run, as Python's own default filters say; some (pyparsing's, raised inside an
            # older matplotlib) are UserWarnings too, which the line above would show.
            warnings.simplefilter("ignore", DeprecationWarning)
            result, _ = app.run(
                cfg,
                overrides,
                prepared=prepared,
                track=tracker_for(cfg.logger, None if sweep is None else sweep.parent),
                multirun=multirun,
                label=label,
                job_num=hc.job.num if multirun else None,
                launch_dir=hc.runtime.cwd,
                output_dir=out_dir,
            )
    except Exception as exc:
        line, code = describe(exc)
        record = app.failed_result(exc, line.removeprefix("error: "), overrides).to_json()
        _write_result(out_dir, record, hc, sweep)
        if tracebacks_wanted():
            traceback.print_exc()
        if not multirun:
            if isinstance(exc, BrokenPipeError):  # stdout's reader went away: end quietly
                raise SystemExit(stdout_closed()) from None
            print(line, file=sys.stderr, flush=True)
            raise SystemExit(code) from None
        print(f"{label}job failed: {record['error']}", file=sys.stderr, flush=True)
        if searching(hc):
            raise TrialFailed(record["error"]) from None
        return record
    record = result.to_json()
    objective = None
    if result.status == "ok":
        try:
            key, objective = result.objective(str(OmegaConf.select(cfg, "trainer.objective", default="auto")))
            record["objective"] = {"name": key, "value": objective}
        except BackproplabError as exc:
            if searching(hc):  # nothing to optimise: a failed trial, its record says why
                record.update(status="failed", error=str(exc))
    _write_result(out_dir, record, hc, sweep)
    print(f"{label}{result.summary()}", flush=True)
    if result.warning is not None:
        print(f"{label}warning: {result.warning}", file=sys.stderr, flush=True)
    if record["status"] != "ok" and searching(hc):
        print(f"{label}job failed: {record['error']}", file=sys.stderr, flush=True)
        raise TrialFailed(record["error"])
    return objective if objective is not None else record


main = hydra.main(config_path="pkg://backproplab.conf", config_name="config", **main_options())(Task())
