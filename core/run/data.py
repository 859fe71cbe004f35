"""Data sets selected with ``data=NAME``: loaded, checked, split and standardised before training.

Every loader returns features and targets with a task (binary, multiclass or regression); the
common options then apply the same way to every set:

- ``data.val_fraction``: a held-out split drawn with ``data.seed`` (stratified for classes);
- ``data.standardize``: zero mean and unit variance from the *training* split's statistics only,
  so nothing about the validation split leaks into training;
- ``data.shuffle`` and ``data.batch_size`` are read by the trainer, not here.

Nothing is downloaded: the generators and the two bundled sets ship with scikit-learn, the
worked example's single row is built in, and marks.csv ships in ``backproplab.datasets``.

A CSV's target column may hold class names (``setosa``, ``versicolor``): they are encoded with
scikit-learn's ``LabelEncoder`` (sorted order) and the names travel with the data set as
``Dataset.classes``, so a run can save which output means which class.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from backproplab.errors import ConfigError
from backproplab.validation import check_fraction, is_finite_number

from .resources import DATA_COPIES, FLOAT_BYTES, format_bytes, machine_memory

TASKS = ("binary", "multiclass", "regression")
# Keys every data config has; a loader lists its own extra ones.
COMMON_KEYS = ("name", "batch_size", "shuffle", "val_fraction", "standardize", "seed")
# Integer targets with at most this many distinct values count as classes in data.task=auto.
MAX_AUTO_CLASSES = 20

SEED_EXAMPLE_X = [[7.0, 8.0, 10.0]]
SEED_EXAMPLE_Y = [1.0]


@dataclass(frozen=True)
class Dataset:
    """Arrays ready for the trainer. Classification targets are integer labels 0..k-1, shape (m,);
    regression targets have shape (m, n_targets)."""

    name: str
    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    n_classes: int | None = None
    feature_names: list[str] = field(default_factory=list)
    # With data.standardize: the training split's per-feature mean and scale, which new inputs
    # need before they meet the trained weights. Saved with the run as standardize.npz.
    input_mean: np.ndarray | None = None
    input_scale: np.ndarray | None = None
    # Class names in label order (label k is classes[k]) when the targets were text; None for
    # numeric labels, whose names are their own values.
    classes: list[str] | None = None

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_train(self) -> int:
        return self.X_train.shape[0]

    @property
    def n_val(self) -> int:
        return 0 if self.X_val is None else self.X_val.shape[0]

    @property
    def n_targets(self) -> int:
        return 1 if self.y_train.ndim == 1 else self.y_train.shape[1]


@dataclass(frozen=True)
class Raw:
    X: np.ndarray
    y: np.ndarray
    task: str
    feature_names: list[str]
    classes: list[str] | None = None


Loader = Callable[[Mapping[str, Any]], Raw]


def _names(n: int) -> list[str]:
    return [f"x{k}" for k in range(1, n + 1)]


def _seed_example(cfg: Mapping[str, Any]) -> Raw:
    return Raw(np.array(SEED_EXAMPLE_X), np.array(SEED_EXAMPLE_Y), "binary", ["x1", "x2", "x3"])


def _xor(cfg: Mapping[str, Any]) -> Raw:
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return Raw(X, np.array([0.0, 1.0, 1.0, 0.0]), "binary", ["x1", "x2"])


def _n_samples(cfg: Mapping[str, Any], n_features: int = 2) -> int:
    n = cfg.get("n_samples", 200)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(f"data.n_samples={n!r} is invalid; valid: an integer >= 2")
    # Before the generator allocates: numpy would fail with "Unable to allocate 373 GiB".
    memory = machine_memory()
    if memory is not None:
        needed = n * n_features * FLOAT_BYTES * DATA_COPIES
        if needed > memory:
            largest = memory // (n_features * FLOAT_BYTES * DATA_COPIES)
            raise ConfigError(
                key="data.n_samples",
                value=n,
                problem=(
                    f"needs about {format_bytes(needed)} ({n} samples x {n_features} features x {FLOAT_BYTES} bytes, "
                    f"x{DATA_COPIES} for the generated, split and scaled copies), but this machine has {format_bytes(memory)} of memory"
                ),
                valid=f"an integer in [2, {largest}]",
            )
    return n


# The generators' points span about 1 unit; a noise a million times that is already pure noise,
# and near the float limit its Gaussian draws overflow to inf (found by tests/test_cli_fuzz.py).
MAX_NOISE = 1e6


def _noise(cfg: Mapping[str, Any], default: float) -> float:
    noise = cfg.get("noise", default)
    if not is_finite_number(noise) or not 0 <= noise <= MAX_NOISE:
        raise ConfigError(key="data.noise", value=noise, valid="a number in [0, 1e6]")
    return float(noise)


def _moons(cfg: Mapping[str, Any]) -> Raw:
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=_n_samples(cfg), noise=_noise(cfg, 0.1), random_state=cfg.get("seed", 0))
    return Raw(X, y.astype(float), "binary", ["x1", "x2"])


def _circles(cfg: Mapping[str, Any]) -> Raw:
    from sklearn.datasets import make_circles

    factor = cfg.get("factor", 0.5)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
        raise ConfigError(f"data.factor={factor!r} is invalid; valid: a number in (0, 1)")
    X, y = make_circles(
        n_samples=_n_samples(cfg), noise=_noise(cfg, 0.05), factor=float(factor), random_state=cfg.get("seed", 0)
    )
    return Raw(X, y.astype(float), "binary", ["x1", "x2"])


def _breast_cancer(cfg: Mapping[str, Any]) -> Raw:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return Raw(bunch.data, bunch.target.astype(float), "binary", [str(n) for n in bunch.feature_names])


def _digits(cfg: Mapping[str, Any]) -> Raw:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return Raw(bunch.data, bunch.target.astype(float), "multiclass", _names(bunch.data.shape[1]))


def _csv(cfg: Mapping[str, Any]) -> Raw:
    path = cfg.get("path")
    if not isinstance(path, str) or not path:
        raise ConfigError(
            f"data.path={path!r} is missing; valid: the path of a CSV file with a header row, "
            "e.g. data.path=data/train.csv (or data=marks for the shipped marks.csv)"
        )
    return read_csv(Path(path), cfg.get("target", "y"), cfg.get("features"), cfg.get("task", "auto"))


def _marks(cfg: Mapping[str, Any]) -> Raw:
    from backproplab.datasets import path

    return read_csv(path("marks.csv"), "y", None, "binary")


LOADERS: dict[str, tuple[Loader, tuple[str, ...]]] = {
    "seed_example": (_seed_example, ()),
    "csv": (_csv, ("path", "target", "features", "task")),
    "marks": (_marks, ()),
    "xor": (_xor, ()),
    "moons": (_moons, ("n_samples", "noise")),
    "circles": (_circles, ("n_samples", "noise", "factor")),
    "breast_cancer": (_breast_cancer, ()),
    "digits": (_digits, ()),
}


def _other_delimiter(header: list[str]) -> str | None:
    """';', tab or '|' when a header row read as comma-separated is one cell that such a
    delimiter would split (a spreadsheet's "CSV" in many locales uses ';')."""
    if len(header) != 1:
        return None
    for delimiter in (";", "\t", "|"):
        if len([cell for cell in header[0].split(delimiter) if cell.strip()]) >= 2:
            return delimiter
    return None


def _csv_rows(path: Path) -> list[list[str]]:
    """The file's rows as text; a file that is not UTF-8 text is one line naming the file and
    where it stops being text, instead of a UnicodeDecodeError from the csv module."""
    shown = str(path) if len(str(path)) <= 80 else f"...{str(path)[-60:]}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"data.path={shown!r} cannot be read: {exc.strerror or exc}") from None
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise ConfigError(
            f"data.path={shown!r} is not a text CSV file: it holds a NUL byte at byte offset {nul} (line {line}), "
            "as binary files (a spreadsheet, an archive, a NumPy file) do; valid: a comma-separated UTF-8 text file"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"data.path={shown!r} is not UTF-8 text: byte {data[exc.start:exc.start + 1]!r} at byte offset {exc.start} "
            f"(line {line}) cannot be decoded; valid: a UTF-8 encoded CSV file (re-save it as UTF-8, e.g. "
            "iconv -f latin1 -t utf-8)"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))  # as open(newline="") would split it
    try:
        return list(reader)
    except csv.Error as exc:  # e.g. a field beyond the csv module's size limit
        raise ConfigError(f"data.path={shown!r} line {reader.line_num} cannot be read as CSV: {exc}") from None


