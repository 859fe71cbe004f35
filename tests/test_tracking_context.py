"""Context on every run: the data sets as MLflow dataset inputs with training and
validation contexts, a description that states the run and its final numbers, an ``epoch``
metric to plot against, and params without the tracking settings or literal "null" values.

Real CLI runs into a real sqlite store, read back with MlflowClient."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow


def only_run(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    return client, run


def inputs_by_context(run) -> dict[str, object]:
    out = {}
    for dataset_input in run.inputs.dataset_inputs:
        (context,) = [t.value for t in dataset_input.tags if t.key == "mlflow.data.context"]
        out[context] = dataset_input.dataset
    return out


def test_a_generated_set_with_a_validation_split(cli, tmp_path):
    # 200 moons, 160 for training in batches of 32: 5 iterations per epoch.
    proc = cli("data=moons", "model.hidden=[4]", "trainer.epochs=3")
    assert proc.returncode == 0, proc.stderr
    client, run = only_run(tmp_path)
    assert run.info.status == "FINISHED"

    datasets = inputs_by_context(run)
    assert set(datasets) == {"training", "validation"}
    train, val = datasets["training"], datasets["validation"]
    assert train.name == val.name == "moons"
    assert train.digest != val.digest and len(train.digest) == 16
    assert train.source_type == "code"
    source = json.loads(train.source)["tags"]
    assert source["made_by"] == "sklearn.datasets.make_moons"
    assert source["data.n_samples"] == "200" and source["data.noise"] == "0.1" and source["data.val_fraction"] == "0.2"
    schema = [column["name"] for column in json.loads(train.schema)["mlflow_colspec"]]
    assert schema == ["x1", "x2", "target"]
    assert json.loads(train.profile)["num_rows"] == 160 and json.loads(val.profile)["num_rows"] == 40

    # epoch: epochs completed at every logged step, per iteration and at each epoch's end
    epoch = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "epoch"))
    assert epoch == [(s, s / 5) for s in range(16)]
    train_steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert train_steps == [5, 10, 15] and {s for s, _ in epoch} >= set(train_steps)

    params = run.data.params
    assert not any(k.startswith("logger.") for k in params), sorted(params)
    assert "null" not in params.values(), {k: v for k, v in params.items() if v == "null"}
    assert params["optimizer.lr"] == "0.5" and params["data.name"] == "moons"
    logger = json.loads(run.data.tags["backproplab.logger"])
    assert logger["name"] == "mlflow" and logger["every_n_iterations"] == 1 and logger["tracking_uri"] is None

    note = run.data.tags["mlflow.note.content"]
    m = run.data.metrics
    assert note.startswith("**moons** (160 training, 40 validation examples): network 2-4-1 (sigmoid; output sigmoid), loss bce, optimizer sgd (lr 0.5), batch size 32, 3 epochs.")
    assert (
        f"**FINISHED** after 3 epochs (15 iterations): train loss {m['train/loss']:.4g}, val loss {m['val/loss']:.4g}, "
        f"train accuracy {m['train/accuracy']:.4g}, val accuracy {m['val/accuracy']:.4g}."
    ) in note


def test_a_csv_file_is_its_own_source(cli, tmp_path):
    rng = np.random.default_rng(0)
    rows = "\n".join(f"{a:.4f},{b:.4f},{int(a + b > 0)}" for a, b in rng.normal(size=(12, 2)))
    (tmp_path / "points.csv").write_text("first,second,label\n" + rows + "\n")
    proc = cli("data=csv", "data.path=points.csv", "data.target=label", "data.batch_size=4", "trainer.epochs=2")
    assert proc.returncode == 0, proc.stderr
    client, run = only_run(tmp_path)

    datasets = inputs_by_context(run)
    assert set(datasets) == {"training"}  # no validation split, no validation input
    train = datasets["training"]
    assert train.name == "points.csv"
    assert train.source_type == "local"
    assert json.loads(train.source)["uri"] == str((tmp_path / "points.csv").resolve())
    assert [c["name"] for c in json.loads(train.schema)["mlflow_colspec"]] == ["first", "second", "target"]
    # data.features is null by default: not a param, still in config.yaml
    assert "data.features" not in run.data.params
    assert "**points.csv** (12 training examples)" in run.data.tags["mlflow.note.content"]
