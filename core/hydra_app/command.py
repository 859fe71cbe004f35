"""The one Hydra callback of the ``backproplab`` command: a run's and a sweep's life, in order.

Registered in ``conf/config.yaml`` as ``hydra.callbacks.backproplab``. Hydra calls it with the
config it composed itself, so nothing here composes the run again:

- ``on_run_start`` (before ``run_job`` creates ``outputs/DATE/TIME/``): the single run's checks
  (``preflight.check_run``): config, data, components and the tracking store. A rejected run
  prints its one line and exits 2, leaving no folder. The run the check prepared is handed to
  the task in ``on_job_start``, so its data are loaded once.
- ``on_multirun_start`` (before the sweeper writes anything): every job of the sweep composed
  and checked (``preflight.check_sweep``), through a config loader that keeps each job's
  composition for the sweeper's and the basic launcher's requests (``ComposedOnce``); the
  sweep's one object (``run.sweep.Sweep``), which continues the sweep recorded in the same
  folder (or refuses another sweep there); when tracking is on, the MLflow parent run, new or
  continued (``mlflow_sweep``); each job's decision (reuse, resume, run); then the sweep's
  record in its folder.
- ``on_job_start`` / ``on_job_end`` (each job's process, also a joblib or Ray worker, which
  gets this object pickled after ``on_multirun_start``): the sweep handed to the task, MLflow's
  own "View run" lines off, and a failed job's child run made sure of.
- ``on_multirun_end``: the sweep's outcome, ranked by its one best-job rule: ``sweep_summary.csv``
  written once, the parent run given the same answer and ended, then the closing block as the
  console's last lines, then the command's exit status: exit 1 naming the first failed job.

One callback rather than three so that these steps run in this order, with values passed from
one to the next: Hydra would call separate callbacks in their config order, and swallow their
exceptions as warnings. Stopping the command is therefore ``SystemExit``, which Hydra lets pass.
"""

from __future__ import annotations

import atexit
import os
import sys
import traceback
import warnings
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from backproplab.run.sweep import Sweep, closing_lines, summary_rows, write_summary

from . import preflight
from .composed_once import ComposedOnce
from .error_report import EXIT_FAILED, describe, tracebacks_wanted
from .hydra_private import replace_config_loader
from .launch import CURRENT_LAUNCH, Launch
from .output_folder import take_output_folder
from .parallel_stop import LauncherStop, WorkerSignals
from .sweep_status import sweep_of
from .task import tracked

# MLflow's own "View run ... at: URL" line after each run it ends (MLflow's documented switch):
# in a sweep, dozens of them would bury the closing block, which names the parent's address.
MLFLOW_URL_LINES = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def _stop_if_rejected(check: Any, config: DictConfig) -> Any:
    """``check(config)``'s result, or the command stopped with the error's one line and code."""
    try:
        return check(config)
    except Exception as exc:  # noqa: BLE001 - every check failure is reported as one line
        if tracebacks_wanted():
            traceback.print_exc()
        line, code = describe(exc)
        print(line, file=sys.stderr, flush=True)
        raise SystemExit(code) from None