def read_csv(path: Path, target: Any, features: Any, task: Any = "auto") -> Raw:
    """A header-row CSV of numbers; errors name the file, the column and the row."""
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL in it
        raise ConfigError(key="data.path", value=str(path), problem=f"is not a usable path ({getattr(exc, 'strerror', None) or exc})",
                          valid="the path of a CSV file") from None
    if is_dir:
        raise ConfigError(f"data.path={str(path)!r} is a directory; valid: the path of a CSV file in it")
    if not is_file:
        raise ConfigError(f"data.path={str(path)!r}: file not found (relative paths start in {Path.cwd()})")
    rows = _csv_rows(path)
    if not rows:
        raise ConfigError(f"data.path={str(path)!r}: the file is empty; it needs a header row")
    header = [h.strip() for h in rows[0]]
    other = _other_delimiter(rows[0])
    if other is not None:
        raise ConfigError(
            f"data.path={str(path)!r}: the file looks {other!r}-separated (header {rows[0][0]!r}); "
            "backproplab reads comma-separated files: save it with ',' between the columns"
        )
    if not isinstance(target, str) or target not in header:
        raise ConfigError(f"data.target={target!r} is not a column of {path.name}; available: {', '.join(header)}")
    if features is None:
        feature_cols = [h for h in header if h != target]
    else:
        if not isinstance(features, (list, tuple)) or not all(isinstance(f, str) for f in features):
            raise ConfigError(f"data.features={features!r} must be a list of column names, e.g. data.features=[x1,x2]")
        feature_cols = list(features)
        for f in feature_cols:
            if f not in header:
                raise ConfigError(f"data.features: {f!r} is not a column of {path.name}; available: {', '.join(header)}")
        if target in feature_cols:
            raise ConfigError(f"data.features: the target column {target!r} cannot also be a feature")
    if not feature_cols:
        raise ConfigError(f"data.features: {path.name} has no column besides the target {target!r}")
    columns = [header.index(c) for c in feature_cols]
    target_index = header.index(target)
    X = np.empty((len(rows) - 1, len(columns)))
    labels: list[str] = []
    for r, row in enumerate(rows[1:], start=1):
        if len(row) != len(header):
            raise ConfigError(
                f"{path.name} row {r} (line {r + 1}) has {len(row)} cells but the header has {len(header)} columns"
            )
        labels.append(row[target_index].strip())
        for c, (idx, name) in enumerate(zip(columns, feature_cols)):
            cell = row[idx].strip()
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ConfigError(
                    f"{path.name} row {r} (line {r + 1}), column {name!r}: {cell!r} is not a finite number"
                )
            X[r - 1, c] = value
    if X.shape[0] == 0:
        raise ConfigError(f"data.path={str(path)!r}: the file has a header but no rows")
    if task not in ("auto",) + TASKS:
        raise ConfigError(f"data.task={task!r} is invalid; valid: auto, {', '.join(TASKS)}")
    numbers = _numeric_target(labels, path.name, target)
    if numbers is None:
        y, task, classes = _text_target(labels, task, path.name, target)
        return Raw(X, y, task, feature_cols, classes)
    y, task = _target_task(numbers, task, path.name, target)
    return Raw(X, y, task, feature_cols)


