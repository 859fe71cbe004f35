"""What a reviewer finds after a run or a sweep: a logged model that carries its results, a run
that says when it learned nothing, the run's MLflow link on the console, the last decision
boundary as a plain file, a sweep child's bounded share of the store, and the sweep's best model
one command away from the registry.

Real CLI runs in subprocesses, into real sqlite stores, read back through ``MlflowClient``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import cli_env

pytestmark = [pytest.mark.slow, pytest.mark.hydra_compat]

FLAG = "warning: the run learned little or nothing: "
# MLflow 2 (down to the declared floor) has no logged models: the model is the run's artifact alone.
LOGGED_MODELS = hasattr(MlflowClient, "create_logged_model")
needs_logged_models = pytest.mark.skipif(not LOGGED_MODELS, reason="logged models are MLflow 3's")
UI = "http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run}?workflowType=machine_learning"


def backproplab(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backproplab", *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300
    )


def png(client: MlflowClient, run_id: str, path: str, dst: Path) -> bytes:
    return Path(client.download_artifacts(run_id, path, str(dst))).read_bytes()


@pytest.fixture(scope="module")
def moons(tmp_path_factory):
    """``backproplab data=moons``: a data= choice alone, the worked example's network (7 epochs)."""
    tmp = tmp_path_factory.mktemp("moons")
    uri = f"sqlite:///{tmp}/mlflow.db"
    proc = backproplab(tmp, "data=moons", f"logger.tracking_uri={uri}")
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    return tmp, uri, client, run, proc


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A two-child sweep with 60 iterations per child (batch size 8), so the cap thins it, of a
    network small enough (33 parameters) for element-wise metrics."""
    tmp = tmp_path_factory.mktemp("sweep")
    uri = f"sqlite:///{tmp}/mlflow.db"
    proc = backproplab(
        tmp, "-m", "experiment=moons", "model.hidden=[8]", "trainer.epochs=3", "data.batch_size=8", "optimizer.lr=0.1,0.5",
        "logger.max_points_per_metric=auto", f"logger.tracking_uri={uri}",
    )
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("backproplab.sweep") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2
    return tmp, uri, client, parent, children, proc


def test_a_data_choice_alone_that_does_not_learn_says_so_and_names_a_preset(moons):
    tmp, _, client, run, proc = moons
    flagged = [line for line in proc.stderr.splitlines() if line.startswith(FLAG)]
    assert len(flagged) == 1, proc.stderr
    line = flagged[0]
    assert "the loss fell only" in line and "experiment=moons" in line and "model.hidden=[8,8]" in line, line
    note = run.data.tags["mlflow.note.content"]
    assert "**Learned little or nothing:** the loss fell only" in note and "experiment=moons" in note, note
    (result,) = tmp.glob("outputs/*/*/result.json")
    assert json.loads(result.read_text())["warning"] == line.removeprefix("warning: ")


def test_the_preset_it_names_learns_and_the_worked_example_is_not_flagged(tmp_path):
    learned = backproplab(tmp_path, "experiment=moons", "logger=none")
    assert learned.returncode == 0, learned.stderr
    assert FLAG not in learned.stderr
    last = learned.stdout.strip().splitlines()[-2]  # the last epoch's line
    assert "val acc 1.0000" in last, last
    worked = backproplab(tmp_path, "logger=none")
    assert worked.returncode == 0 and FLAG not in worked.stderr, worked.stderr
    assert "iteration 7/7  prediction 0.925053  loss 0.077904" in worked.stdout


def test_chance_level_accuracy_is_flagged(tmp_path):
    # A tiny learning rate on full batches: the network keeps answering about 0.5 for everything.
    proc = backproplab(tmp_path, "data=moons", "data.batch_size=200", "optimizer.lr=0.001", "logger=none")
    assert proc.returncode == 0, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith(FLAG)]
    assert "val accuracy 0.5 is chance level" in line and "the loss did not fall" in line, line
    # Not the worked example's settings (its lr is 0.5): the hint asks to check them instead.
    assert "Check optimizer.lr, trainer.epochs and the initializer; try experiment=moons" in line, line


def test_a_single_run_prints_its_mlflow_link(moons):
    _, uri, _, run, proc = moons
    link = f"mlflow: mlflow ui --backend-store-uri {uri}   then open " + UI.format(experiment=run.info.experiment_id, run=run.info.run_id)
    assert link in proc.stdout.splitlines(), proc.stdout


def test_the_last_decision_boundary_is_a_plain_artifact(moons, tmp_path):
    _, _, client, run, _ = moons
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/decision_boundary.png", "plots/loss.png"} <= plots, plots
    data = png(client, run.info.run_id, "plots/decision_boundary.png", tmp_path)
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


@needs_logged_models
def test_the_logged_model_carries_its_metrics_params_and_datasets(moons):
    _, _, client, run, _ = moons
    run_id = run.info.run_id
    (output,) = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.name == "moons-mlp-2-4-1-sigmoid"
    assert model.source_run_id == run_id
    assert model.params == run.data.params
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    linked = {m.key: m for m in model.metrics}
    # final/epochs (how long it trained) counts against the training split, as the train figures do.
    assert set(linked) == {"final/train_loss", "final/val_loss", "final/train_accuracy", "final/val_accuracy", "final/epochs"}
    for key, metric in linked.items():
        split = inputs["validation" if key.startswith("final/val_") else "training"]
        assert (metric.dataset_name, metric.dataset_digest) == (split.name, split.digest), key
        assert metric.value == run.data.metrics[key] and metric.run_id == run_id
        # The run's own row is the same one: the store holds it once.
        assert len(client.get_metric_history(run_id, key)) == 1


@needs_logged_models
def test_sweep_children_models_are_named_by_what_they_are_and_their_points_are_bounded(sweep):
    _, _, client, _, children, _ = sweep
    names = set()
    for child in children:
        (output,) = child.outputs.model_outputs
        names.add(client.get_logged_model(output.model_id).name)
        # 60 iterations under the sweep child's default cap of 50 points: every second one.
        assert child.data.tags["backproplab.iteration_stride"] == "2"
        assert child.data.tags["backproplab.elementwise_metrics"] == "true"
        for key in ("batch/loss", "grad/w1_1_1", "param/b2_1"):
            assert len(client.get_metric_history(child.info.run_id, key)) == 30, key
    assert names == {"moons-mlp-2-8-1-tanh lr=0p1", "moons-mlp-2-8-1-tanh lr=0p5"}


def test_the_sweeps_best_model_is_one_command_from_the_registry(sweep, tmp_path):
    tmp, uri, client, parent, _, _ = sweep
    # From another folder: nothing may land in a default ./mlflow.db there.
    proc = subprocess.run(
        [sys.executable, "-m", "backproplab", "runs", "register", "moons-classifier", "--tracking-uri", uri],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "mlflow.db").exists()
    best = parent.data.tags["backproplab.best_run_id"]
    version = client.get_model_version("moons-classifier", "1")
    assert version.run_id == best
    assert f"({best}) as moons-classifier version 1: load it as models:/moons-classifier/1" in proc.stdout
    if LOGGED_MODELS:  # the version is listed on its logged model's page
        model_id = client.get_run(best).outputs.model_outputs[0].model_id
        assert json.loads(client.get_logged_model(model_id).tags["mlflow.modelVersions"]) == [{"name": "moons-classifier", "version": 1}]
    # The registered version loads and predicts, from this store only (no global tracking URI).
    load = subprocess.run(
        [sys.executable, "-c", "import mlflow, pandas as pd, sys; mlflow.set_tracking_uri(sys.argv[1]); "
         "print(mlflow.pyfunc.load_model('models:/moons-classifier/1').predict(pd.DataFrame({'x1': [0.5], 'x2': [-0.3]})).shape)", uri],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert load.returncode == 0 and load.stdout.strip() == "(1, 1)", load.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "backproplab", "runs", "register", "a/b", "--tracking-uri", uri],
        cwd=tmp, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: backproplab runs register NAME must be a registered model name"), bad.stderr
