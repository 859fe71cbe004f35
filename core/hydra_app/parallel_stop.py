"""Stopping a parallel sweep (the joblib launcher) without orphans and without RUNNING runs.

The joblib launcher runs the jobs in loky worker processes, children of the command. Left to
themselves, a signal to the command ends it at once: its MLflow parent run stays RUNNING and the
workers are orphaned (they finish their job, then wait for work that never comes). And loky
SIGKILLs every worker as soon as one dies, possibly while another's child run is being saved.
Three parts stop a sweep cleanly instead:

- ``LauncherStop``, the command's SIGINT and SIGTERM handler for the sweep's life: the first
  signal sends SIGTERM to every worker (the interrupt it raises at the end ends the parent run
  KILLED, as its children are); then it waits until no child run of the sweep is RUNNING in the store, and raises the
  interrupt itself (exit 130 or 143). joblib, aborting, kills the workers, idle by then.
- ``WorkerSignals``, each worker's handler, installed at its first job: a signal during a job
  ends the job (a tracked run's own guard, ``track_run``, ends training after the current
  iteration and saves the run KILLED with everything it had); outside a job it is only noted, so
  that no worker dies while another is saving, and a job that would start afterwards does not.
- its watch, a daemon thread of each worker: when the command is gone without a word (``kill
  -9``), the worker ends the sweep's parent run KILLED, signals itself as the command would have,
  and exits once its job has ended.

Linux and other systems with ``/proc``: elsewhere the command does not find its workers, and
only a worker's own watch applies.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from backproplab.tracking.lifecycle import parent as sweep_parent
from backproplab.tracking.transport.signals import interrupt_for

WORKER_MODULE = "popen_loky_posix"  # what loky runs a worker process as (``python -m ...``)
# How often the command asks the store whether the child runs are saved, and a worker checks
# that its command lives.
POLL_SECONDS = 0.2
# How long the command waits for the child runs to be saved: saving takes seconds; this only
# bounds a worker that hangs.
GRACE_SECONDS = 300.0
WATCH_THREAD = "backproplab-parent-watch"


def worker_pids(parent: int | None = None) -> list[int]:
    """The loky worker processes among ``parent``'s (default: this process's) children."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid == parent and WORKER_MODULE in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A child that exited but was not reaped yet is a zombie: as good as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
        return state[state.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return True


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def running_children(parent: sweep_parent.ParentRun) -> int:
    """Child runs of the sweep's parent that are still RUNNING in the store."""
    from mlflow import MlflowClient

    client = MlflowClient(parent.tracking_uri)
    runs = client.search_runs(
        [parent.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.run_id}' and attributes.status = 'RUNNING'",
        max_results=1000,
    )
    return len(runs)


class LauncherStop:
    """The command's SIGINT and SIGTERM handlers while a parallel sweep runs (main thread only)."""

    def __init__(self, parent_run: sweep_parent.ParentRun | None) -> None:
        self.parent_run = parent_run
        self._previous: dict[int, Any] = {}
        self._stopping = False

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into the workers with the command's callback: the handlers are the command's.
        return {"parent_run": self.parent_run, "_previous": {}, "_stopping": False}

    def install(self) -> "LauncherStop":
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002 - signal handler signature
        if self._stopping:  # a second signal while the workers are being stopped changes nothing
            return
        self._stopping = True
        workers = worker_pids()
        for pid in workers:
            _signal(pid, signal.SIGTERM)
        if self.parent_run is not None:
            self._wait_for_children(workers)
        self.uninstall()
        raise interrupt_for(signum)

    def _wait_for_children(self, workers: list[int]) -> None:
        deadline = time.monotonic() + GRACE_SECONDS
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            try:
                if running_children(self.parent_run) == 0:  # type: ignore[arg-type]
                    return
            except Exception:  # noqa: BLE001 - a store that cannot answer: the workers' exit decides
                pass
            time.sleep(POLL_SECONDS)


def mark_parent_killed(parent: sweep_parent.ParentRun, launcher_pid: int) -> None:
    """End the sweep's parent run KILLED for a command that could not (``kill -9``)."""
    from mlflow import MlflowClient

    client = MlflowClient(parent.tracking_uri)
    if client.get_run(parent.run_id).info.status != "RUNNING":
        return
    client.set_tag(parent.run_id, "failure_reason", f"the sweep's command (pid {launcher_pid}) was killed")
    client.set_terminated(parent.run_id, "KILLED")


def in_job(frame: Any) -> bool:
    """Whether ``frame`` (a worker's main thread) is inside a job: under Hydra's ``run_job``."""
    while frame is not None:
        if frame.f_code.co_name == "run_job":
            return True
        frame = frame.f_back
    return False


class WorkerSignals:
    """A worker's SIGINT and SIGTERM handler and its watch on the command (module docstring)."""

    def __init__(self, launcher_pid: int, parent_run: sweep_parent.ParentRun | None) -> None:
        self.launcher_pid = launcher_pid
        self.parent_run = parent_run
        self.caught: list[int] = []

    @classmethod
    def at_job_start(cls, launcher_pid: int, parent_run: sweep_parent.ParentRun | None) -> None:
        """In a worker's main thread as a job starts: install the handler once per process, and
        refuse the job (raise the interrupt) when a stop came already."""
        if os.getpid() == launcher_pid or threading.current_thread() is not threading.main_thread():
            return
        handler = signal.getsignal(signal.SIGTERM)
        worker = getattr(handler, "__self__", None)
        if not isinstance(worker, cls):
            worker = cls(launcher_pid, parent_run)
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, worker._handle)
            if os.getppid() == launcher_pid:
                threading.Thread(target=worker._watch, name=WATCH_THREAD, daemon=True).start()
        if worker.caught:
            raise interrupt_for(worker.caught[0])

    def _handle(self, signum: int, frame: Any) -> None:
        self.caught.append(signum)
        if in_job(frame):
            raise interrupt_for(signum)

    def _watch(self) -> None:
        while os.getppid() == self.launcher_pid:
            time.sleep(POLL_SECONDS)
        if self.parent_run is not None:
            try:
                mark_parent_killed(self.parent_run, self.launcher_pid)
            except Exception:  # noqa: BLE001 - the store gone too: `backproplab runs reap` remains
                pass
        os.kill(os.getpid(), signal.SIGTERM)  # as the command would have: the job ends KILLED
        main = threading.main_thread()
        while in_job(sys._current_frames().get(main.ident)):
            time.sleep(POLL_SECONDS)
        os._exit(0)
