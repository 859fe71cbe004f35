"""Faults that no handler in the run's process can catch, on the real command: a tracking server
killed mid-run, and the run's own process killed with SIGKILL.

Each test waits for an event (metrics visible in the store, a line on stderr), never for a
fixed time, to hit its moment; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import cli_env

pytestmark = pytest.mark.slow

# Above logger.elementwise_max_params: loss and 7 norms per iteration, so a spool stays small.
SMALL = ("data=moons", "model.hidden=[16,16]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real ``mlflow server`` on 127.0.0.1 that can be SIGKILLed and restarted on the same
    port and store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.db = root / "db.sqlite"
        self.proc: subprocess.Popen | None = None
        root.mkdir(exist_ok=True)

    def start(self) -> None:
        log = open(self.root / "server.log", "a")
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")), "server",
                "--backend-store-uri", f"sqlite:///{self.db}",
                "--artifacts-destination", str(self.root / "artifacts"),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            ],
            cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {self.proc.returncode}: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("mlflow server did not answer /health within 120 s")
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL to the server and its workers: nothing of it gets to say goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "server")
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


def loss_rows(db: Path) -> list[tuple[int, int]]:
    """(step, timestamp ms) of every stored ``loss`` point, read straight from a sqlite file."""
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        try:
            return conn.execute("SELECT step, timestamp FROM metrics WHERE key = 'batch/loss' ORDER BY step").fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []


def wait_until(what: str, predicate, proc: subprocess.Popen, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}; stderr: {err[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no {what} within {timeout} s")


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "backproplab", *args],
        cwd=tmp_path, env=cli_env(PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


class Lines:
    """stderr read on a thread, so a test can wait for one line with a deadline."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.lines.append(None)  # end of stream
            self._cond.notify_all()

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if line is not None and line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if None in self.lines or left <= 0:
                    raise AssertionError(f"no line starting {prefix!r} within {timeout} s; stderr: {''.join(l for l in self.lines if l)[-3000:]}")
                self._cond.wait(left)

    def text(self) -> str:
        self._thread.join(timeout=60)
        return "".join(line for line in self.lines if line)


def finish(proc: subprocess.Popen, timeout: float = 300) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def runs_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backproplab", "runs", *args],
        cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=600,
    )


def the_run(uri: str):
    runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("backproplab").experiment_id])
    assert len(runs) == 1
    return runs[0]


def loss_steps(uri: str, run) -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "batch/loss"))