def _numeric_target(cells: list[str], file: str, column: str) -> np.ndarray | None:
    """The target column as numbers, or None when every cell is text (class names).

    A column that mixes the two is refused rather than guessed at: a stray word among numbers is
    more often a typo than a class, and an empty cell is never a label."""
    values = np.empty(len(cells))
    first_number = first_text = None
    for r, cell in enumerate(cells, start=1):
        where = f"{file} row {r} (line {r + 1}), column {column!r}"
        if not cell:
            raise ConfigError(f"{where} is empty; valid: a number or a class name in every row")
        try:
            value = float(cell)
        except ValueError:
            first_text = first_text or (r, cell)
            continue
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {cell!r} is not a finite number")
        first_number = first_number or (r, cell)
        values[r - 1] = value
    if first_text is None:
        return values
    if first_number is not None:
        raise ConfigError(
            f"column {column!r} of {file} mixes numbers (row {first_number[0]}: {first_number[1]!r}) and "
            f"text (row {first_text[0]}: {first_text[1]!r}); valid: numbers only, or class names only"
        )
    return None


def _text_target(cells: list[str], task: Any, file: str, column: str) -> tuple[np.ndarray, str, list[str]]:
    from sklearn.preprocessing import LabelEncoder

    encoder = LabelEncoder().fit(cells)
    classes = [str(c) for c in encoder.classes_]
    shown = ", ".join(repr(c) for c in classes[:5]) + (", ..." if len(classes) > 5 else "")
    if task == "regression":
        raise ConfigError(
            f"data.task=regression: column {column!r} of {file} holds class names ({shown}); "
            "valid: data.task=auto, binary or multiclass, or a numeric target column"
        )
    if len(classes) < 2:
        raise ConfigError(
            f"column {column!r} of {file} holds the single class name {classes[0]!r}; "
            "valid: at least two classes to learn to tell apart"
        )
    if task == "binary" and len(classes) > 2:
        raise ConfigError(
            f"data.task=binary: column {column!r} of {file} has {len(classes)} classes ({shown}); valid: auto or multiclass"
        )
    if task == "auto":
        task = "binary" if len(classes) == 2 else "multiclass"
    return encoder.transform(cells).astype(float), task, classes


