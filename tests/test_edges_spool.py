"""The spool at its edges, through the real command in subprocesses: a full disk under it, its
folder deleted mid-run, a replay of a run that still trains, damaged spooled artifacts.

The tracking server is real (``mlflow server`` on 127.0.0.1); between it and the run sits a
small proxy in this process that, while ``failing`` is set, answers every metric upload with
503 (as a server in trouble does) and passes everything else. So the run spools exactly while
the test wants, and the store stays reachable for the run's status and the test's checks.
A full disk is a real tmpfs mounted on the spool folder in a private mount namespace.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import cli_env
from servers import MlflowServer, Proxy, http_serving
from test_faults_lost import Lines, finish, wait_until
from test_tracking_stores import NAMESPACE_PROBLEM

pytestmark = pytest.mark.slow

# Above logger.elementwise_max_params: loss and 7 norms per iteration, so spools stay small.
SMALL = ("data=moons", "model.hidden=[16,16]", "logger.buffer.flush_interval_s=1")
METRIC_UPLOADS = ("/api/2.0/mlflow/runs/log-batch", "/api/2.0/backproplab/runs/log-block")
LOST = "warning: MLflow tracking server {uri} stopped answering while writing metrics ("


class _Proxy(Proxy):
    def refuse(self, body: bytes) -> int | None:
        uploading = self.path.split("?")[0] in METRIC_UPLOADS and b'"metrics": [{' in body.replace(b'":[', b'": [')
        return 503 if self.server.failing and uploading else None


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    with MlflowServer(f"sqlite:///{root / 'mlflow.db'}", root) as server:
        yield server


@pytest.fixture
def proxy(mlflow_server):
    with http_serving(_Proxy, upstream=mlflow_server.port, failing=False) as server:
        server.uri = f"http://127.0.0.1:{server.server_address[1]}"
        yield server


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "backproplab", *args], cwd=cwd, env=cli_env(PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def _runs_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backproplab", "runs", *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=600)


def test_spool_deleted_mid_run_is_recorded_and_replay_refuses_a_run_that_still_trains(tmp_path, proxy, mlflow_server):
    proxy.failing = True
    proc = _start(tmp_path, *SMALL, "trainer.epochs=1000000", "logger.every_n_iterations=10", f"logger.tracking_uri={proxy.uri}")
    err = Lines(proc.stderr)
    spool_dir = tmp_path / ".backproplab-spool"
    try:
        err.wait_for(LOST.format(uri=proxy.uri), timeout=180)
        (spool,) = spool_dir.glob("*.jsonl")

        # Replay while the run's process lives: refused, the run left as it is.
        replay = _runs_cli("replay", str(spool), cwd=tmp_path)
        assert replay.returncode == 2, replay.stderr
        assert replay.stderr.count("\n") == 1 and " is still training: its process " in replay.stderr, replay.stderr
        run_id = spool.stem
        assert MlflowClient(mlflow_server.url).get_run(run_id).info.status == "RUNNING"
        assert "failure_reason" not in MlflowClient(mlflow_server.url).get_run(run_id).data.tags

        shutil.rmtree(spool_dir)  # a cleanup job
        lost_line = _wait_line(err, "spooled metrics (steps ", timeout=180)
        answered = _count(err, "answers again")
        proxy.failing = False
        _wait_line(err, f"backproplab: MLflow tracking server {proxy.uri} answers again", timeout=300, skip=answered)
        wait_until("a run that answers again", lambda: spool_dir.exists() is False or not list(spool_dir.glob("*.jsonl")), proc)
        proc.send_signal(signal.SIGTERM)
        assert finish(proc, timeout=300) == 143, err.text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err.text()
    assert f"the spool file {spool} was deleted during the run" in lost_line and "the run records the loss" in lost_line
    run = MlflowClient(mlflow_server.url).get_run(run_id)
    assert run.info.status == "KILLED"
    loss = run.data.tags["backproplab.metrics_lost"]
    assert loss in lost_line and loss in run.data.tags["failure_reason"], (loss, run.data.tags["failure_reason"])
    first, last = (int(x) for x in loss.split("(steps ")[1].split(")")[0].split(" to "))
    steps = sorted(m.step for m in MlflowClient(mlflow_server.url).get_metric_history(run_id, "batch/loss"))
    assert not any(first <= s <= last for s in steps)  # the gap is where the tag says
    # ... and only there: what was spooled anew after the loss was written when the server returned.
    assert steps == [s for s in range(0, steps[-1] + 1, 10) if not first <= s <= last] and steps[-1] > last
    assert "Traceback" not in stderr


def _count(err: Lines, fragment: str) -> int:
    return sum(1 for line in list(err.lines) if line is not None and fragment in line)


def _wait_line(err: Lines, fragment: str, timeout: float, skip: int = 0) -> str:
    """The first stderr line holding ``fragment`` after ``skip`` such lines (``Lines.wait_for``
    matches line starts, and from the first line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in list(err.lines) if line is not None and fragment in line]
        if len(found) > skip:
            return found[skip]
        if None in err.lines:
            break
        time.sleep(0.2)
    raise AssertionError(f"no line with {fragment!r}; stderr: {''.join(l for l in err.lines if l)[-3000:]}")


