"""A sqlite store damaged in the middle, through the real command in subprocesses: sqlite opens
it and writes into it happily (only its pages tell), so the up-front check reads them.

8 KB of junk overwrite the middle of a real MLflow store with runs and metrics. A single run, a
sweep and ``backproplab runs`` must each refuse it in one line that names the command that
salvages the rows (``sqlite3 PATH ".recover"``), exit 2, and write nothing: no outputs/, no
multirun/, the store's bytes unchanged.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from conftest import cli_env

pytestmark = pytest.mark.slow

JUNK = bytes(range(256)) * 32  # 8 KB


@pytest.fixture(scope="module")
def damaged_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("damaged") / "mlflow.db"
    client = MlflowClient(f"sqlite:///{path}")
    experiment = client.create_experiment("backproplab")
    for _ in range(8):
        run_id = client.create_run(experiment).info.run_id
        client.log_batch(run_id, metrics=[Metric(f"m{i % 10}", float(i), 1, i) for i in range(1000)])
    size = path.stat().st_size
    assert size > 64 * 1024
    with open(path, "r+b") as handle:
        handle.seek(size // 2)
        handle.write(JUNK)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backproplab", *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "args, key",
    [
        (("data=xor", "trainer.epochs=2"), "logger.tracking_uri"),
        (("-m", "data=xor", "trainer.epochs=2", "optimizer.lr=0.1,0.2"), "logger.tracking_uri"),
        (("runs", "reap"), "--tracking-uri"),
    ],
    ids=["run", "sweep", "reap"],
)
def test_a_store_damaged_in_the_middle_is_refused_before_anything_is_written(tmp_path, damaged_store, args, key):
    before = _digest(damaged_store)
    uri = f"sqlite:///{damaged_store}"
    option = ("--tracking-uri", uri) if key == "--tracking-uri" else (f"logger.tracking_uri={uri}",)
    proc = _command(*args, *option, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip()
    assert line.startswith(f"error: {key}='{uri}' names a damaged sqlite database ("), line
    recovered = damaged_store.with_name("mlflow-recovered.db")
    assert f'sqlite3 {damaged_store} ".recover" | sqlite3 {recovered}' in line, line
    assert list(tmp_path.iterdir()) == []  # no outputs/, multirun/ or store in the cwd
    assert _digest(damaged_store) == before


def test_the_advised_recovery_gives_a_store_a_run_can_use(tmp_path, damaged_store):
    """The line's advice works: .recover salvages the rows into a store that passes the check."""
    from backproplab.tracking.transport.reachability import check_sqlite

    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 command-line shell is not installed")
    recovered = tmp_path / "mlflow-recovered.db"
    dump = subprocess.run(["sqlite3", str(damaged_store), ".recover"], capture_output=True, timeout=120)
    assert dump.stdout, dump.stderr
    subprocess.run(["sqlite3", str(recovered)], input=dump.stdout, check=True, capture_output=True, timeout=120)
    check_sqlite(f"sqlite:///{recovered}")
