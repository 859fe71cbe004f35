"""Tracking as the user meets it from a single CLI run: the default store, logger=none, and an
unreachable server."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

sys.path.insert(0, str(Path(__file__).parent))
from servers import MlflowServer  # noqa: E402

pytestmark = pytest.mark.slow


def test_default_run_records_to_mlflow_db_in_the_working_directory(cli, tmp_path):
    proc = cli()  # the worked example, MLflow's default store
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mlflow.db").is_file()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["hydra.overrides"] == ""
    assert len(client.get_metric_history(run.info.run_id, "grad/w1_4_3")) == 7
    assert run.data.params["optimizer.lr"] == "0.5"
    # Creating the new store is MLflow's business: its INFO notices ("Creating initial MLflow
    # database tables...") do not reach the run's stderr, which carries only the run's own lines.
    assert "mlflow.store" not in proc.stderr and "INFO" not in proc.stderr, proc.stderr


def test_logger_none_writes_no_store(cli, tmp_path):
    proc = cli("logger=none")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "mlruns").exists()


def test_unreachable_server_is_one_line_and_no_training(cli, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = cli(f"logger.tracking_uri=http://127.0.0.1:{port}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"error: MLflow tracking server http://127.0.0.1:{port} is not reachable"
    )
    assert "iteration" not in proc.stdout
    assert list(tmp_path.iterdir()) == []  # found before Hydra creates outputs/DATE/TIME/


class HostCheckingServer(MlflowServer):
    """A real ``mlflow server`` whose --allowed-hosts leaves out the 127.0.0.1 it is reached by,
    as docs/cluster.md's server refuses workers that reach it by a hostname."""

    def _warm_up(self) -> None:  # its API answers nothing to this host
        pass


def test_a_server_refusing_the_host_names_its_allowed_hosts_flag(cli, tmp_path):
    server = HostCheckingServer(f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}", tmp_path / "server",
                                options=["--allowed-hosts", "mlflow.example.invalid"])
    work = tmp_path / "work"
    work.mkdir()
    with server:
        proc = cli(f"logger.tracking_uri={server.url}", "trainer.epochs=1", cwd=work)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    host = f"127.0.0.1:{server.port}"
    assert line.startswith(f"error: MLflow tracking server {server.url} refuses requests for the host {host} (HTTP 403"), line
    assert f"start the server with --allowed-hosts {host} " in line and "MLFLOW_SERVER_ALLOWED_HOSTS" in line
    assert "logger.tracking_uri" not in line  # the URI is right; the server is to change
    assert "iteration" not in proc.stdout and list(work.iterdir()) == []


def test_missing_sqlite_directory_is_one_line_and_leaves_nothing(cli, tmp_path):
    proc = cli(f"logger.tracking_uri=sqlite:///{tmp_path}/no/such/dir/mlflow.db")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: tracking_uri sqlite:///{tmp_path}/no/such/dir/mlflow.db: directory {tmp_path}/no/such/dir does not exist; "
        "create it or fix logger.tracking_uri, or run with logger=none"
    )
    assert list(tmp_path.iterdir()) == []


def test_standardised_run_saves_the_statistics_its_weights_expect(cli, tmp_path):
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    proc = cli("data=breast_cancer", "data.standardize=true", "data.val_fraction=0", "model.hidden=[4]", "trainer.epochs=1", "logger.every_n_iterations=100")
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    local = client.download_artifacts(run.info.run_id, "standardize.npz", dst_path=str(tmp_path / "dl"))
    X = load_breast_cancer().data
    with np.load(local, allow_pickle=False) as saved:
        np.testing.assert_allclose(saved["mean"], X.mean(axis=0))
        np.testing.assert_allclose(saved["scale"], X.std(axis=0))


def test_an_untracked_run_does_not_import_mlflow(tmp_path, cli_env):
    """mlflow costs about a second of start-up; logger=none must not pay it."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from backproplab.cli.main import main\n"
        "try:\n"
        "    main(['logger=none'])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print('mlflow imported' if 'mlflow' in sys.modules else 'mlflow not imported')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "iteration 7/7  prediction 0.925053" in out.stdout
    assert out.stdout.strip().endswith("mlflow not imported")


def test_an_update_to_non_finite_weights_fails_the_run(cli, tmp_path):
    # rmsprop with lr 1e308 overflows every weight: the run must not end FINISHED with params.npz all inf.
    proc = cli("optimizer=rmsprop", "optimizer.lr=1e308", "trainer.epochs=1")
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: non-finite parameter W1 after the update of epoch 1, iteration 1; ")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == line.removeprefix("error: ")
    assert len(client.get_metric_history(run.info.run_id, "batch/loss")) == 1  # what it logged stays
    # The description says what failed, and where, on the run page's first screen.
    note = run.data.tags["mlflow.note.content"]
    assert f"**FAILED** at epoch 1, iteration 1: {line.removeprefix('error: ')}." in note
    assert "Completed before it stopped: no epoch completed." in note


def test_max_points_per_metric_caps_every_stored_metric(cli, tmp_path):
    # 60 iterations (one per epoch) capped at 8 points: iteration stride ceil(60/8) = 8, so
    # steps 0, 8, ..., 56; epoch metrics every 8th epoch counted back from the last, so the final
    # epoch's train/loss (what the sweep summary reads) is stored.
    proc = cli("trainer.epochs=60", "logger.max_points_per_metric=8")
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    assert run.info.status == "FINISHED"
    run_id = run.info.run_id
    points = {key: client.get_metric_history(run_id, key) for key in run.data.metrics}
    # batch/loss, 6 norms, 21 grad/*, 21 param/*, train/loss, train/accuracy, train/lr, epoch, and
    # the run's final/train_loss, final/train_accuracy and final/epochs (one point each)
    assert len(points) == 56
    capped = {k: v for k, v in points.items() if k != "epoch"}
    assert all(len(history) <= 8 for history in capped.values()), {k: len(v) for k, v in capped.items() if len(v) > 8}
    # epoch goes with both: every iteration step kept, and the epoch ends kept
    assert len(points["epoch"]) <= 16
    assert sorted(m.step for m in points["batch/loss"]) == list(range(0, 60, 8))
    assert sorted(m.step for m in points["grad/w1_1_1"]) == list(range(0, 60, 8))
    assert sorted(m.step for m in points["train/loss"]) == list(range(4, 61, 8))
    assert run.data.tags["backproplab.iteration_stride"] == "8"
    assert run.data.tags["backproplab.epoch_stride"] == "8"
    # The console still shows the whole run: the cap thins what is stored, not the training.
    assert "after 60 iterations" in proc.stdout


def test_without_a_cap_every_iteration_is_stored(cli, tmp_path):
    proc = cli("trainer.epochs=20")
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    assert len(client.get_metric_history(run.info.run_id, "batch/loss")) == 20
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 20
    assert "backproplab.iteration_stride" not in run.data.tags


def test_a_bad_max_points_per_metric_is_one_line_and_exit_2(cli, tmp_path):
    proc = cli("logger.max_points_per_metric=0", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: logger.max_points_per_metric must be an integer >= 1, auto (at most 50 for a sweep's child, no limit for a single run) or null (no limit), got 0"
    )
    assert not list(tmp_path.iterdir())
