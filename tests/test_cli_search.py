"""Hyperparameter search with Hydra's Optuna sweeper through the real command: the objective
the task returns, the study recorded on the MLflow parent run, failed trials, and the checks
made before any trial starts."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import HIDE_PACKAGE_THEN_CLI, cli_env
from mlflow import MlflowClient

pytestmark = [pytest.mark.slow, pytest.mark.hydra_compat]

CONFIG = 2  # exit code for a wrong command line or config
# hpo_moons, made smaller: 4 trials of 3 epochs on 100 examples.
SMALL = ["data.n_samples=100", "trainer.epochs=3", "hydra.sweeper.n_trials=4"]


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def results(sweep_dir: Path) -> dict[int, dict]:
    out = {}
    for path in sweep_dir.glob("*/result.json"):
        record = json.loads(path.read_text())
        out[record["job"]] = record
    return out


def parent_and_children(uri: str):
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "backproplab"]
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.data.tags for r in runs]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], children


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("search")
    uri = f"sqlite:///{cwd}/mlflow.db"
    proc = subprocess.run(
        [sys.executable, "-m", "backproplab", "experiment=hpo_moons", *SMALL, f"logger.tracking_uri={uri}", "hydra.sweep.dir=sweep"],
        cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=400,
    )
    return proc, cwd, uri


def test_the_preset_runs_n_trials_as_children_of_one_parent(search):
    proc, cwd, uri = search
    assert proc.returncode == 0, proc.stderr
    parent, children = parent_and_children(uri)
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweep.objective"] == "auto" and parent.data.tags["sweep.direction"] == "minimize"
    assert set(parent.data.tags["sweep.params"].split(",")) == {"optimizer.lr", "data.batch_size", "model.hidden"}
    assert sorted(int(c.data.tags["hydra.job.num"]) for c in children) == [0, 1, 2, 3]


def test_the_objective_is_the_final_validation_loss(search):
    """auto on data with a validation split: what each job returned (result.json's objective, and
    Optuna's best value) is its final val loss, which is also the child's last val/loss."""
    proc, cwd, uri = search
    assert proc.returncode == 0, proc.stderr
    records = results(cwd / "sweep")
    assert sorted(records) == [0, 1, 2, 3]
    for record in records.values():
        assert record["objective"] == {"name": "final_val_loss", "value": record["final_val_loss"]}
        assert record["final_val_loss"] != record["final_train_loss"]
    study = yaml.safe_load((cwd / "sweep" / "optimization_results.yaml").read_text())
    assert study["best_value"] == min(r["final_val_loss"] for r in records.values())
    _, children = parent_and_children(uri)
    by_job = {int(c.data.tags["hydra.job.num"]): c for c in children}
    for num, record in records.items():
        assert by_job[num].data.metrics["val/loss"] == pytest.approx(record["final_val_loss"], rel=1e-12)


def test_the_parent_records_the_best_trial(search):
    proc, cwd, uri = search
    assert proc.returncode == 0, proc.stderr
    parent, children = parent_and_children(uri)
    best = min(children, key=lambda c: c.data.metrics["val/loss"])
    assert parent.data.tags["backproplab.best_run_id"] == best.info.run_id
    assert parent.data.metrics["sweep/best_value"] == pytest.approx(best.data.metrics["val/loss"], rel=1e-12)
    study = yaml.safe_load((cwd / "sweep" / "optimization_results.yaml").read_text())
    assert parent.data.metrics["sweep/best_value"] == pytest.approx(study["best_value"], rel=1e-12)
    assert {k.removeprefix("sweep.best."): v for k, v in parent.data.params.items() if k.startswith("sweep.best.")} == {
        k: str(v) for k, v in study["best_params"].items()
    }
    # The best child ran with the best parameters.
    ran = dict(item.split("=", 1) for item in best.data.tags["hydra.overrides"].split())
    assert float(ran["optimizer.lr"]) == pytest.approx(float(study["best_params"]["optimizer.lr"]))
    assert ran["data.batch_size"] == str(study["best_params"]["data.batch_size"])
    # The closing lines name the same best job, by its objective.
    best_job = best.data.tags["hydra.job.num"]
    assert f"best: job #{best_job} (" in proc.stdout and "final validation loss" in proc.stdout


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]], ids=["basic", "joblib"])
def test_a_failed_trial_is_a_failed_child_and_the_study_goes_on(tmp_path, launcher):
    """Four seeded random trials over two learning rates, in batches of two; the sampler's seed
    gives 0.5, 1e30, 0.5, 0.5 (with optuna 2.10 and 5.0 alike). lr 1e30 diverges (mse on an
    identity output): its validation loss is inf, so it has no objective; its trial fails and its
    run, trained to the end, is FAILED. The second batch still runs, the best is job #0, and the
    command exits 1 as for any sweep with a failed job. Under joblib a batch runs in workers."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = subprocess.run(
        [sys.executable, "-m", "backproplab", "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=random",
         "hydra.sweeper.sampler.seed=0", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
         "optimizer.lr=choice(1e30,0.5)", "loss=mse", "model.output_activation=identity", "data=moons",
         "data.n_samples=60", "trainer.epochs=3", *launcher, f"logger.tracking_uri={uri}", "hydra.sweep.dir=sweep"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: 1 of 4 jobs of the multirun failed; the first, #1 (optimizer.lr=1e+30)")
    parent, children = parent_and_children(uri)
    by_job = {int(c.data.tags["hydra.job.num"]): c for c in children}
    assert sorted(by_job) == [0, 1, 2, 3] and len(children) == 4
    assert [by_job[n].info.status for n in range(4)] == ["FINISHED", "FAILED", "FINISHED", "FINISHED"]
    failed = by_job[1]
    assert failed.data.tags["failure_reason"] == "trainer.objective=auto is inf, not a finite number"
    ran = dict(item.split("=", 1) for item in failed.data.tags["hydra.overrides"].split())
    assert float(ran["optimizer.lr"]) == 1e30
    assert parent.info.status == "FAILED" and parent.data.tags["failure_reason"] == "1 of 4 jobs failed"
    assert parent.data.tags["backproplab.best_run_id"] == by_job[0].info.run_id
    study = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert study["best_params"] == {"optimizer.lr": 0.5}
    assert study["best_value"] == parent.data.metrics["sweep/best_value"] == by_job[0].data.metrics["val/loss"]
    assert json.loads((tmp_path / "sweep" / "1" / "result.json").read_text())["status"] == "failed"


def test_a_bad_search_space_key_stops_before_any_trial(cli, tmp_path):
    proc = cli("-m", "hydra/sweeper=optuna", "optimizer.lrr=interval(0.01,1.0)", "data=moons",
               f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db")
    assert proc.returncode == CONFIG, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith("error: the search space of hydra/sweeper=optuna is invalid, so no trial was started")
    assert "optimizer.lrr is not a key of the config" in line and "did you mean 'lr'?" in line
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_bad_key_in_a_presets_search_space_stops_before_any_trial(cli, tmp_path):
    proc = cli("experiment=hpo_moons", "model.hiden=choice([4],[8])", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db")
    assert proc.returncode == CONFIG, proc.stderr
    line = one_line(proc.stderr)
    assert "search space" in line and "model.hiden" in line
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("choices, bad", [("choice(0.5,abc)", "optimizer.lr='abc' is invalid for optimizer=sgd"), ("choice(0.5,0.1,-1.0)", "optimizer.lr=-1.0 is invalid")])
def test_every_value_of_a_choice_is_checked_before_any_trial(cli, tmp_path, choices, bad):
    """Not only the representative trial's first choice: a later value of the wrong type, or
    out of range, stops the search before any trial or MLflow run exists."""
    proc = cli("experiment=hpo_moons", f"optimizer.lr={choices}", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db")
    assert proc.returncode == CONFIG, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith("error: the search space of hydra/sweeper=optuna is invalid, so no trial was started; checked on the trial")
    assert bad in line
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_bad_fixed_override_stops_before_any_trial(cli, tmp_path):
    proc = cli("experiment=hpo_moons", "data.batch_size=0", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db")
    assert proc.returncode == CONFIG, proc.stderr
    line = one_line(proc.stderr)
    assert "search space" in line and "data.batch_size=0 is invalid" in line
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_direction_against_the_objective_is_refused(cli, tmp_path):
    proc = cli("experiment=hpo_moons", "trainer.objective=final_val_accuracy", "hydra.sweeper.direction=minimize",
               f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db")
    assert proc.returncode == CONFIG, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith("error: hydra.sweeper.direction=minimize contradicts trainer.objective=final_val_accuracy")
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "mlflow.db").exists()


def test_an_accuracy_objective_is_maximised(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = subprocess.run(
        [sys.executable, "-m", "backproplab", "experiment=hpo_moons", "data.n_samples=60", "trainer.epochs=2",
         "hydra.sweeper.n_trials=2", "trainer.objective=final_train_accuracy", f"logger.tracking_uri={uri}",
         "hydra.sweep.dir=sweep"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stderr
    parent, children = parent_and_children(uri)
    assert parent.data.tags["sweep.direction"] == "maximize"
    records = results(tmp_path / "sweep")
    assert all(r["objective"] == {"name": "final_train_accuracy", "value": r["final_train_accuracy"]} for r in records.values())
    best = max(records.values(), key=lambda r: r["final_train_accuracy"])
    study = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert study["best_value"] == best["final_train_accuracy"] == parent.data.metrics["sweep/best_value"]


def test_a_misspelt_objective_is_one_line(cli):
    proc = cli("trainer.objective=final_val_los", "logger=none")
    assert proc.returncode == CONFIG, proc.stderr
    assert one_line(proc.stderr) == (
        "error: trainer.objective='final_val_los' is invalid; valid: auto, final_val_loss, final_train_loss, "
        "final_val_accuracy, final_train_accuracy; did you mean 'final_val_loss'?"
    )


def test_a_single_run_without_a_validation_split_reports_its_training_loss(cli, tmp_path):
    """auto falls back to the final training loss (the worked example has no validation split);
    single runs ignore the returned objective, but result.json records which one it was."""
    proc = cli("logger=none", "hydra.run.dir=run")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["final_val_loss"] is None
    assert record["objective"] == {"name": "final_loss", "value": record["final_train_loss"]}
    assert math.isclose(record["objective"]["value"], 0.077904, abs_tol=5e-7)


@pytest.mark.parametrize(
    "args",
    [["trainer.epochs=1"], ["-m", "optimizer.lr=0.1,0.5", "trainer.epochs=1"], ["experiment=lr_sweep", "trainer.epochs=1"],
     ["experiment=hpo_moons", "hydra.sweeper.n_trials=1", "trainer.epochs=1"]],
    ids=["single", "basic-sweep", "experiment-sweep", "optuna"],
)
def test_hydra_prints_no_warnings(cli, args):
    """No version_base, execution-whitelist or other Hydra warning, on Hydra 1.3 and 1.4 alike
    (every warning reaches the console as one 'warning:' line)."""
    proc = cli(*args, "logger=none")
    assert proc.returncode == 0, proc.stderr
    # A one-epoch job may rightly say it learned nothing (backproplab's own verdict, not Hydra's).
    learned = "warning: the run learned little or nothing"
    assert [line for line in proc.stderr.splitlines() if "warning" in line.lower() and learned not in line] == []




@pytest.mark.parametrize("args", [["experiment=hpo_moons"], ["-m", "hydra/sweeper=optuna", "optimizer.lr=interval(0.01,1.0)"]],
                         ids=["preset", "command-line"])
def test_without_the_plugin_the_error_names_the_optuna_extra(tmp_path, args):
    proc = subprocess.run(
        [sys.executable, "-c", HIDE_PACKAGE_THEN_CLI, "hydra_plugins.hydra_optuna_sweeper", *args, f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == CONFIG, proc.stderr
    assert one_line(proc.stderr) == (
        "error: hydra/sweeper=optuna needs the Hydra plugin hydra-optuna-sweeper, which is not installed; "
        'install it with: pip install "backproplab[optuna]"'
    )
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "mlflow.db").exists()
