"""Multiruns through the real CLI become one MLflow parent run with nested children.

Basic launcher (jobs in the launching process), joblib launcher (jobs in worker processes),
sweeps declared in an experiment's ``hydra.sweeper.params``, a sweep whose every job fails, and
a real ``mlflow server`` over HTTP.
"""

from __future__ import annotations

import csv
import json
import socket
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backproplab.hydra_app.compat import version_base
import yaml
from mlflow import MlflowClient

# hydra_compat: repeated on Hydra 1.4 by .ci/run.
pytestmark = [pytest.mark.slow, pytest.mark.hydra_compat]

PARENT = "mlflow.parentRunId"


def sweep_runs(uri: str, experiment: str = "backproplab"):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("backproplab.sweep") == "true"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    children = [r for r in runs if r is not parent]
    assert all(r.data.tags.get(PARENT) == parent.info.run_id for r in children)
    return client, parent, children


def loss_steps(client: MlflowClient, run) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, "batch/loss"))


# The launcher tests' common sweep: two jobs on a linear network, the second diverging (lr 1000).
DIVERGING_SWEEP = (
    "model.activation=identity", "model.output_activation=identity", "loss=mse", "optimizer.lr=0.001,1000", "trainer.epochs=20",
)


def check_diverging_sweep(proc, uri: str, tmp_path: Path, experiment: str = "backproplab", *, logs: str = ""):
    """``DIVERGING_SWEEP``, launched anywhere, as it must land: exit 1 naming the failed job, one
    FINISHED child with every iteration, one FAILED child with the reason, a FAILED parent with a
    complete summary. Returns (parent, children by ``optimizer.lr`` param). ``logs``: the
    launcher's own logs, shown when the command failed otherwise."""
    assert proc.returncode == 1, proc.stderr[-3000:] + logs
    assert "error: 1 of 2 jobs of the multirun failed; the first, #1 (optimizer.lr=1000): non-finite loss" in proc.stderr
    client, parent, children = sweep_runs(uri, experiment)
    # optimizer.lr is a float in sgd's schema: the typed 1000 is logged as 1000.0
    by_lr = {c.data.params["optimizer.lr"]: c for c in children}
    assert len(children) == 2
    assert by_lr["0.001"].info.status == "FINISHED" and loss_steps(client, by_lr["0.001"]) == list(range(20))
    assert by_lr["1000.0"].info.status == "FAILED"
    assert by_lr["1000.0"].data.tags["failure_reason"].startswith("non-finite loss")
    assert parent.info.status == "FAILED" and parent.data.tags["failure_reason"] == "1 of 2 jobs failed"
    assert parent.data.metrics["sweep/failed_jobs"] == 1
    check_summary(client, parent, children, tmp_path, ["optimizer.lr"])
    return parent, by_lr


def summary_rows(client: MlflowClient, parent, tmp: Path) -> list[dict]:
    path = client.download_artifacts(parent.info.run_id, "sweep_summary.csv", dst_path=str(tmp))
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def check_summary(client, parent, children, tmp_path, keys):
    rows = summary_rows(client, parent, tmp_path / "summary")
    assert sorted(r["run_id"] for r in rows) == sorted(c.info.run_id for c in children)
    # One row per Hydra job, in job order; each row is the job Hydra ran under that number.
    assert [r["job"] for r in rows] == [str(n) for n in range(len(children))]
    sweep_dir = Path(parent.data.tags["sweep.dir"])
    by_id = {c.info.run_id: c for c in children}
    for row in rows:
        child = by_id[row["run_id"]]
        ran = yaml.safe_load((sweep_dir / row["job"] / ".hydra" / "overrides.yaml").read_text())
        assert child.data.tags["hydra.overrides"] == " ".join(ran)
        assert row["status"] == child.info.status
        for key in keys:
            assert row[key] == child.data.params[key]
        if child.info.status == "FINISHED":
            assert float(row["final_loss"]) == pytest.approx(child.data.metrics["train/loss"])
            assert float(row["last_iteration_loss"]) == pytest.approx(child.data.metrics["batch/loss"])
            # a child describes itself like a single run: its data, its network, its final numbers
            note = child.data.tags["mlflow.note.content"]
            assert f"train loss {child.data.metrics['train/loss']:.4g}" in note and "**FINISHED** after " in note
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep_summary.csv", "sweep_summary.json", "plots"} <= artifacts
    table = json.loads(Path(client.download_artifacts(parent.info.run_id, "sweep_summary.json", dst_path=str(tmp_path / "t"))).read_text())
    assert len(table["data"]) == len(children)
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert plots == {"plots/final_loss.png"}


