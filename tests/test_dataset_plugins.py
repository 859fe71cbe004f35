"""Data sets as plugins: a third party's ``register_datasets`` factory becomes ``data=NAME`` with
``data.KEY=`` options and no YAML, through the real command (a sweep tracked in a real sqlite
store, with its MLflow dataset records) and through the Python API; an unknown name, a broken
plugin and a factory that returns garbage each get one line; and the conformance kit's
data-set checks.

The third party is a throwaway distribution: a module and a ``*.dist-info`` with entry_points.txt
in a folder on PYTHONPATH, which importlib.metadata discovers as it discovers an installed one.
"""

from __future__ import annotations

import json
import re
import textwrap
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

import backproplab
from backproplab.components.registry import Source
from backproplab.errors import ConfigError
from backproplab.run.data import load_dataset
from backproplab.testing import check_dataset, checks_for

from conftest import cli_env

BLOBS = """
    import numpy as np
    import backproplab

    @backproplab.data_defaults(val_fraction=0.25, standardize=True, batch_size=8)
    def blobs(n_per_class: int = 20, n_classes: int = 3, spread: float = 0.3, seed: int = 0):
        rng = np.random.default_rng(seed)
        centres = np.array([[3.0 * k, -2.0 * k] for k in range(n_classes)])
        X = np.vstack([c + rng.normal(scale=spread, size=(n_per_class, 2)) for c in centres])
        names = np.array(["red", "green", "blue", "black", "white"])[:n_classes]
        return backproplab.Examples(X, np.repeat(names, n_per_class), feature_names=["width", "height"])

    @backproplab.hookimpl
    def register_datasets(register):
        register("blobs", blobs, aliases=("gaussian_blobs",))
"""

BROKEN_HOOK = """
    import backproplab

    @backproplab.hookimpl
    def register_datasets(register):
        raise RuntimeError("the data server is down")
"""

GARBAGE = """
    import numpy as np
    import backproplab

    def ragged():
        return np.ones((4, 2)), np.ones(3)

    @backproplab.hookimpl
    def register_datasets(register):
        register("ragged", ragged)
"""


def write_dist(root: Path, dist: str, module: str, source: str, version: str = "1.0") -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[backproplab]\n{module} = {module}\n")


@pytest.fixture
def site(tmp_path):
    """A folder of throwaway plugin distributions and the environment that puts it on the path."""
    root = tmp_path / "site"
    root.mkdir()
    env = cli_env(PYTHONPATH=str(root))
    env.pop("BACKPROPLAB_PLUGINS", None)
    return root, env


