"""PostgreSQL as the tracking store, as on a cluster: used directly by a run, and behind a real
``mlflow server`` that also serves the artifacts (``--artifacts-destination``), so a job needs
no disk shared with the server. The PostgreSQL server and the ``mlflow server`` are real, on
127.0.0.1 (tests/servers.py); the runs are the real CLI in subprocesses.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

sys.path.insert(0, str(Path(__file__).parent))
from servers import MlflowServer, free_port  # noqa: E402
from test_tracking_sweep import check_summary, sweep_runs  # noqa: E402

pytestmark = pytest.mark.slow

ITERATION_KEYS = ("batch/loss", "grad/w1_1_1", "param/b2_1", "grad_norm/W2")


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    """One ``mlflow server`` for the module, its store a database of the session's PostgreSQL."""
    uri = postgres.create_database("server_store")
    with MlflowServer(uri, tmp_path_factory.mktemp("mlflow-server")) as srv:
        yield srv


def complete_run(client: MlflowClient, run, tmp_path: Path) -> None:
    """FINISHED, every iteration's metrics, and the artifacts readable through the tracking URI."""
    assert run.info.status == "FINISHED"
    for key in ITERATION_KEYS:
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == list(range(7)), key
    local = Path(client.download_artifacts(run.info.run_id, "", dst_path=str(tmp_path / run.info.run_id)))
    assert (local / "config.yaml").stat().st_size > 0 and (local / "params.npz").stat().st_size > 0
    assert list((local / "plots").glob("*.png"))


def test_a_run_with_a_postgresql_uri_writes_into_the_database(cli, tmp_path, postgres_uri):
    uri = postgres_uri
    proc = cli(f"logger.tracking_uri={uri}", "logger.experiment_name=direct")
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("direct").experiment_id])
    complete_run(client, run, tmp_path)


def test_a_run_and_a_sweep_land_complete_in_a_postgresql_backed_server(cli, tmp_path, server):
    # The artifacts live under the server's --artifacts-destination, never in the job's folder.
    proc = cli(f"logger.tracking_uri={server.url}", "logger.experiment_name=single")
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(server.url)
    (run,) = client.search_runs([client.get_experiment_by_name("single").experiment_id])
    complete_run(client, run, tmp_path / "single")

    proc = cli("-m", "optimizer.lr=0.1,0.5", "data.batch_size=1,2", f"logger.tracking_uri={server.url}", timeout=300)
    assert proc.returncode == 0, proc.stderr
    client, parent, children = sweep_runs(server.url)
    assert parent.info.status == "FINISHED" and len(children) == 4
    for child in children:
        complete_run(client, child, tmp_path / "sweep")
    check_summary(client, parent, children, tmp_path, ["optimizer.lr", "data.batch_size"])
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlartifacts").exists()
    stored = server.root / "artifacts"
    assert len({p.parts[len(stored.parts) + 1] for p in stored.rglob("config.yaml")}) == 5  # one per run


def test_an_unreachable_postgresql_server_is_one_error_line(cli, tmp_path):
    # Nothing listens there: MLflow alone would retry for minutes; the hang guard is the timeout.
    uri = f"postgresql+psycopg://me:secret@127.0.0.1:{free_port()}/nowhere"
    proc = cli(f"logger.tracking_uri={uri}", timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        f"error: PostgreSQL tracking store postgresql+psycopg://me:***@127.0.0.1:{uri.split(':')[3]} is not usable after "
    )
    assert "Connection refused" in lines[0] and lines[0].endswith("start it, fix logger.tracking_uri, or run with logger=none")
    assert "secret" not in proc.stderr
    assert not (tmp_path / "outputs").exists()  # refused before Hydra made a run folder


def test_a_missing_database_is_one_error_line(cli, tmp_path, postgres):
    uri = postgres.uri("no_such_database")
    proc = cli("-m", "optimizer.lr=0.1,0.5", f"logger.tracking_uri={uri}", timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: PostgreSQL tracking store {uri} is not usable after "), proc.stderr
    assert 'database "no_such_database" does not exist' in lines[0]
    assert not (tmp_path / "multirun").exists()


def test_a_postgresql_uri_without_its_driver_names_the_extra(cli, tmp_path):
    uri = f"postgresql+pg8000://me@127.0.0.1:{free_port()}/db"  # a driver backproplab does not install
    proc = cli(f"logger.tracking_uri={uri}", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: logger.tracking_uri='{uri}' needs the PostgreSQL driver pg8000 (pg8000), which is not installed; "
        "pip install 'backproplab[postgres]' (psycopg 3, for postgresql+psycopg://)"
    ]


def test_the_postgres_fixture_runs_unprivileged_on_loopback_only(postgres):
    import psycopg

    with psycopg.connect(postgres.uri("postgres", driver="")) as conn:
        addresses = conn.execute("SHOW listen_addresses").fetchone()[0]
        user = conn.execute("SELECT usename FROM pg_user WHERE usesuper LIMIT 1").fetchone()[0]
    assert addresses == "127.0.0.1" and user == "backproplab"
    assert os.stat(postgres.root / "data").st_uid != 0
