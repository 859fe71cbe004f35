"""The one Hydra callback of the ``backproplab`` command: a run's and a sweep's life, in order.

Registered in ``conf/config.yaml`` as ``hydra.callbacks.backproplab``. Hydra calls it with the
config it composed itself, so nothing here composes the run again:

- ``on_run_start`` (before ``run_job`` creates ``outputs/DATE/TIME/``): the single run's checks
  (``preflight.check_run``): config, data, components and the tracking store. A rejected run
  prints its one line and exits 2, leaving no folder.
- ``on_multirun_start`` (before the sweeper writes anything): every job of the sweep composed
  and checked (``preflight.check_sweep``); then, when tracking is on, the MLflow parent run
  (``mlflow_sweep``), given the check's ``SweepPlan`` as a value; then the sweep's status
  records (``sweep_status``).
- ``on_job_start`` / ``on_job_end`` (each job's process, also a joblib or Ray worker, which
  gets this object pickled after ``on_multirun_start``): handed to those two.
- ``on_multirun_end``: the closing lines (best job, summary file), the parent run ended with
  its own closing lines, then the command's exit status, from the sweep's outcome: exit 1
  naming the first failed job when any failed.

One callback rather than three so that these steps run in this order, with values passed from
one to the next: Hydra would call separate callbacks in their config order, and swallow their
exceptions as warnings. Stopping the command is therefore ``SystemExit``, which Hydra lets pass.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from . import preflight
from .error_report import EXIT_FAILED, describe, tracebacks_wanted
from .output_folder import take_output_folder
from .parallel_stop import LauncherStop, WorkerSignals
from .sweep_status import SweepStatus, sweep_dir_of
from .task import tracked


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
        self._status: SweepStatus | None = None
        self._folder: Any = None  # the lock on a folder the user named, held until the command ends
        self._launcher_pid: int | None = None  # the command's pid, when its jobs run in worker processes
        self._stop: LauncherStop | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _stop_if_rejected(preflight.check_run, config)
        self._folder = _stop_if_rejected(lambda c: take_output_folder(c, RunMode.RUN), config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release_folder()

    def _release_folder(self) -> None:
        folder, self._folder = self._folder, None
        if folder is not None:
            folder.release()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        plan = _stop_if_rejected(preflight.check_sweep, config)
        # Before the parent run and the status records, which live in the sweep's folder.
        self._folder = _stop_if_rejected(lambda c: take_output_folder(c, RunMode.MULTIRUN), config)
        if tracked(config.get("logger")):
            from .mlflow_sweep import MlflowSweepCallback  # mlflow only for a tracked sweep

            self._tracking = MlflowSweepCallback()
            self._tracking.on_multirun_start(config, plan=plan)
        self._status = SweepStatus()
        self._status.start()
        if OmegaConf.select(config, "hydra.runtime.choices.hydra/launcher") == "joblib":
            from backproplab.tracking import parent as sweep_parent

            self._launcher_pid = os.getpid()
            parent_run = None if self._tracking is None else sweep_parent.discover(sweep_dir_of(config))
            self._stop = LauncherStop(parent_run).install()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if self._status is not None:
            self._status.job_start()
        if self._tracking is not None:
            self._tracking.on_job_start(config, **kwargs)
        if self._launcher_pid is not None:
            from backproplab.tracking import parent as sweep_parent

            WorkerSignals.at_job_start(self._launcher_pid, sweep_parent.current())

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self._tracking is not None:
            self._tracking.on_job_end(config, job_return, **kwargs)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra 1.4 calls this also after on_multirun_start stopped the command: then the
        # status never started, and there is nothing to report.
        stop, self._stop = self._stop, None
        if stop is not None:
            stop.uninstall()
        status, self._status = self._status, None
        if status is None:
            return
        try:
            self._end_sweep(status, config, **kwargs)
        finally:
            self._release_folder()

    def _end_sweep(self, status: SweepStatus, config: DictConfig, **kwargs: Any) -> None:
        outcome = status.end(config)
        if self._tracking is not None:
            tracking, self._tracking = self._tracking, None
            try:
                tracking.on_multirun_end(config, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the parent is ended FAILED; the exit status still follows
                warnings.warn(f"the sweep's MLflow parent run could not be summarised: {type(exc).__name__}: {exc}")
        if outcome is not None and outcome.failures:
            first = outcome.failures[0]
            print(
                f"error: {len(outcome.failures)} of {len(outcome.jobs)} jobs of the multirun failed; the first, #{first.num} "
                f"({first.label}): {first.error}",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(EXIT_FAILED)
