"""Signals to a parallel sweep (the joblib launcher), sent to the real command's process group.

SIGTERM to the command, Ctrl-C (SIGINT) to its whole process group, and ``kill -9`` of the
command must leave no loky worker alive once its current iteration is done, every child run that
started KILLED (never RUNNING, never FAILED) in the real sqlite store, and the sweep's parent
run KILLED. Each test waits for events (both workers' runs training in the store, processes
gone), never for a fixed time."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from backproplab.hydra_app.parallel_stop import worker_pids
from conftest import cli_env

pytestmark = pytest.mark.slow

PATIENCE = 240.0  # seconds before a wait is declared hung: only a broken stop takes that long


def wait_until(condition, what: str):
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def training_children(db: Path) -> int:
    """Child runs of the sweep that are RUNNING with at least one metric stored."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute(
                "select count(distinct r.run_uuid) from runs r join tags t on t.run_uuid = r.run_uuid "
                "join metrics m on m.run_uuid = r.run_uuid where t.key = 'mlflow.parentRunId' and r.status = 'RUNNING'"
            ).fetchone()[0]
    except sqlite3.Error:
        return 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT-group", "kill-9"])
def test_a_stopped_parallel_sweep_leaves_no_worker_and_no_running_run(tmp_path, how):
    db = tmp_path / "mlflow.db"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "backproplab", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            "data=moons", "trainer.epochs=1000000", "data.batch_size=8", "optimizer.lr=0.1,0.2,0.3",
            f"logger.tracking_uri=sqlite:///{db}",
        ],
        cwd=tmp_path,
        env=cli_env(PYTHONUNBUFFERED="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a command
    )
    try:
        wait_until(lambda: training_children(db) == 2, "both workers' runs to be training")
        workers = worker_pids(proc.pid)
        assert len(workers) == 2
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        elif how == "SIGINT-group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.kill()
        _, err = proc.communicate(timeout=PATIENCE)
        wait_until(lambda: not any(alive(pid) for pid in workers), "every worker to exit")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if how == "SIGTERM":
        assert proc.returncode == 143, err
    elif how == "SIGINT-group":
        assert proc.returncode == 130, err
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2, "the third job never started"
    for child in children:
        assert child.info.status == "KILLED", child.data.tags.get("failure_reason")
        assert child.data.tags["failure_reason"].startswith("interrupted by ")
        assert client.get_metric_history(child.info.run_id, "batch/loss"), "what it trained is kept"
    assert parent.info.status == "KILLED", parent.data.tags.get("failure_reason")
