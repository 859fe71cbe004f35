"""A CSV whose target column holds class names, through the real command: the names are
encoded, and recorded beside the trained weights (params.npz, MLflow, result.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow

SPECIES = ("versicolor", "setosa", "virginica")  # not in sorted order: the file's order must not matter


def write_species(path: Path, rows_per_class: int = 15) -> Path:
    rng = np.random.default_rng(1)
    rows = []
    for k, name in enumerate(SPECIES):
        for x1, x2 in rng.normal(loc=(4.0 * k, -3.0 * k), scale=0.4, size=(rows_per_class, 2)):
            rows.append(f"{x1:.4f},{x2:.4f},{name}")
    rng.shuffle(rows)
    path.write_text("x1,x2,species\n" + "\n".join(rows) + "\n")
    return path


def only_run(client: MlflowClient):
    (run,) = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    return run


def test_text_labels_train_and_are_recorded_everywhere(cli, tmp_path):
    data = write_species(tmp_path / "species.csv")
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store}/mlflow.db"
    proc = cli(
        "data=csv", f"data.path={data}", "data.target=species", "data.standardize=true",
        "loss=cross_entropy", "model.output_activation=softmax", "model.hidden=[8]",
        "optimizer=adam", "optimizer.lr=0.05", "data.batch_size=9", "trainer.epochs=30",
        f"logger.tracking_uri={uri}",
    )
    assert proc.returncode == 0, proc.stderr
    classes = sorted(SPECIES)  # LabelEncoder's order

    (result_file,) = (tmp_path / "outputs").glob("**/result.json")
    record = json.loads(result_file.read_text())
    assert record["status"] == "ok" and record["classes"] == classes
    # Separable clusters: the labels were encoded consistently with the features.
    assert record["final_train_accuracy"] == 1.0

    client = MlflowClient(uri)
    run = only_run(client)
    assert run.info.status == "FINISHED"
    assert run.data.tags["backproplab.task"] == "multiclass"
    assert json.loads(run.data.tags["backproplab.classes"]) == classes
    dl = tmp_path / "dl"
    params = client.download_artifacts(run.info.run_id, "params.npz", dst_path=str(dl))
    with np.load(params, allow_pickle=False) as saved:
        assert saved["classes"].dtype.kind == "U"
        assert saved["classes"].tolist() == classes
        assert saved["W2"].shape == (3, 8)
    names = client.download_artifacts(run.info.run_id, "classes.json", dst_path=str(dl))
    assert json.loads(Path(names).read_text()) == classes
    # The logged model answers per class, by name, from raw (unstandardised) features.
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model(client.download_artifacts(run.info.run_id, "model", dst_path=str(dl / "m")))
    centres = pd.DataFrame([[4.0 * k, -3.0 * k] for k in range(3)], columns=["x1", "x2"])  # versicolor, setosa, virginica
    probabilities = model.predict(centres)
    assert list(probabilities.columns) == classes
    assert probabilities.idxmax(axis=1).tolist() == list(SPECIES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_numeric_labels_record_no_class_names(cli, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store}/mlflow.db"
    proc = cli("data=marks", "trainer.epochs=1", f"logger.tracking_uri={uri}")
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(uri)
    run = only_run(client)
    assert "backproplab.classes" not in run.data.tags
    params = client.download_artifacts(run.info.run_id, "params.npz", dst_path=str(tmp_path / "dl"))
    with np.load(params, allow_pickle=False) as saved:
        assert sorted(saved.files) == ["W1", "W2", "b1", "b2"]
    (result_file,) = (tmp_path / "outputs").glob("**/result.json")
    assert json.loads(result_file.read_text())["classes"] is None


def test_a_target_mixing_numbers_and_empty_cells_is_one_line_before_anything_is_written(cli, tmp_path):
    data = tmp_path / "holes.csv"
    data.write_text("x1,y\n1,0\n2,1\n3,\n4,1\n")
    proc = cli("data=csv", f"data.path={data}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: holes.csv row 3 (line 4), column 'y' is empty; valid: a number or a class name in every row"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holes.csv"]  # no outputs/, no mlflow.db
