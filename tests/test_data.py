"""Data sets: what each loader returns, the seeded split, train-only standardisation, CSV errors,
and how the output layer is fitted to the targets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from backproplab.run.data import load_dataset
from backproplab.errors import ConfigError
from backproplab.components.loading import get_registry
from backproplab.run.targets import encode, output_width

COMMON = {"batch_size": 1, "shuffle": False, "val_fraction": 0.0, "standardize": False, "seed": 0}


def data(name: str, **options) -> dict:
    return {"name": name, **COMMON, **options}


@pytest.mark.parametrize(
    "name, options, n, n_features, task, n_classes",
    [
        ("seed_example", {}, 1, 3, "binary", 2),
        ("xor", {}, 4, 2, "binary", 2),
        ("moons", {"n_samples": 50, "noise": 0.1}, 50, 2, "binary", 2),
        ("circles", {"n_samples": 60, "noise": 0.05, "factor": 0.5}, 60, 2, "binary", 2),
        ("breast_cancer", {}, 569, 30, "binary", 2),
        ("digits", {}, 1797, 64, "multiclass", 10),
    ],
)
def test_builtin_sets(name, options, n, n_features, task, n_classes):
    ds = load_dataset(data(name, **options))
    assert (ds.n_train, ds.n_features, ds.task, ds.n_classes) == (n, n_features, task, n_classes)
    assert ds.n_val == 0 and ds.X_val is None
    assert set(np.unique(ds.y_train)) <= set(range(n_classes))
    assert np.isfinite(ds.X_train).all()


def test_seed_example_is_the_articles_row():
    ds = load_dataset(data("seed_example"))
    assert ds.X_train.tolist() == [[7.0, 8.0, 10.0]] and ds.y_train.tolist() == [1.0]


def test_xor_truth_table():
    ds = load_dataset(data("xor"))
    assert [int(a) ^ int(b) for a, b in ds.X_train] == ds.y_train.astype(int).tolist()


def test_marks_csv(shipped_data):
    ds = load_dataset(data("csv", path=str(shipped_data / "marks.csv"), target="y", features=None, task="auto"))
    assert (ds.n_train, ds.n_features, ds.task) == (395, 3, "binary")
    assert ds.feature_names == ["x1", "x2", "x3"]
    assert (int((ds.y_train == 1).sum()), int((ds.y_train == 0).sum())) == (265, 130)
    # Row 3 of the file is the worked example's training row.
    assert ds.X_train[2].tolist() == [7.0, 8.0, 10.0] and ds.y_train[2] == 1


def test_marks_is_a_data_set_by_name(shipped_data):
    ds = load_dataset(data("marks"))
    assert (ds.n_train, ds.n_features, ds.task, ds.n_classes) == (395, 3, "binary", 2)
    assert ds.X_train[2].tolist() == [7.0, 8.0, 10.0] and ds.y_train[2] == 1
    # The file it reads is the one inside the package, shipped with its licence.
    assert (shipped_data / "marks.LICENSE").read_text().startswith("MIT License")
    assert shipped_data.name == "datasets" and shipped_data.parent.name in ("core", "backproplab")


def test_marks_takes_no_path():
    with pytest.raises(ConfigError, match=r"^data.path is not an option of data=marks; valid: name, batch_size"):
        load_dataset(data("marks", path="elsewhere.csv"))


def test_datasets_path_names_the_files():
    from backproplab import datasets

    assert datasets.path("seed_example.json").is_file()
    with pytest.raises(ValueError, match=r"'iris.csv' is not a data file of backproplab.datasets; available: marks.csv"):
        datasets.path("iris.csv")


def test_csv_without_path_suggests_a_real_path_or_marks():
    with pytest.raises(ConfigError, match=r"^data.path=None is missing; valid: the path of a CSV file .*data=marks") as info:
        load_dataset(data("csv", path=None, target="y"))
    assert "shared" not in str(info.value)


def test_csv_feature_selection(shipped_data):
    ds = load_dataset(data("csv", path=str(shipped_data / "marks.csv"), target="y", features=["x3", "x1"]))
    assert ds.feature_names == ["x3", "x1"] and ds.X_train[2].tolist() == [10.0, 7.0]


def test_val_split_is_seeded_stratified_and_disjoint():
    a = load_dataset(data("breast_cancer", val_fraction=0.25, seed=4))
    b = load_dataset(data("breast_cancer", val_fraction=0.25, seed=4))
    c = load_dataset(data("breast_cancer", val_fraction=0.25, seed=5))
    assert np.array_equal(a.X_val, b.X_val) and np.array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.X_val, c.X_val)
    assert a.n_train + a.n_val == 569 and abs(a.n_val - 569 * 0.25) <= 2
    # Stratified: the class shares of the two splits agree to within one example.
    assert abs(a.y_val.mean() - a.y_train.mean()) < 2 / a.n_val
    rows_train = {tuple(r) for r in a.X_train}
    assert not any(tuple(r) in rows_train for r in a.X_val)


def test_standardize_uses_training_statistics_only():
    raw = load_dataset(data("breast_cancer", val_fraction=0.2, seed=1))
    std = load_dataset(data("breast_cancer", val_fraction=0.2, seed=1, standardize=True))
    mean, sd = raw.X_train.mean(axis=0), raw.X_train.std(axis=0)
    np.testing.assert_allclose(std.X_train, (raw.X_train - mean) / sd)
    np.testing.assert_allclose(std.X_val, (raw.X_val - mean) / sd)
    np.testing.assert_allclose(std.X_train.mean(axis=0), 0, atol=1e-12)
    assert np.abs(std.X_val.mean(axis=0)).max() > 1e-3  # the validation split was not used
    # the statistics travel with the data set, so a run can save them beside its weights
    np.testing.assert_allclose(std.input_mean, mean)
    np.testing.assert_allclose(std.input_scale, sd)
    assert raw.input_mean is None and raw.input_scale is None


def test_standardize_keeps_constant_columns_finite():
    ds = load_dataset(data("digits", standardize=True))  # digits has all-zero pixel columns
    assert np.isfinite(ds.X_train).all()


def test_multiclass_csv_labels_become_0_to_k_minus_1(tmp_path):
    path = tmp_path / "three.csv"
    path.write_text("a,b,label\n0,1,3\n1,0,5\n1,1,7\n0,0,5\n")
    ds = load_dataset(data("csv", path=str(path), target="label"))
    assert ds.task == "multiclass" and ds.n_classes == 3
    assert ds.y_train.tolist() == [0.0, 1.0, 2.0, 1.0]


def test_regression_csv(tmp_path):
    path = tmp_path / "reg.csv"
    path.write_text("x,t\n0,0.5\n1,1.5\n2,2.25\n")
    ds = load_dataset(data("csv", path=str(path), target="t"))
    assert ds.task == "regression" and ds.y_train.shape == (3, 1)


@pytest.mark.parametrize(
    "text, options, message",
    [
        (None, {}, r"data.path='.*missing.csv': file not found"),
        ("y,x1\n1,2\n", {"target": "label"}, r"data.target='label' is not a column of bad.csv; available: y, x1"),
        ("y,x1\n1,2\n", {"features": ["x9"]}, r"data.features: 'x9' is not a column of bad.csv; available: y, x1"),
        ("y,x1,x2\n1,2,3\n0,abc,4\n", {}, r"bad.csv row 2 \(line 3\), column 'x1': 'abc' is not a finite number"),
        ("y,x1\n1,2\n0,\n", {}, r"bad.csv row 2 \(line 3\), column 'x1': '' is not a finite number"),
        ("y,x1\n1,2\n0,3,4\n", {}, r"bad.csv row 2 \(line 3\) has 3 cells but the header has 2 columns"),
        ("y,x1\n", {}, r"has a header but no rows"),
        ("y,x1\n1,2\n", {"task": "nominal"}, r"data.task='nominal' is invalid; valid: auto, binary, multiclass, regression"),
    ],
)
def test_csv_errors_name_file_column_and_row(tmp_path, text, options, message):
    path = tmp_path / ("missing.csv" if text is None else "bad.csv")
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_dataset(data("csv", path=str(path), **{"target": "y", **options}))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"val_fraction": 1.5}, r"data.val_fraction=1.5 is invalid; valid: a number in \[0, 1\)"),
        ({"val_fraction": 0.5}, r"data.val_fraction=0.5 leaves"),  # one example cannot be split
        ({"standardize": "yes"}, r"data.standardize='yes' is invalid; valid: true, false"),
        ({"noise": 0.1}, r"data.noise is not an option of data=seed_example; valid: name, batch_size"),
    ],
)
def test_option_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset(data("seed_example", **options))


def test_unknown_data_set():
    with pytest.raises(ConfigError, match=r"data='mnist' is unknown; available: breast_cancer, circles, csv"):
        load_dataset(data("mnist"))


# -- output width and target encoding ---------------------------------------------------------


def _loss(name):
    return get_registry().create("loss", name)


def test_width_is_derived_from_the_data():
    binary, digits = load_dataset(data("xor")), load_dataset(data("digits"))
    assert output_width(binary, _loss("bce"), "bce", None) == 1
    assert output_width(binary, _loss("cross_entropy"), "cross_entropy", None) == 2
    assert output_width(digits, _loss("cross_entropy"), "cross_entropy", None) == 10
    assert encode(digits, digits.y_train[:3], 10).shape == (3, 10)
    assert encode(binary, binary.y_train, 1).tolist() == [[0.0], [1.0], [1.0], [0.0]]


def test_two_classes_with_one_label_present_still_get_two_softmax_outputs():
    # The worked example has the single label 1: as a width-1 "one-hot" row [1] it would pass
    # cross_entropy's check, and a softmax over one output is constantly 1 (loss 0, nothing learnt).
    seed = load_dataset(data("seed_example"))
    assert output_width(seed, _loss("cross_entropy"), "cross_entropy", None) == 2
    assert output_width(seed, _loss("bce"), "bce", None) == 1


def test_width_mismatch_names_the_key(tmp_path):
    path = tmp_path / "three.csv"
    path.write_text("a,label\n0,0\n1,1\n2,2\n")
    three = load_dataset(data("csv", path=str(path), target="label"))
    with pytest.raises(
        ConfigError, match=r"model.output_width=2 does not fit data=csv with 3 classes; valid: 3 \(or null"
    ):
        output_width(three, _loss("cross_entropy"), "cross_entropy", 2)


def test_loss_that_does_not_fit_the_targets(tmp_path):
    path = tmp_path / "reg.csv"
    path.write_text("x,t\n0,0.5\n1,1.5\n2,2.25\n")
    regression = load_dataset(data("csv", path=str(path), target="t"))
    with pytest.raises(ConfigError, match=r"loss=bce does not fit data=csv with 1 regression target\(s\): bce targets must lie in \[0, 1\]"):
        output_width(regression, _loss("bce"), "bce", None)


def test_a_directory_as_data_path_is_named_as_one(tmp_path):
    with pytest.raises(ConfigError, match=r"^data.path='.*' is a directory; valid: the path of a CSV file in it$"):
        load_dataset(data("csv", path=str(tmp_path), target="y"))


# -- class names as targets ---------------------------------------------------------------------


def species_csv(path, rows_per_class: int = 10, species=("setosa", "versicolor", "virginica")) -> str:
    """Separable text-labelled data: each species sits around its own point."""
    rng = np.random.default_rng(0)
    lines = ["x1,x2,species"]
    for k, name in enumerate(species):
        for x1, x2 in rng.normal(loc=(3.0 * k, -2.0 * k), scale=0.3, size=(rows_per_class, 2)):
            lines.append(f"{x1:.4f},{x2:.4f},{name}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_text_labels_become_classes_in_label_encoder_order(tmp_path):
    path = tmp_path / "species.csv"
    path.write_text("x,species\n1,versicolor\n2,setosa\n3,virginica\n4,setosa\n")
    ds = load_dataset(data("csv", path=str(path), target="species"))
    assert ds.task == "multiclass" and ds.n_classes == 3
    assert ds.classes == ["setosa", "versicolor", "virginica"]
    assert ds.y_train.tolist() == [1.0, 0.0, 2.0, 0.0]
    # Numeric labels keep no names: their values are their names.
    numeric = tmp_path / "numeric.csv"
    numeric.write_text("x,y\n1,0\n2,1\n")
    assert load_dataset(data("csv", path=str(numeric), target="y")).classes is None


def test_two_text_labels_are_binary_and_split_stratified(tmp_path):
    path = species_csv(tmp_path / "two.csv", rows_per_class=10, species=("no", "yes"))
    ds = load_dataset(data("csv", path=path, target="species", val_fraction=0.2, seed=1))
    assert ds.task == "binary" and ds.n_classes == 2 and ds.classes == ["no", "yes"]
    assert sorted(ds.y_val.tolist()) == [0.0, 0.0, 1.0, 1.0]


def test_text_labels_fit_the_output_layer(tmp_path):
    ds = load_dataset(data("csv", path=species_csv(tmp_path / "s.csv"), target="species"))
    assert output_width(ds, _loss("cross_entropy"), "cross_entropy", None) == 3


@pytest.mark.parametrize(
    "text, options, message",
    [
        ("x,y\n1,0\n2,\n3,1\n", {}, r"^bad.csv row 2 \(line 3\), column 'y' is empty; valid: a number or a class name in every row$"),
        ("x,y\n1,cat\n2,\n", {}, r"^bad.csv row 2 \(line 3\), column 'y' is empty"),
        ("x,y\n1,0\n2,1\n3,maybe\n", {},
         r"^column 'y' of bad.csv mixes numbers \(row 1: '0'\) and text \(row 3: 'maybe'\); valid: numbers only, or class names only$"),
        ("x,y\n1,cat\n2,dog\n", {"task": "regression"},
         r"^data.task=regression: column 'y' of bad.csv holds class names \('cat', 'dog'\); valid: data.task=auto, binary or multiclass"),
        ("x,y\n1,a\n2,b\n3,c\n", {"task": "binary"}, r"^data.task=binary: column 'y' of bad.csv has 3 classes \('a', 'b', 'c'\); valid: auto or multiclass$"),
        ("x,y\n1,cat\n2,cat\n", {}, r"^column 'y' of bad.csv holds the single class name 'cat'; valid: at least two"),
        ("x,y\n1,0\n2,nan\n", {}, r"^bad.csv row 2 \(line 3\), column 'y': 'nan' is not a finite number$"),
    ],
)
def test_target_column_errors(tmp_path, text, options, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_dataset(data("csv", path=str(path), target="y", **options))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["moons", "circles"])
@pytest.mark.parametrize("noise", [1e308, 1e7, -0.1, float("inf")])
def test_a_noise_whose_points_would_overflow_is_refused_by_key(name, noise):
    # Found by the CLI fuzz test: noise 1e308 made Gaussian draws of inf, refused by scikit-learn's
    # scaler as a raw ValueError.
    with pytest.raises(ConfigError) as info:
        load_dataset(data(name, noise=noise))
    assert info.value.key == "data.noise" and info.value.value == noise
    assert str(info.value).endswith("is invalid; valid: a number in [0, 1e6]")


# -- blank lines and repeated names --------------------------------------------------------------


def test_blank_lines_are_skipped_and_errors_give_the_real_line(tmp_path):
    path = tmp_path / "gappy.csv"
    path.write_text("\ny,x1\n\n1,2\n  \n0,abc\n")
    with pytest.raises(ConfigError, match=r"^gappy.csv row 2 \(line 6\), column 'x1': 'abc' is not a finite number$"):
        load_dataset(data("csv", path=str(path), target="y"))
    quoted = tmp_path / "quoted.csv"  # a quoted cell spanning two lines: the next row starts two lines on
    quoted.write_text('y,x1,note\n1,2,"two\nlines"\n0,,x\n')
    with pytest.raises(ConfigError, match=r"^quoted.csv row 2 \(line 4\), column 'x1': '' is not a finite number$"):
        load_dataset(data("csv", path=str(quoted), target="y", features=["x1"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.integers(0, 1), st.integers(-99, 99)), min_size=1, max_size=8),
       blanks=st.lists(st.tuples(st.integers(0, 20), st.sampled_from(["", " ", "\t", "  \t "])), max_size=6))
def test_blank_lines_anywhere_change_nothing(tmp_path, rows, blanks):
    lines = ["y,x1"] + [f"{y},{x}" for y, x in rows]
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(lines) + "\n")
    for position, blank in blanks:
        lines.insert(min(position, len(lines)), blank)
    gappy = tmp_path / "gappy.csv"
    gappy.write_text("\n".join(lines) + "\n")
    a = load_dataset(data("csv", path=str(plain), target="y", task="binary"))
    b = load_dataset(data("csv", path=str(gappy), target="y", task="binary"))
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.y_train, b.y_train)


@pytest.mark.parametrize(
    "header, options, message",
    [
        ("x1,x1,y", {}, r"the column name 'x1' is in the header twice \(columns 1 and 2\)"),
        ("y,x1,y", {}, r"the column name 'y' is in the header twice \(columns 1 and 3\)"),
        ("x1,,,y", {}, r"an empty column name is in the header twice \(columns 2 and 3\)"),
        ("x1,x2,y", {"features": ["x1", "x1"]}, r"^data.features: 'x1' is listed twice; valid: each column once$"),
    ],
)
def test_a_name_that_stands_for_two_columns_is_refused(tmp_path, header, options, message):
    path = tmp_path / "twice.csv"
    n = len(header.split(","))
    path.write_text(header + "\n" + ",".join(["1"] * n) + "\n" + ",".join(["0"] * n) + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_dataset(data("csv", path=str(path), target="y", **options))
    assert "\n" not in str(info.value)


def test_a_feature_called_target_keeps_its_column_in_the_mlflow_record():
    from backproplab.run.data import Dataset
    from backproplab.tracking.records.datasets import _frame

    X, y = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.0, 1.0])
    ds = Dataset("csv", "binary", X, y, feature_names=["target", "x"])
    frame, targets = _frame(ds, X, y)
    assert list(frame.columns) == ["target", "x", "_target"] and targets == ["_target"]
    assert frame["target"].tolist() == [1.0, 3.0] and frame["_target"].tolist() == [0.0, 1.0]