def one_line_error(proc) -> str:
    """The one error line (a broken plugin's load warning may stand above it), no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("warning: plugin ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# -- through the real command ----------------------------------------------------------------


@pytest.mark.slow
def test_a_third_party_data_set_in_a_tracked_sweep(cli, site, tmp_path):
    root, env = site
    write_dist(root, "blobs-plugin", "blobs_plugin", BLOBS)
    report = json.loads(cli("plugins", "--json", env=env).stdout)
    (dist,) = [d for d in report["plugins"] if d["distribution"] == "blobs-plugin"]
    assert dist["components"]["dataset"] == ["blobs", "gaussian_blobs"]
    builtin = [d for d in report["plugins"] if d["builtin"]][0]
    assert set(builtin["components"]["dataset"]) == {
        "breast_cancer", "circles", "csv", "digits", "marks", "moons", "seed_example", "xor"}
    assert "dataset" in cli("plugins", env=env).stdout

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = cli("-m", "data=blobs", "data.n_classes=2,3", "data.spread=0.2", "loss=cross_entropy",
               "model.output_activation=softmax", "model.hidden=[4]", "trainer.epochs=2",
               f"logger.tracking_uri={uri}", "hydra.sweep.dir=sweep", env=env)
    assert proc.returncode == 0, proc.stderr

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    for run in children:
        n_classes = int(run.data.params["data.n_classes"])
        assert run.data.params["data.batch_size"] == "8"  # the plugin's @data_defaults
        assert run.data.params["data.spread"] == "0.2"
        assert json.loads(run.data.tags["backproplab.classes"]) == sorted(["red", "green", "blue"][:n_classes])
        datasets = {}
        for dataset_input in run.inputs.dataset_inputs:
            (context,) = [t.value for t in dataset_input.tags if t.key == "mlflow.data.context"]
            datasets[context] = dataset_input.dataset
        train, val = datasets["training"], datasets["validation"]
        assert train.name == val.name == "blobs"
        assert json.loads(train.profile)["num_rows"] == 15 * n_classes and json.loads(val.profile)["num_rows"] == 5 * n_classes
        assert [c["name"] for c in json.loads(train.schema)["mlflow_colspec"]] == ["width", "height", "target"]
        origin = json.loads(train.source)["tags"]
        assert origin["made_by"] == "blobs_plugin.blobs (blobs-plugin)"
        assert origin["data.n_classes"] == str(n_classes) and origin["data.val_fraction"] == "0.25"


@pytest.mark.slow
def test_unknown_data_set_names_the_installed_ones_and_the_csv_way(cli, site, tmp_path):
    root, env = site
    write_dist(root, "blobs-plugin", "blobs_plugin", BLOBS)
    proc = cli("data=iris", env=env)
    assert proc.returncode == 2
    line = one_line_error(proc)
    # spirals: the example package, when it is installed beside
    assert re.fullmatch(
        r"error: data='iris' is unknown; available: blobs, breast_cancer, circles, csv, digits, gaussian_blobs, marks, "
        r"moons, seed_example, (spirals, )?xor; for a CSV file of your own: data=csv data.path=iris.csv", line
    ), line
    typo = one_line_error(cli("data=moon", env=env))
    assert typo.startswith("error: data='moon' is unknown; available: ")
    assert typo.endswith("; did you mean 'moons'?; for a CSV file of your own: data=csv data.path=moon.csv")
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_broken_data_set_plugins_are_isolated(cli, site, tmp_path):
    root, env = site
    write_dist(root, "broken-plugin", "broken_plugin", BROKEN_HOOK)
    write_dist(root, "ragged-plugin", "ragged_plugin", GARBAGE)
    listing = cli("plugins", env=env)
    assert "broken-plugin 1.0 (entry point 'broken_plugin' = broken_plugin): register_datasets raised " \
           "RuntimeError: the data server is down" in listing.stdout
    bad = cli("data=ragged", "trainer.epochs=1", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", env=env)
    assert bad.returncode == 2
    assert one_line_error(bad) == "error: data=ragged (from ragged-plugin 1.0): y has shape (3,) for 4 rows of X; valid: (4,) or (4, k)"
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlflow.db").exists()
    ok = cli("data=xor", "trainer.epochs=1", "logger=none", env=env)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.slow
def test_csv_edges_through_the_command(cli, tmp_path):
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("x1,x1,y\n1,5,0\n2,6,1\n")
    proc = cli("data=csv", f"data.path={repeated}", "logger=none")
    assert proc.returncode == 2
    # The value is shortened in the middle when long (a deep tmp_path under xdist), so the line
    # is matched around it.
    line = one_line_error(proc)
    assert line.startswith("error: data.path='") and "repeated.csv'" in line, line
    assert line.endswith(
        "': the column name 'x1' is in the header twice (columns 1 and 2); "
        "valid: a header whose column names are all different (rename one of them)"
    ), line
    assert not (tmp_path / "outputs").exists()

    blank_tail = tmp_path / "blank_tail.csv"
    blank_tail.write_text("x1,x2,y\n1,5,0\n2,6,1\n\n3,4,1\n   \n\n \t\n")
    proc = cli("data=csv", f"data.path={blank_tail}", "data.batch_size=1", "trainer.epochs=1", "logger=none")
    assert proc.returncode == 0, proc.stderr
    (result,) = (tmp_path / "outputs").glob("*/*/result.json")
    assert json.loads(result.read_text())["iterations"] == 3  # three rows in batches of 1: blank lines are not rows


# -- through the Python API --------------------------------------------------------------------


def _plugin(source_text: str, dist: str) -> tuple[types.ModuleType, Source]:
    module = types.ModuleType(dist.replace("-", "_"))
    exec(textwrap.dedent(source_text), module.__dict__)
    return module, Source(module.__name__, dist, "1.0")


@pytest.fixture
def blobs_registry():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return backproplab.load_plugins(extra=[_plugin(BLOBS, "blobs-plugin")]).registry


def test_python_api_loads_and_trains_a_plugin_data_set(blobs_registry):
    from backproplab.run.job import prepare

    ds = load_dataset({"name": "gaussian_blobs", "n_classes": 2, "val_fraction": 0.25, "seed": 1, "standardize": True},
                      blobs_registry)
    assert (ds.task, ds.n_classes, ds.classes, ds.feature_names) == ("binary", 2, ["green", "red"], ["width", "height"])
    assert (ds.n_train, ds.n_val) == (30, 10)
    assert sorted(ds.y_val.tolist()) == [0.0] * 5 + [1.0] * 5  # stratified by the encoded names
    np.testing.assert_allclose(ds.X_train.mean(axis=0), 0, atol=1e-12)

    cfg = {
        "model": {"hidden": [4], "activation": "tanh", "output_activation": "softmax", "output_width": None, "dtype": "float64"},
        "data": {"name": "blobs", "n_per_class": 10, "batch_size": 8, "shuffle": True, "val_fraction": 0.2,
                 "standardize": True, "seed": 0},
        "loss": {"name": "cross_entropy"}, "optimizer": {"name": "adam", "lr": 0.05},
        "initializer": {"name": "xavier_normal"}, "trainer": {"epochs": 30, "seed": 0}, "logger": {"name": "none"},
    }
    prepared = prepare(cfg, blobs_registry)
    assert prepared.network.sizes == [2, 4, 3]
    with pytest.raises(ConfigError, match=r"^data.n_classes='many' is invalid for data=blobs; valid: an integer \(default 3\)$"):
        load_dataset({"name": "blobs", "n_classes": "many"}, blobs_registry)
    with pytest.raises(ConfigError, match=r"^data.colour is not an option of data=blobs; valid: name, batch_size, shuffle, "
                                          r"val_fraction, standardize, seed, n_per_class, n_classes, spread$"):
        load_dataset({"name": "blobs", "colour": 1}, blobs_registry)


@pytest.mark.parametrize(
    "result, message",
    [
        ("(np.ones((3, 2)), np.array([0, 1]))", r"y has shape \(2,\) for 3 rows of X"),
        ("np.ones((3, 2))", r"ndarray; valid: \(X, y\), backproplab.Examples"),
        ("(np.array([[1.0], [np.nan]]), np.array([0, 1]))", r"X\[1, 0\] is nan; valid: finite numbers only"),
        ("backproplab.Examples(np.ones((2, 2)), [0, 1], feature_names=['a', 'a'])", r"the feature name 'a' is given twice"),
        ("backproplab.Examples(np.ones((2, 2)), [0, 1], feature_names=['a'])", r"1 feature_names for 2 columns of X"),
        ("backproplab.Examples(np.ones((2, 1)), [0, 1], class_names=['no', 'yes', 'maybe'])", r"3 class_names for 2 classes"),
        ("(np.ones((2, 1)), ['cat', ''])", r"y\[1\] is empty"),
    ],
)
def test_a_factory_result_that_breaks_the_contract_is_one_line(result, message):
    source = f"""
        import numpy as np
        import backproplab

        def odd():
            return {result}

        @backproplab.hookimpl
        def register_datasets(register):
            register("odd", odd)
    """
    registry = backproplab.load_plugins(extra=[_plugin(source, "odd-plugin")]).registry
    with pytest.raises(ConfigError, match=r"^data=odd \(from odd-plugin 1.0\)(:| returned) " + message) as info:
        load_dataset({"name": "odd"}, registry)
    assert "\n" not in str(info.value)


def test_scikit_learn_bunch_is_accepted():
    source = """
        import backproplab
        from sklearn.datasets import load_iris

        def iris():
            return load_iris()

        @backproplab.hookimpl
        def register_datasets(register):
            register("iris", iris)
    """
    registry = backproplab.load_plugins(extra=[_plugin(source, "iris-plugin")]).registry
    ds = load_dataset({"name": "iris"}, registry)
    assert (ds.task, ds.n_classes, ds.n_train) == ("multiclass", 3, 150)
    assert ds.classes == ["setosa", "versicolor", "virginica"] and ds.feature_names[0] == "sepal length (cm)"


# -- the conformance kit ---------------------------------------------------------------------


def test_kit_checks_of_a_data_set():
    # The built-ins run through every check in test_kit_builtins.py.
    from backproplab.plugins import datasets

    assert [c.name for c in checks_for(datasets.moons)] == [
        "check_dataset_builds_from_keywords", "check_dataset_examples", "check_dataset_repeatable", "check_dataset_defaults"]
    with pytest.raises(AssertionError, match=r"dataset csv: option 'path' has no default; give it a default, or pass params="):
        check_dataset(datasets.csv)


def unseeded(n: int = 5):
    return np.random.rand(n, 2), np.arange(n) % 2


def wants_an_object(rows=[1, 2], scale=object()):  # noqa: B006 - the kit must catch it
    return np.ones((2, 1)), [0, 1]


@backproplab.data_defaults(val_fraction=1.5)
def splits_everything():
    return np.ones((4, 1)), [0, 1, 0, 1]


@pytest.mark.parametrize(
    "factory, message",
    [
        (unseeded, r"dataset unseeded: draws from numpy's global random state"),
        (wants_an_object, r"dataset wants_an_object: the default of option 'scale' is <object"),
        (splits_everything, r"dataset splits_everything: its default data.val_fraction=1.5 is invalid; valid: a number in \[0, 1\)"),
    ],
)
def test_kit_catches_a_bad_data_set(factory, message):
    with pytest.raises(AssertionError, match=message):
        check_dataset(factory)


def test_data_defaults_refuses_an_unknown_option():
    with pytest.raises(TypeError, match=r"'epochs' is not an option of every data set; valid: batch_size, shuffle"):
        backproplab.data_defaults(epochs=3)