# -- kill -9 on a sqlite store --------------------------------------------------------------------
def test_kill_9_loses_about_a_second_and_reap_ends_the_run_killed(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    # Wide layers: slow iterations, so flushes come from the interval, not from a full buffer.
    proc = start(tmp_path, "data=moons", "model.hidden=[256,256]", "trainer.epochs=1000000", f"logger.tracking_uri={uri}")
    try:
        # Several flushes in: the loss points already span two seconds of training.
        wait_until("2 s of stored metrics", lambda: (r := loss_rows(db)) and r[-1][1] - r[0][1] >= 2000, proc)
        killed_at_ms = time.time() * 1000
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rows = loss_rows(db)
    steps = [s for s, _ in rows]
    assert steps == list(range(len(steps)))  # nothing missing before the last flush
    # logger.buffer.flush_interval_s=auto is 1 s on sqlite: the newest stored point is at most
    # about a second (plus one flush's write on a loaded machine) older than the kill.
    assert killed_at_ms - rows[-1][1] < 2500, (killed_at_ms - rows[-1][1], len(steps))
    run = the_run(uri)
    assert run.info.status == "RUNNING"
    assert run.data.tags["backproplab.pid"] == str(proc.pid)
    assert run.data.tags["backproplab.host"] == socket.gethostname()
    epochs = run.data.metrics["epoch"]  # epochs completed at the last flushed step

    reaped = runs_cli("reap", "--tracking-uri", uri, cwd=tmp_path)
    assert reaped.returncode == 0, reaped.stderr
    run = the_run(uri)
    reason = run.data.tags["failure_reason"]
    assert run.info.status == "KILLED"
    # where it stopped, as far as its flushed metrics tell
    assert reason.startswith(f"process {proc.pid} on {socket.gethostname()} ended without closing the run (killed?) after {epochs:.4g} epochs completed")
    assert f"in epoch {int(epochs) + 1}" in reason or epochs == int(epochs)
    assert reason.endswith(" (the last metrics it flushed); reaped by backproplab runs reap")
    assert f"reaped run {run.info.run_id}" in reaped.stdout and "1 marked KILLED" in reaped.stdout
    # A description, as every ended run has: what the run is, what happened, where it got to.
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("**moons**: network hidden [256, 256] (sigmoid; output sigmoid), loss bce, optimizer sgd (lr 0.5)"), note
    assert f"\n\n**KILLED**: {reason}.\n\nEnded by `backproplab runs reap`; its " in note, note
    assert f"({epochs:.4g} epochs completed at the last flushed iteration)" in note, note

    again = runs_cli("reap", "--tracking-uri", uri, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"reap: 0 RUNNING run(s) in {uri}; 0 marked KILLED, 0 left as they were"


def test_reap_leaves_live_processes_and_other_hosts_alone(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("mine")
    here = socket.gethostname()
    from backproplab.tracking.records.tags import process_start

    alive = client.create_run(experiment, tags={"backproplab.host": here, "backproplab.pid": str(os.getpid()),
                                                "backproplab.pid_start": process_start(os.getpid())})
    elsewhere = client.create_run(experiment, tags={"backproplab.host": here + "-other", "backproplab.pid": "1"})
    # A PID that exists now but started at another time: the run's process is gone, the PID reused.
    reused = client.create_run(experiment, tags={"backproplab.host": here, "backproplab.pid": str(os.getpid()),
                                                 "backproplab.pid_start": "1"})
    for key, value in {"data.name": "xor", "data.batch_size": "4", "model.hidden": "[3]", "model.activation": "tanh",
                       "model.output_activation": "sigmoid", "loss.name": "mse", "optimizer.name": "sgd",
                       "optimizer.lr": "0.5", "optimizer.momentum": "0.0", "trainer.epochs": "40"}.items():
        client.log_param(reused.info.run_id, key, value)
    for key, value in {"train/loss": 0.25, "train/accuracy": 0.5, "epoch": 2.5}.items():
        client.log_metric(reused.info.run_id, key, value, step=2)
    untagged = client.create_run(experiment)
    result = runs_cli("reap", "--tracking-uri", uri, "--experiment", "mine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    status = {r: client.get_run(r.info.run_id).info.status for r in (alive, elsewhere, reused, untagged)}
    assert [status[r] for r in (alive, elsewhere, reused, untagged)] == ["RUNNING", "RUNNING", "KILLED", "RUNNING"]
    assert "another host" in result.stdout and "still running" in result.stdout and "no backproplab.pid" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == f"reap: 4 RUNNING run(s) in {uri}; 1 marked KILLED, 3 left as they were"
    reason = client.get_run(reused.info.run_id).data.tags["failure_reason"]
    assert client.get_run(reused.info.run_id).data.tags["mlflow.note.content"] == (
        "**xor**: network hidden [3] (tanh; output sigmoid), loss mse, optimizer sgd (lr 0.5), batch size 4, 40 epochs.\n\n"
        f"**KILLED**: {reason}.\n\n"
        "Ended by `backproplab runs reap`; its last logged epoch (2.5 epochs completed at the last flushed iteration): "
        "train loss 0.25, train accuracy 0.5."
    )
    for left in (alive, elsewhere, untagged):
        assert "mlflow.note.content" not in client.get_run(left.info.run_id).data.tags


@pytest.mark.parametrize(
    "args, message",
    [
        (["reap", "--bogus"], "error: unknown option '--bogus' for 'backproplab runs reap'; valid: -h, --help, --tracking-uri, --experiment"),
        (["frob"], "error: backproplab runs: argument {reap,register,replay,resume}: invalid choice: 'frob'"),
        ([], "error: backproplab runs needs a command; valid: reap, register, replay, resume"),
        (["replay", "missing.jsonl"], "error: spool file missing.jsonl cannot be read"),
        (["reap", "--tracking-uri", "sqlite:///nowhere.db"], "error: --tracking-uri sqlite:///nowhere.db: there is no store at nowhere.db"),
    ],
)
def test_runs_bad_input_is_one_line_exit_2(tmp_path, args, message):
    result = runs_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(message), result.stderr
    assert not (tmp_path / "nowhere.db").exists()


def test_on_server_loss_is_validated_before_anything_is_written(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "backproplab", "logger.on_server_loss=retry"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: logger.on_server_loss must be one of continue, stop, got 'retry'"
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "outputs").exists()


# -- a tracking server killed mid-run -------------------------------------------------------------
WARNING = "warning: MLflow tracking server {uri} stopped answering while writing metrics ("


def test_server_lost_with_stop_fails_the_run_and_replay_restores_every_metric(tmp_path, server):
    proc = start(tmp_path, *SMALL, "trainer.epochs=1000000", f"logger.tracking_uri={server.uri}", "logger.on_server_loss=stop")
    err = Lines(proc.stderr)
    try:
        wait_until("metrics on the server", lambda: loss_rows(server.db), proc)
        server.kill()
        killed = time.monotonic()
        line = err.wait_for(WARNING.format(uri=server.uri), timeout=60)
        assert time.monotonic() - killed < 40, "the loss was noticed too late"
        assert finish(proc, timeout=120) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err.text()
    spools = list((tmp_path / ".backproplab-spool").glob("*.jsonl"))
    assert len(spools) == 1 and str(spools[0]) in line and "logger.on_server_loss=stop" in line
    assert stderr.strip().splitlines()[-1].startswith(f"error: MLflow tracking server {server.uri} was lost during the run")
    assert (spools[0].with_suffix(".artifacts") / "params.npz").exists()

    server.start()  # same port, same store
    replayed = runs_cli("replay", str(spools[0]), cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert not spools[0].exists()
    run = the_run(server.uri)
    steps = loss_steps(server.uri, run)
    assert steps == list(range(len(steps))) and len(steps) > 0  # every iteration, none twice
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"].startswith(f"MLflow tracking server {server.uri} was lost during the run")
    # The description the run wrote for itself when its server was gone, carried by the spool.
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("**moons** (160 training, 40 validation examples): network 2-16-16-1"), note
    assert "\n\n**FAILED** at epoch " in note and run.data.tags["failure_reason"] in note, note
    assert note.endswith(f"\n\nWritten to the store later by `backproplab runs replay {spools[0]}`: its tracking server was lost."), note
    artifacts = {a.path for a in MlflowClient(server.uri).list_artifacts(run.info.run_id)}
    assert {"config.yaml", "params.npz", "plots"} <= artifacts


def test_server_lost_then_back_the_run_carries_on_with_every_metric(tmp_path, server):
    # Thinned to every 100th iteration so that what is spooled while the server restarts is
    # written back within seconds, and the sqlite store stays small: on a loaded machine (CI) a
    # call can still time out and be resent, and MLflow's recovery of the duplicate grows with
    # the run's points (83 s for a call of 1000 at 685,000 points, reached with every 10th). The run
    # would train for hours: once it has resumed and written new metrics, SIGTERM ends it
    # (KILLED), which proves nothing was dropped meanwhile.
    every = 100
    proc = start(
        tmp_path, *SMALL, "trainer.epochs=1000000", f"logger.every_n_iterations={every}", f"logger.tracking_uri={server.uri}",
    )
    err = Lines(proc.stderr)
    try:
        wait_until("metrics on the server", lambda: loss_rows(server.db), proc)
        server.kill()
        lost_at = max(s for s, _ in loss_rows(server.db))
        line = err.wait_for(WARNING.format(uri=server.uri), timeout=60)
        assert "logger.on_server_loss=continue" in line
        server.start()
        err.wait_for(f"backproplab: MLflow tracking server {server.uri} answers again", timeout=300)
        resumed_at = max(s for s, _ in loss_rows(server.db))
        wait_until("new metrics after the resume", lambda: max(s for s, _ in loss_rows(server.db)) > resumed_at, proc)
        proc.send_signal(signal.SIGTERM)
        assert finish(proc, timeout=300) == 143, err.text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err.text()
    # A busy server may time out again after the restart: every loss must have been recovered.
    assert stderr.count("stopped answering") == stderr.count("answers again") >= 1, stderr
    assert not list((tmp_path / ".backproplab-spool").glob("*.jsonl"))
    run = the_run(server.uri)
    assert run.info.status == "KILLED", stderr
    assert run.data.tags["failure_reason"].startswith("interrupted by SIGTERM")
    steps = loss_steps(server.uri, run)
    assert steps == list(range(0, steps[-1] + 1, every)) and steps[-1] > resumed_at > lost_at
    assert {"config.yaml", "params.npz"} <= {a.path for a in MlflowClient(server.uri).list_artifacts(run.info.run_id)}