class CommandCallback(Callback):
    def __init__(self) -> None:
        self._tracking: Any = None  # mlflow_sweep.MlflowSweepCallback, when tracking is on
        self._sweep: Sweep | None = None
        self._prepared: Any = None  # the single run the check prepared, for its task
        self._prepared_jobs: dict[int, Any] = {}  # the same for each job of a sweep, by number
        self._folder: Any = None  # the lock on a folder the user named, held until the command ends
        self._launcher_pid: int | None = None  # the command's pid, when its jobs run in worker processes
        self._stop: LauncherStop | None = None
        self._launch: Launch | None = None  # the command line's, taken when a sweep starts
        self._composed: ComposedOnce | None = None  # the sweep's job configs, composed once

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into joblib and Ray workers with each job: the sweep, not a prepared run, and
        # not the command's own lock on its folder nor its launch.
        return {
            **self.__dict__, "_prepared": None, "_prepared_jobs": {}, "_folder": None, "_launch": None, "_composed": None,
        }

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._prepared = _stop_if_rejected(preflight.check_run, config)
        self._folder = _stop_if_rejected(lambda c: take_output_folder(c, RunMode.RUN), config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release_folder()

    def _release_folder(self) -> None:
        folder, self._folder = self._folder, None
        if folder is not None:
            folder.release()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._launch = CURRENT_LAUNCH.get()
        self._composed = replace_config_loader(ComposedOnce)
        plan = _stop_if_rejected(preflight.check_sweep, config)
        _stop_if_rejected(preflight.check_store, config)
        # Before the sweep's record and the parent run are read or written: both live in the
        # sweep's folder, whose name this settles.
        self._folder = _stop_if_rejected(lambda c: take_output_folder(c, RunMode.MULTIRUN), config)
        sweep = _stop_if_rejected(sweep_of, config)
        finished = None
        if tracked(config.get("logger")):
            from .mlflow_sweep import MlflowSweepCallback  # mlflow only for a tracked sweep

            os.environ[MLFLOW_URL_LINES] = "true"
            self._tracking = MlflowSweepCallback()
            finished = _stop_if_rejected(lambda c: self._tracking.start(c, sweep, plan), config)
        elif sweep.parent is not None:
            sweep.parent = None  # an untracked run of a sweep tracked before: its jobs log nothing
        sweep.decide(finished)
        if self._tracking is not None:
            self._tracking.prepare(sweep)
        sweep.write()
        self._sweep = sweep
        self._prepared_jobs = dict(plan.prepared) if plan is not None else {}
        _quiet_launcher(config)
        if _launcher(config) == "joblib":
            self._launcher_pid = os.getpid()
            self._stop = LauncherStop(sweep.parent).install()
        atexit.register(self._abandon)
        line = sweep.plan_line()
        if line is not None:
            print(line, flush=True)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        task = kwargs.get("task_function")
        if self._sweep is not None and self._tracking is not None:
            os.environ[MLFLOW_URL_LINES] = "true"  # the job's own process (a worker's environment is its own)
        if task is not None and hasattr(task, "hand_over"):
            prepared, self._prepared = self._prepared, None
            if self._sweep is not None:
                prepared = self._prepared_jobs.pop(OmegaConf.select(config, "hydra.job.num"), None)
            task.hand_over(prepared=prepared, sweep=self._sweep)
        if self._launcher_pid is not None:
            WorkerSignals.at_job_start(self._launcher_pid, None if self._sweep is None else self._sweep.parent)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self._tracking is not None and self._sweep is not None:
            self._tracking.on_job_end(config, job_return, self._sweep)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra 1.4 calls this also after on_multirun_start stopped the command: then no sweep
        # started, and there is nothing to report.
        stop, self._stop = self._stop, None
        if stop is not None:
            stop.uninstall()
        sweep, self._sweep = self._sweep, None
        self._prepared_jobs = {}
        self._forget_compositions()
        if sweep is None:
            return
        try:
            self._end_sweep(sweep, config)
        finally:
            self._release_folder()

    def _forget_compositions(self) -> None:
        composed, self._composed = self._composed, None
        if composed is not None:
            composed.forget()

    def _end_sweep(self, sweep: Sweep, config: DictConfig) -> None:
        lines, outcomes = self._close(sweep, None)
        _flush_launcher_output(config)
        for line in lines:
            print(line, flush=True)
        failures = [o for o in outcomes if not o.ok]
        if failures:
            first = failures[0]
            print(
                f"error: {len(failures)} of {len(outcomes)} jobs of the multirun failed; the first, #{first.num} "
                f"({first.label}): {first.error}",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(EXIT_FAILED)

    def _close(self, sweep: Sweep, abandoned: str | None) -> tuple[list[str], list[Any]]:
        """The sweep's outcome: the summary written, the parent (if any) ended with the same
        answer; the closing lines and the outcomes."""
        tracking, self._tracking = self._tracking, None
        children = []
        if tracking is not None:
            try:
                children = tracking.children(sweep)
            except Exception as exc:  # noqa: BLE001 - the console's summary stands without them
                warnings.warn(f"the sweep's MLflow child runs could not be read: {type(exc).__name__}: {exc}")
        outcomes = sweep.outcomes(children)
        rule = sweep.rule(outcomes)
        summary = None
        if sweep.sweep_dir.is_dir():
            summary = write_summary(sweep, summary_rows(sweep, outcomes, rule))
        lines = [] if summary is None or abandoned is not None else closing_lines(sweep, outcomes, rule, summary)
        if tracking is not None:
            try:
                lines += tracking.end(sweep, outcomes, rule, summary, abandoned)
            except Exception as exc:  # noqa: BLE001 - the parent is ended FAILED; the exit status still follows
                warnings.warn(f"the sweep's MLflow parent run could not be summarised: {type(exc).__name__}: {exc}")
        return lines, outcomes

    def _abandon(self) -> None:
        """At exit, a sweep that never reached ``on_multirun_end`` (a job raised past the app,
        Ctrl-C, a launcher that failed): its parent ended with why."""
        sweep, self._sweep = self._sweep, None
        if sweep is None or self._tracking is None:
            return
        reason = None if self._launch is None else self._launch.stop_reason
        if reason in ("interrupted", "interrupted (SIGTERM)", "interrupted (SIGINT)"):
            reason = "interrupted"
        elif reason:
            reason = f"the multirun stopped before its end: {reason}"
        else:
            reason = "the multirun stopped before its end (a job raised)"
        self._close(sweep, reason)


def _launcher(config: DictConfig) -> Any:
    choices = OmegaConf.select(config, "hydra.runtime.choices", default=None) or {}
    return choices.get("hydra/launcher")


def _quiet_launcher(config: DictConfig) -> None:
    """Ray's driver folds lines that repeat across workers into ``[repeated 3x across cluster]``
    notes, which hide per-job lines and arrive late; its documented switch turns that off, read
    when the launcher first imports Ray (after this)."""
    if _launcher(config) == "ray" and "ray" not in sys.modules:
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def _flush_launcher_output(config: DictConfig) -> None:
    """What the launcher still has to print, printed before the closing block: Ray's driver
    streams its workers' lines (and their de-duplication notes) on a thread of its own."""
    if _launcher(config) != "ray" or "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        ray.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