@pytest.mark.skipif(NAMESPACE_PROBLEM is not None, reason=f"a full disk: {NAMESPACE_PROBLEM}")
def test_a_full_disk_under_the_spool_is_one_line_and_the_run_ends_failed_with_it(tmp_path, proxy, mlflow_server):
    work = tmp_path / "work"
    spool_dir = work / ".backproplab-spool"
    spool_dir.mkdir(parents=True)
    kept = tmp_path / "kept"
    proxy.failing = True
    script = (
        f'set -e; mount -t tmpfs -o size=48k tmpfs {spool_dir}; set +e; "$@"; rc=$?; '
        f"cp -a {spool_dir}/. {kept}/; exit $rc"
    )
    kept.mkdir()
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", sys.executable, "-m", "backproplab", *SMALL, "trainer.epochs=200",
         f"logger.tracking_uri={proxy.uri}"],
        cwd=work, env=cli_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    full = [line for line in lines if "no space left on device" in line]
    assert len(full) == 1, proc.stderr
    message = lines[-1].removeprefix("error: ")
    assert lines[-1] == full[0]
    assert message.startswith(f"no space left on device on the disk mounted at {spool_dir} (tmpfs, "), message
    assert f" while spooling metrics to {spool_dir}/" in message and "are now in no store and no file" in message
    assert "Traceback" not in proc.stderr
    (result_file,) = work.glob("outputs/*/*/result.json")
    result = json.loads(result_file.read_text())
    assert result["status"] == "failed" and result["error"] == message
    run = MlflowClient(mlflow_server.url).get_run(_run_id(message))
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == message
    # Nothing half-written was left in the spool: no empty or partial file, no temporary.
    for path in kept.rglob("*"):
        assert path.is_file() and path.stat().st_size > 0 and ".tmp-" not in path.name, path


def _run_id(message: str) -> str:
    return message.split(" while spooling metrics to ")[1].split(".jsonl")[0].rsplit("/", 1)[1]


def test_replay_reports_damaged_spooled_artifacts_and_uploads_only_sound_ones(tmp_path, proxy, mlflow_server):
    proxy.failing = True
    proc = subprocess.run(
        [sys.executable, "-m", "backproplab", *SMALL, "trainer.epochs=5", f"logger.tracking_uri={proxy.uri}"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    (spool,) = (tmp_path / ".backproplab-spool").glob("*.jsonl")
    artifacts = spool.with_suffix(".artifacts")
    assert (artifacts / "params.npz").stat().st_size > 0
    (artifacts / "params.npz").write_bytes(b"")  # as a full disk left it before
    with open(artifacts / "config.yaml", "r+b") as handle:
        handle.truncate(10)
    proxy.failing = False
    replay = _runs_cli("replay", str(spool), cwd=tmp_path)
    assert replay.returncode == 1, replay.stderr
    assert replay.stderr.startswith("error: 2 spooled artifact file(s) of run ") and "config.yaml, params.npz" in replay.stderr
    run = MlflowClient(mlflow_server.url).get_run(spool.stem)
    assert run.info.status == "FAILED"
    uploaded = {a.path for a in MlflowClient(mlflow_server.url).list_artifacts(run.info.run_id)}
    assert "params.npz" not in uploaded and "config.yaml" not in uploaded and "plots" in uploaded
    assert "config.yaml, params.npz were damaged" in run.data.tags["backproplab.metrics_lost"]
    assert "config.yaml, params.npz were damaged" in run.data.tags["failure_reason"]