@pytest.mark.lowest_deps
def test_basic_launcher_sweep_is_a_parent_with_four_children(cli, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = cli("-m", "optimizer.lr=0.1,0.5", "data.batch_size=1,2", f"logger.tracking_uri={uri}")
    assert proc.returncode == 0, proc.stderr
    client, parent, children = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert parent.data.params == {"sweep.optimizer.lr": "0.1,0.5", "sweep.data.batch_size": "1,2"}
    assert parent.data.tags["sweep.params"] == "optimizer.lr,data.batch_size"
    assert parent.data.metrics["sweep/finished_jobs"] == 4
    assert len(children) == 4
    assert sorted((c.data.params["optimizer.lr"], c.data.params["data.batch_size"]) for c in children) == [
        ("0.1", "1"), ("0.1", "2"), ("0.5", "1"), ("0.5", "2"),
    ]
    for child in children:
        assert child.info.status == "FINISHED"
        assert loss_steps(client, child) == list(range(7))
        assert child.info.run_name == f"lr={child.data.params['optimizer.lr']} bs={child.data.params['data.batch_size']}"
    assert parent.info.run_name == "sweep lr, bs on seed_example"
    # 21 parameters each, within logger.elementwise_max_params: every child logs every element.
    assert parent.data.tags["backproplab.elementwise_metrics"] == "true"
    assert parent.data.tags["backproplab.elementwise_rule"] == (
        "on: the largest network of the sweep has 21 parameters <= logger.elementwise_max_params=64"
    )
    assert all("grad/w1_1_1" in c.data.metrics for c in children)
    assert len({frozenset(c.data.metrics) for c in children}) == 1
    jobs = {(c.data.params["optimizer.lr"], c.data.params["data.batch_size"]): c.data.tags["hydra.job.num"] for c in children}
    assert jobs == {("0.1", "1"): "0", ("0.1", "2"): "1", ("0.5", "1"): "2", ("0.5", "2"): "3"}
    check_summary(client, parent, children, tmp_path, ["optimizer.lr", "data.batch_size"])


def test_joblib_workers_nest_under_the_parent(cli, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer.lr=0.1,0.5", f"logger.tracking_uri={uri}", timeout=300)
    assert proc.returncode == 0, proc.stderr
    client, parent, children = sweep_runs(uri)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["hydra.launcher"].endswith("JoblibLauncher")
    # How the sweep ran (hydra/launcher=joblib, logger.*) is no fixed param of what it trained.
    assert parent.data.params == {"sweep.optimizer.lr": "0.1,0.5"}
    assert sorted(c.data.params["optimizer.lr"] for c in children) == ["0.1", "0.5"]
    assert {c.data.params["optimizer.lr"]: c.data.tags["hydra.job.num"] for c in children} == {"0.1": "0", "0.5": "1"}
    for child in children:
        assert child.info.status == "FINISHED"
        assert loss_steps(client, child) == list(range(7))
    check_summary(client, parent, children, tmp_path, ["optimizer.lr"])
    # The closing lines: the best job, then where the summary is and how to open the parent run.
    last = proc.stdout.strip().splitlines()[-9:]
    best = min(children, key=lambda c: c.data.metrics["train/loss"])
    assert last[0] == "sweep: 2 of 2 jobs finished"
    assert last[1] == "ranking by final loss:"
    assert [line.split()[1] for line in last[3:5]] == [best.info.run_name, next(c.info.run_name for c in children if c is not best)]
    assert last[5].startswith(f"best: job #{best.data.tags['hydra.job.num']} (optimizer.lr={best.data.params['optimizer.lr']}), final loss ")
    assert last[6].startswith("results: multirun/") and "/sweep_summary.csv " in last[6]
    assert last[7].startswith("mlflow: sweep summary ") and f"{parent.info.run_id}/artifacts/sweep_summary.csv" in last[7]
    assert last[8] == (
        f"mlflow: mlflow ui --backend-store-uri {uri}   then open "
        f"http://127.0.0.1:5000/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
        "?workflowType=machine_learning"
    )


def test_sweeper_params_of_an_experiment_are_recorded(cli, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = cli("experiment=lr_sweep", "trainer.epochs=2", f"logger.tracking_uri={uri}", timeout=300)
    assert proc.returncode == 0, proc.stderr
    client, parent, children = sweep_runs(uri)
    swept = parent.data.params["sweep.optimizer.lr"]
    assert len(children) == len(swept.split(","))
    assert sorted(float(c.data.params["optimizer.lr"]) for c in children) == sorted(float(v) for v in swept.split(","))
    check_summary(client, parent, children, tmp_path, ["optimizer.lr"])


def test_a_sweep_whose_jobs_all_fail_ends_failed_and_every_job_ran(cli, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = cli(
        "-m", "model.activation=identity", "model.output_activation=identity", "loss=mse",
        "optimizer.lr=1000,10000", "trainer.epochs=50", f"logger.tracking_uri={uri}",
    )
    assert proc.returncode != 0
    assert "while ending" not in proc.stderr
    client, parent, children = sweep_runs(uri)
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FAILED"
        assert child.data.tags["failure_reason"].startswith("non-finite loss")
    assert parent.info.status == "FAILED"
    assert parent.data.tags["failure_reason"] == "all 2 jobs failed"
    check_summary(client, parent, children, tmp_path, ["optimizer.lr"])


def test_a_job_that_fails_at_run_time_is_a_failed_child_and_fails_the_parent(cli, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = cli(
        "-m", "model.activation=identity", "model.output_activation=identity", "loss=mse",
        "optimizer.lr=0.001,1000", "trainer.epochs=50", f"logger.tracking_uri={uri}",
    )
    assert proc.returncode == 1
    assert "error: 1 of 2 jobs of the multirun failed; the first, #1 (optimizer.lr=1000): non-finite loss" in proc.stderr
    client, parent, children = sweep_runs(uri)
    assert len(children) == 2  # the job's own FAILED run, no second one for the same job
    status = {c.data.params["optimizer.lr"]: c for c in children}
    assert status["0.001"].info.status == "FINISHED" and loss_steps(client, status["0.001"]) == list(range(50))
    # sgd's schema declares lr a float (its annotation): the typed 1000 is run and recorded as 1000.0.
    failed = status["1000.0"]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["failure_reason"].startswith("non-finite loss")
    assert loss_steps(client, failed)  # what was logged before the divergence stays
    assert parent.info.status == "FAILED"
    assert parent.data.tags["failure_reason"] == "1 of 2 jobs failed"
    assert parent.data.metrics["sweep/jobs"] == 2
    assert parent.data.metrics["sweep/finished_jobs"] == 1 and parent.data.metrics["sweep/failed_jobs"] == 1
    # No validation split: the best is the lowest final training loss, as a value and as the parent's final/*.
    assert parent.data.metrics["sweep/best_value"] == status["0.001"].data.metrics["final/train_loss"]
    assert parent.data.metrics["final/train_loss"] == status["0.001"].data.metrics["final/train_loss"]
    assert parent.data.tags["sweep.ranked_by"] == "final_loss"
    check_summary(client, parent, children, tmp_path, ["optimizer.lr"])
    rows = summary_rows(client, parent, tmp_path / "rows")
    assert [(r["job"], r["optimizer.lr"], r["status"]) for r in rows] == [("0", "0.001", "FINISHED"), ("1", "1000.0", "FAILED")]


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.sweeper.n_jobs=2", "hydra.launcher.n_jobs=2"]], ids=["basic", "joblib"])
def test_a_job_that_fails_before_tracking_still_gets_a_failed_child(tmp_path, launcher):
    """A search's interval is checked up front at its low end only (momentum 0.0), so a trial
    that samples a bad value (momentum >= 1) fails in its job, before ``track_run``: the sweep
    callback records it as a FAILED child with the reason, counted by the parent. (The random
    sampler with seed 1 draws 0.83, 1.44, 0.0002.)"""
    from conftest import cli_env

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = subprocess.run(
        [sys.executable, "-m", "backproplab", "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=1",
         "hydra.sweeper.n_trials=3", *launcher, "optimizer.momentum=interval(0.0,2.0)", "trainer.epochs=2", f"logger.tracking_uri={uri}"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert re.search(r"job failed: optimizer.momentum=1\.\d+ is invalid for optimizer=sgd", proc.stderr), proc.stderr
    assert proc.returncode == 1
    client, parent, children = sweep_runs(uri)
    assert len(children) == 3
    bad = [c for c in children if float(c.data.params["optimizer.momentum"]) >= 1]
    good = [c for c in children if float(c.data.params["optimizer.momentum"]) < 1]
    assert bad and good
    for run in bad:
        momentum = run.data.params["optimizer.momentum"]
        assert run.info.status == "FAILED"
        assert run.data.tags["failure_reason"] == f"optimizer.momentum={momentum} is invalid for optimizer=sgd; valid: in [0, 1)"
        assert run.data.tags["hydra.job.num"] in ("0", "1", "2")
    assert all(run.info.status == "FINISHED" for run in good)
    assert parent.info.status == "FAILED" and parent.data.tags["failure_reason"] == f"{len(bad)} of 3 jobs failed"
    assert parent.data.metrics["sweep/failed_jobs"] == len(bad)


def test_summary_rows_follow_job_numbers_not_completion_order(tmp_path):
    """Children finishing in any order (as under joblib) still give rows in Hydra's job order."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from mlflow.entities import Metric

    from backproplab.hydra_app.config_store import register_configs
    from backproplab.hydra_app.preflight import expand
    from backproplab.hydra_app.mlflow_sweep import PARENT_TAG as TAG, MlflowSweepCallback
    from backproplab.hydra_app.sweep_status import sweep_of
    from backproplab.run.sweep import summary_rows as rows_of, write_summary

    register_configs()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with initialize_config_module("backproplab.conf", **version_base()):
        master = GlobalHydra.instance().config_loader().load_configuration(
            "config", ["optimizer.lr=0.1,0.5,1.0", "data.batch_size=1,2", f"logger.tracking_uri={uri}",
                       f"hydra.sweep.dir={tmp_path / 'sweep'}"],
            run_mode=RunMode.MULTIRUN,
        )
    sweep = sweep_of(master)
    callback = MlflowSweepCallback()
    callback.start(master, sweep)
    sweep.decide(set())
    sweep.write()
    client, (parent_run,) = MlflowClient(uri), MlflowClient(uri).search_runs(["1"])
    jobs = [(lr, bs) for lr in ("0.1", "0.5", "1.0") for bs in ("1", "2")]  # Hydra's order
    # What each job's run is tagged with: the job's overrides as the launcher passes them.
    launched = {job.num: " ".join(job.overrides) for job in expand(master, None)}
    assert launched[3].startswith("optimizer.lr=0.5 data.batch_size=2 logger.tracking_uri=sqlite")
    finishing = [4, 1, 5, 0, 3, 2]  # the order the children start and end
    for num in finishing:
        lr, bs = jobs[num]
        run = client.create_run(parent_run.info.experiment_id, run_name=f"job {num}", tags={
            TAG: parent_run.info.run_id, "hydra.overrides": launched[num]})
        client.log_batch(run.info.run_id, metrics=[Metric("train/loss", float(num), 0, 0)],
                         params=[mlflow_param("optimizer.lr", lr), mlflow_param("data.batch_size", bs)])
        client.set_terminated(run.info.run_id, "FINISHED")
    outcomes = sweep.outcomes(callback.children(sweep))
    rule = sweep.rule(outcomes)
    callback.end(sweep, outcomes, rule, write_summary(sweep, rows_of(sweep, outcomes, rule)))
    parent = client.get_run(parent_run.info.run_id)
    assert parent.info.status == "FINISHED"
    rows = summary_rows(client, parent, tmp_path / "rows")
    assert [r["job"] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    assert [(r["optimizer.lr"], r["data.batch_size"]) for r in rows] == jobs
    assert [r["run_name"] for r in rows] == [f"job {n}" for n in range(6)]
    assert [float(r["final_loss"]) for r in rows] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert list(rows[0])[:4] == ["rank", "job", "status", "how"]
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4", "5", "6"]  # lowest final loss first


def mlflow_param(key, value):
    from mlflow.entities import Param

    return Param(key, value)


def test_unreachable_server_stops_the_multirun_before_any_job(cli, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = cli("-m", "optimizer.lr=0.1,0.5", f"logger.tracking_uri=http://127.0.0.1:{port}")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2
    assert lines[-1] == (
        f"error: MLflow tracking server http://127.0.0.1:{port} is not reachable ([Errno 111] Connection refused); "
        "start it, fix logger.tracking_uri, or run with logger=none"
    )
    assert "final loss" not in proc.stdout
    assert not (tmp_path / "multirun").exists() or not list((tmp_path / "multirun").glob("**/result.json"))


# -- a real tracking server -----------------------------------------------------------------------
@pytest.fixture
def mlflow_server(tmp_path):
    from servers import MlflowServer

    root = tmp_path / "server"
    with MlflowServer(f"sqlite:///{root}/db.sqlite", root) as server:
        yield server.url


@pytest.mark.lowest_deps
def test_sweep_against_a_real_mlflow_server(cli, tmp_path, mlflow_server):
    proc = cli("-m", "optimizer.lr=0.1,0.5", "data.batch_size=1,2", f"logger.tracking_uri={mlflow_server}", timeout=300)
    assert proc.returncode == 0, proc.stderr
    client, parent, children = sweep_runs(mlflow_server)
    assert parent.info.status == "FINISHED"
    assert len(children) == 4
    # A server needs no 'mlflow ui': the last line is the parent run's address on it.
    url = f"{mlflow_server.rstrip('/')}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}?workflowType=machine_learning"
    assert proc.stdout.strip().splitlines()[-1] == f"mlflow: open {url}"
    for child in children:
        assert child.info.status == "FINISHED"
        for key in ("batch/loss", "grad/w1_1_1", "param/b2_1", "grad_norm/W2"):
            steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, key))
            assert steps == list(range(7)), (child.info.run_name, key)
        assert {"config.yaml", "params.npz", "plots"} <= {a.path for a in client.list_artifacts(child.info.run_id)}
    check_summary(client, parent, children, tmp_path, ["optimizer.lr", "data.batch_size"])
    assert not (tmp_path / "mlflow.db").exists()  # everything went to the server


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_the_sweeps_answer_is_on_the_parent_and_every_child_has_the_same_metrics(cli, tmp_path):
    """Final metrics on every child, the best child named and linked on the parent,
    readable names, one element-wise decision for a sweep over widths, the fixed overrides as
    params, a summary table without dotted columns and a readable final-loss plot."""
    from backproplab.tracking.records.summary import DPI, plot_size

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = cli(
        "-m", "data=moons", "data.n_samples=40", "trainer.epochs=2", "optimizer.lr=0.1,0.5", "model.hidden=[4],[8,8]",
        f"logger.tracking_uri={uri}", timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    client, parent, children = sweep_runs(uri)
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)

    # Every child: the final numbers as metrics, equal to the last epoch's values.
    finals = {"final/train_loss", "final/val_loss", "final/train_accuracy", "final/val_accuracy"}
    for child in children:
        assert finals <= set(child.data.metrics)
        for key in finals:
            epoch_key = key.removeprefix("final/").replace("_", "/", 1)
            assert client.get_metric_history(child.info.run_id, key)[-1].value == child.data.metrics[epoch_key]
    # [4] has 17 parameters, [8,8] 105 > 64: the sweep decides once, off, for every child.
    assert parent.data.tags["backproplab.elementwise_metrics"] == "false"
    assert parent.data.tags["backproplab.elementwise_rule"] == (
        "off: a network of the sweep has 105 parameters > logger.elementwise_max_params=64"
    )
    assert all(c.data.tags["backproplab.elementwise_metrics"] == "false" for c in children)
    # The same metric names on every child, but for the norms of the layers only [8,8] has.
    deeper = {"grad_norm/W3", "grad_norm/b3", "weight_norm/W3"}
    keys = {c.data.params["model.hidden"]: set(c.data.metrics) for c in children}
    assert keys["[8, 8]"] - keys["[4]"] == deeper and not keys["[4]"] - keys["[8, 8]"]
    assert not any(k.startswith(("grad/", "param/")) for k in keys["[4]"] | keys["[8, 8]"])

    # Names: the children by what differs, the parent by what was swept and on which data.
    names = {(c.data.params["optimizer.lr"], c.data.params["model.hidden"]): c.info.run_name for c in children}
    assert names == {
        ("0.1", "[4]"): "lr=0.1 hidden=[4]", ("0.1", "[8, 8]"): "lr=0.1 hidden=[8,8]",
        ("0.5", "[4]"): "lr=0.5 hidden=[4]", ("0.5", "[8, 8]"): "lr=0.5 hidden=[8,8]",
    }
    assert parent.info.run_name == "sweep lr, hidden on moons"
    # The fixed overrides as params, beside the swept values; how it ran (logger.*) is not one.
    assert parent.data.params == {
        "sweep.optimizer.lr": "0.1,0.5", "sweep.model.hidden": "[4],[8,8]",
        "data": "moons", "data.n_samples": "40", "trainer.epochs": "2",
    }

    # The best child: the lowest final validation loss (the sweep has a validation split).
    best = min(children, key=lambda c: c.data.metrics["final/val_loss"])
    assert parent.data.tags["backproplab.best_run_id"] == best.info.run_id
    assert parent.data.tags["backproplab.best_run_name"] == best.info.run_name
    note = parent.data.tags["mlflow.note.content"]
    link = f"[{best.info.run_name}](#/experiments/{parent.info.experiment_id}/runs/{best.info.run_id}?workflowType=machine_learning)"
    assert note.startswith(f"**Best run: {link}**, final validation loss = {best.data.metrics['final/val_loss']:.6g}")
    assert "`trainer.epochs=2`" in note

    # The JSON table: MLflow's {"columns", "data"} form, and no column name with a dot.
    path = client.download_artifacts(parent.info.run_id, "sweep_summary.json", dst_path=str(tmp_path / "t"))
    table = json.loads(Path(path).read_text())
    assert table["columns"][:4] == ["rank", "job", "status", "how"]
    assert {"optimizer/lr", "model/hidden", "final_loss", "final_val_loss"} <= set(table["columns"])
    assert not any("." in c for c in table["columns"])
    assert len(table["data"]) == 4 and all(len(row) == len(table["columns"]) for row in table["data"])
    lr = table["columns"].index("optimizer/lr")
    assert sorted(row[lr] for row in table["data"]) == ["0.1", "0.1", "0.5", "0.5"]

    # The plot: one bar per child, sized for its labels and bars.
    png = Path(client.download_artifacts(parent.info.run_id, "plots/final_loss.png", dst_path=str(tmp_path / "p")))
    width, height = plot_size([c.info.run_name for c in children])
    assert png_size(png) == (round(width * DPI), round(height * DPI))


def test_a_search_for_the_best_accuracy_names_its_best_trial_on_the_parent(cli, tmp_path):
    """An explicit objective: the parent's best child is the search's best trial (highest final
    validation accuracy), not the lowest loss; children are named by trial and sampled values."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = cli(
        "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "optimizer.lr=interval(0.01,1.0)", "trainer.objective=final_val_accuracy",
        "data=moons", "data.n_samples=40", "trainer.epochs=2", f"logger.tracking_uri={uri}", timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    client, parent, children = sweep_runs(uri)
    assert parent.info.run_name == "search lr on moons"
    for child in children:
        lr = float(dict(o.split("=", 1) for o in child.data.tags["hydra.overrides"].split())["optimizer.lr"])
        assert child.info.run_name == f"#{child.data.tags['hydra.job.num']} lr={lr:.4g}"
    best = client.get_run(parent.data.tags["backproplab.best_run_id"])
    assert best.data.metrics["final/val_accuracy"] == max(c.data.metrics["final/val_accuracy"] for c in children)
    assert parent.data.tags["backproplab.best_run_name"] == best.info.run_name
    assert "(highest final validation accuracy of the finished jobs, trainer.objective=final_val_accuracy;" in parent.data.tags["mlflow.note.content"]
    assert parent.data.metrics["sweep/best_value"] == best.data.metrics["final/val_accuracy"] == parent.data.metrics["final/val_accuracy"]
    # Only the learning rate is searched: the network's size is known, and small.
    assert parent.data.tags["backproplab.elementwise_metrics"] == "true"


@pytest.mark.lowest_deps
def test_a_swept_component_hyperparameter_names_the_runs_as_typed(cli, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = cli("-m", "model.activation=leaky_relu", "model.activation.alpha=0.1,0.2", "trainer.epochs=1", f"logger.tracking_uri={uri}")
    assert proc.returncode == 0, proc.stderr
    _client, parent, children = sweep_runs(uri)
    assert sorted(c.info.run_name for c in children) == ["alpha=0.1", "alpha=0.2"]
    assert parent.info.run_name == "sweep alpha on seed_example"
    assert parent.data.params == {"sweep.model.activation.alpha": "0.1,0.2", "trainer.epochs": "1"}
    assert re.search(r"^\[model\.activation=leaky_relu model\.activation\.alpha=0\.2 trainer\.epochs=1 [^]]*\] final loss", proc.stdout, re.M)