def _target_task(y: np.ndarray, task: Any, file: str, column: str) -> tuple[np.ndarray, str]:
    values = np.unique(y)
    integral = bool(np.all(values == np.round(values)))
    if task == "auto":
        if set(values.tolist()) <= {0.0, 1.0}:
            task = "binary"
        elif integral and len(values) <= MAX_AUTO_CLASSES:
            task = "multiclass"
        else:
            task = "regression"
    if task == "regression":
        return y.reshape(-1, 1), task
    if not integral:
        bad = values[values != np.round(values)][0].item()  # a Python float: no np.float64(...) repr
        raise ConfigError(
            f"data.task={task}: column {column!r} of {file} holds {bad!r}, which is not a class label; "
            "valid: integer labels, or data.task=regression"
        )
    if task == "binary" and len(values) > 2:
        raise ConfigError(
            f"data.task=binary: column {column!r} of {file} has {len(values)} classes; valid: multiclass or regression"
        )
    # Labels become 0..k-1 in sorted order, so e.g. {1, 2, 3} or {-1, 1} work as classes.
    return np.searchsorted(values, y).astype(float), task


def _split(raw: Raw, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    n = raw.X.shape[0]
    if fraction == 0:
        return raw.X, raw.y, None, None
    n_val = int(round(n * fraction))
    if n_val < 1 or n - n_val < 1:
        raise ConfigError(
            f"data.val_fraction={fraction} leaves {n - n_val} training and {n_val} validation examples of {n}; "
            "valid: a fraction that keeps at least one of each, or 0"
        )
    rng = np.random.default_rng(seed)
    if raw.task == "regression":
        order = rng.permutation(n)
        val, train = order[:n_val], order[n_val:]
    else:
        # Stratified: each class contributes its share, so a small split keeps every class.
        val_parts = []
        for label in np.unique(raw.y):
            idx = rng.permutation(np.flatnonzero(raw.y == label))
            val_parts.append(idx[: int(round(len(idx) * fraction))])
        val = np.sort(np.concatenate(val_parts))
        mask = np.ones(n, dtype=bool)
        mask[val] = False
        train = rng.permutation(np.flatnonzero(mask))
        val = rng.permutation(val)
        if len(train) == 0 or len(val) == 0:
            raise ConfigError(f"data.val_fraction={fraction} leaves an empty split of {n} examples; valid: a smaller fraction or 0")
    return raw.X[train], raw.y[train], raw.X[val], raw.y[val]


def _standardize(X_train: np.ndarray, X_val: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, Any]:
    # scikit-learn's scaler: a constant column gets scale 1 (it stays constant) instead of 0/0.
    # Imported here: scikit-learn costs a noticeable part of a second at start-up.
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), (None if X_val is None else scaler.transform(X_val)), scaler


