"""Sweeps through Hydra's Ray launcher on a real Ray cluster.

One Ray head per module, started with ``ray start --head --block`` on 127.0.0.1 only, and a real
``mlflow server`` (a real PostgreSQL as its backend store, artifacts served by the server, so
that a worker needs no shared disk). Jobs run in Ray worker processes that the head's raylet starts: they inherit
nothing from the launching process, which is what the parent hand-over is tested against.

``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps Ray on the loopback address: without it, Ray on
Linux replaces ``--node-ip-address=127.0.0.1`` by the machine's outward address and binds its
servers to every interface.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import cli_env
from test_faults_lost import free_port
from test_tracking_sweep import DIVERGING_SWEEP, check_diverging_sweep, check_summary, loss_steps, sweep_runs

pytestmark = pytest.mark.slow

# No RAY_DEDUP_LOGS: the command itself turns Ray's de-duplication of repeated lines off.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def _pids_with(marker: str) -> list[int]:
    """Processes whose command line names ``marker`` (this module's Ray temp dir): the head's."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _listening(pids: list[int]) -> list[str]:
    """Local addresses of the TCP sockets that ``pids`` listen on, from /proc (IPv4 and IPv6)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            pass
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                out.append(fields[1])
    return out


def _loopback(hex_address: str) -> bool:
    host = hex_address.split(":")[0]
    if len(host) == 8:  # IPv4, little-endian: 0100007F is 127.0.0.1
        return host == "0100007F"
    # IPv6 loopback ::1, or IPv4-mapped ::ffff:127.0.0.1
    return host in ("00000000000000000000000001000000", "0000000000000000FFFF00000100007F")


class RayHead:
    def __init__(self) -> None:
        # Short and under /tmp: Ray's unix sockets live below it (the path limit is 107 bytes).
        self.temp = Path(tempfile.mkdtemp(prefix="bpl-ray-", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = self.temp / "head.log"
        ports = {name: str(free_port()) for name in ("ray-client-server-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port")}
        command = [
            str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", f"--port={self.port}", "--num-cpus=2",
            "--include-dashboard=false", "--object-store-memory=100000000", "--disable-usage-stats",
            f"--temp-dir={self.temp}", *(f"--{name}={port}" for name, port in ports.items()),
        ]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=cli_env(**RAY_ENV), start_new_session=True)
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"ray start did not start a head:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM to ``ray start --block``, which stops the processes it started; any left over
        (found by this head's own temp dir) are killed by pid."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        deadline = time.monotonic() + 30
        while _pids_with(str(self.temp)) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in _pids_with(str(self.temp)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head():
    head = RayHead()
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    """The shared tracking server of docs/cluster.md: its backend store a real PostgreSQL
    database, its artifacts served by the server itself, backproplab's server app on."""
    from servers import MlflowServer

    root = tmp_path_factory.mktemp("ray-mlflow")
    with MlflowServer(postgres.create_database("ray_sweeps"), root, options=["--app-name", "backproplab"]) as srv:
        yield srv


def ray_cli(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backproplab", *args], cwd=tmp_path, env=cli_env(**RAY_ENV),
        capture_output=True, text=True, timeout=timeout,
    )


def test_the_ray_head_listens_on_loopback_only(ray_head):
    pids = _pids_with(str(ray_head.temp))
    addresses = _listening(pids)
    assert addresses, "the Ray head's processes listen on nothing?"
    assert [a for a in addresses if not _loopback(a)] == []


def test_a_sweep_on_a_ray_cluster_lands_complete_in_the_server(ray_head, server, tmp_path):
    """Only the address is set: the launcher's config joins the cluster as it is. Four jobs
    in Ray workers, each a child of the one parent, every iteration's metrics and the
    artifacts in the server."""
    experiment = "ray_complete"
    calls_before = (server.root / "server.log").read_text().count("POST /api/2.0/backproplab/runs/log-block")
    proc = ray_cli(
        tmp_path, "-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={ray_head.address}",
        f"logger.tracking_uri={server.url}", f"logger.experiment_name={experiment}",
        "trainer.epochs=2", "optimizer.lr=0.1,0.2,0.3,0.4",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sweep: 4 of 4 jobs finished" in proc.stdout
    client, parent, children = sweep_runs(server.url, experiment)
    # No job's line is folded into a "[repeated 3x across cluster]" note, no MLflow "View run"
    # line, and the closing block comes last (every job in its ranking), ending with the
    # parent's address.
    assert "repeated" not in proc.stdout + proc.stderr and "View run" not in proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    (start,) = [i for i, line in enumerate(lines) if line.startswith("sweep: 4 of 4 jobs finished")]
    assert lines[start + 1] == "ranking by final loss:" and lines[start + 7].startswith("best: job #")
    assert sorted(line.split()[2] for line in lines[start + 3: start + 7]) == ["0.1", "0.2", "0.3", "0.4"]
    assert lines[start + 8].startswith("results: ") and lines[start + 9].startswith("mlflow: sweep summary ")
    assert lines[start + 10:] == [f"mlflow: open {server.url.rstrip('/')}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}?workflowType=machine_learning"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["hydra.launcher"] == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert len(children) == 4
    assert sorted(c.data.params["optimizer.lr"] for c in children) == ["0.1", "0.2", "0.3", "0.4"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert loss_steps(client, child) == [0, 1]  # seed_example: one iteration per epoch
        assert {"config.yaml", "params.npz", "plots"} <= {a.path for a in client.list_artifacts(child.info.run_id)}
        assert child.info.artifact_uri.startswith("mlflow-artifacts:")  # served, not a path on this disk
    assert parent.data.metrics["sweep/jobs"] == 4 and parent.data.metrics["sweep/finished_jobs"] == 4
    check_summary(client, parent, children, tmp_path, ["optimizer.lr"])
    # The jobs ran in the sweep's folder under the launch directory, not in the workers' own.
    assert len(list(tmp_path.glob("multirun/*/*/[0-3]/result.json"))) == 4
    # Their metrics went through the server's app, a call per flush, not log_batch.
    log = (server.root / "server.log").read_text()
    assert log.count("POST /api/2.0/backproplab/runs/log-block") - calls_before >= 4


def test_a_failed_job_on_ray_is_a_failed_child_and_the_summary_is_complete(ray_head, server, tmp_path):
    experiment = "ray_failed"
    proc = ray_cli(
        tmp_path, "-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={ray_head.address}",
        "+hydra.launcher.ray.remote.num_cpus=1",  # a launcher key of its own, through the up-front check
        f"logger.tracking_uri={server.url}", f"logger.experiment_name={experiment}", *DIVERGING_SWEEP,
    )
    check_diverging_sweep(proc, server.url, tmp_path, experiment)


def test_a_wrong_ray_address_is_one_line_and_leaves_no_parent(server, tmp_path):
    """Nothing listens at the address: one error line before the multirun starts, exit 2, and
    no sweep parent in the store (Ray itself would retry for many minutes)."""
    experiment = "ray_wrong_address"
    port = free_port()
    proc = ray_cli(
        tmp_path, "-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address=127.0.0.1:{port}",
        f"logger.tracking_uri={server.url}", f"logger.experiment_name={experiment}", "optimizer.lr=0.1,0.2",
        timeout=120,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: hydra.launcher.ray.init.address=127.0.0.1:{port}: no Ray cluster answers there (connection refused), "
        f"so no job was started; start its head with: ray start --head --port={port}, or correct the address"
    ]
    exp = MlflowClient(server.url).get_experiment_by_name(experiment)
    assert exp is None or MlflowClient(server.url).search_runs([exp.experiment_id]) == []
    assert not (tmp_path / "multirun").exists()


def test_an_address_that_is_not_host_port_is_one_line(tmp_path):
    proc = ray_cli(tmp_path, "-m", "hydra/launcher=ray", "hydra.launcher.ray.init.address=nowhere", "logger=none", "optimizer.lr=0.1,0.2", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: hydra.launcher.ray.init.address='nowhere' is not an address; "
        "valid: HOST:PORT of a Ray head (its ray start --port), auto, or null to start Ray here"
    ]
    assert not (tmp_path / "multirun").exists()


def test_a_launch_that_fails_after_the_parent_exists_ends_it_failed_with_the_reason(ray_head, server, tmp_path):
    """Ray refuses the jobs' resources only as the launcher submits them, after the sweep's
    parent run was created: the parent ends FAILED with the error line as its reason."""
    experiment = "ray_launch_failed"
    proc = ray_cli(
        tmp_path, "-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={ray_head.address}",
        "+hydra.launcher.ray.remote.num_cpus=-1",
        f"logger.tracking_uri={server.url}", f"logger.experiment_name={experiment}", "optimizer.lr=0.1,0.2",
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    client, parent, children = sweep_runs(server.url, experiment)
    assert children == []
    assert parent.info.status == "FAILED"
    assert parent.data.tags["failure_reason"] == f"the multirun stopped before its end: {errors[0].removeprefix('error: ')}"