def _check_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"data.{key}={value!r} is invalid; valid: true, false")
    return value


# Where each data set comes from, for the run's record (MLflow dataset source): the function
# that makes or reads it. The CSV sets are their file instead (``source_of``).
ORIGINS = {
    "seed_example": "backproplab: the worked example's single row",
    "xor": "backproplab: the four XOR points",
    "moons": "sklearn.datasets.make_moons",
    "circles": "sklearn.datasets.make_circles",
    "breast_cancer": "sklearn.datasets.load_breast_cancer",
    "digits": "sklearn.datasets.load_digits",
}
# The data keys that decide the arrays (the others, batch_size and shuffle, only their order).
_SHAPING_KEYS = ("n_samples", "noise", "factor", "target", "features", "task", "val_fraction", "standardize", "seed")


def source_of(cfg: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(the CSV file's absolute path, or None for a generated or bundled set; what made the
    arrays: the generator or loader and every data key that decides them)."""
    name = cfg.get("name")
    path = None
    if name == "csv":
        path = str(Path(cfg["path"]).resolve())
    elif name == "marks":
        from backproplab.datasets import path as bundled

        path = str(bundled("marks.csv"))
    origin = {"data": name, "made_by": ORIGINS.get(name, f"backproplab data={name}")}
    if path is not None:
        origin["made_by"] = f"read_csv({path})"
    origin.update({f"data.{k}": cfg[k] for k in _SHAPING_KEYS if k in cfg})
    return path, origin


def load_dataset(cfg: Mapping[str, Any]) -> Dataset:
    """Build the configured data set; every problem is a one-line ConfigError naming the key."""
    name = cfg.get("name")
    if not isinstance(name, str) or name not in LOADERS:  # a list is unhashable: no ``in`` test first
        raise ConfigError(f"data={name!r} is unknown; available: {', '.join(sorted(LOADERS))}")
    loader, extra_keys = LOADERS[name]
    unknown = sorted(set(cfg) - set(COMMON_KEYS) - set(extra_keys))
    if unknown:
        valid = ", ".join(COMMON_KEYS + extra_keys)
        raise ConfigError(f"data.{unknown[0]} is not an option of data={name}; valid: {valid}")
    seed = cfg.get("seed", 0)
    # scikit-learn's random_state takes 32 bits, as numpy's legacy seeds do.
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**32 - 1:
        raise ConfigError(key="data.seed", value=seed, valid=f"an integer in [0, {2**32 - 1}] (2**32 - 1)")
    try:
        fraction = check_fraction("data.val_fraction", cfg.get("val_fraction", 0.0))
    except ConfigError:
        raise ConfigError(
            f"data.val_fraction={cfg.get('val_fraction')!r} is invalid; valid: a number in [0, 1)"
        ) from None
    standardize = _check_bool("standardize", cfg.get("standardize", False))
    raw = loader(cfg)
    try:
        X_train, y_train, X_val, y_val = _split(raw, fraction, seed)
    except ConfigError as exc:
        if "n_samples" not in extra_keys:
            raise
        # The generated set's size is the other key that decides it.
        raise ConfigError(f"{exc} (data.n_samples={raw.X.shape[0]} makes the whole set)") from None
    mean = scale = None
    if standardize:
        X_train, X_val, scaler = _standardize(X_train, X_val)
        mean, scale = scaler.mean_, scaler.scale_
    n_classes = None
    if raw.task != "regression":
        n_classes = max(2, int(raw.y.max()) + 1)
    return Dataset(
        name, raw.task, X_train, y_train, X_val, y_val, n_classes, raw.feature_names, mean, scale, raw.classes
    )
