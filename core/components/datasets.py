"""The data-set kind: what a ``register_datasets`` factory returns, the options every data set
has, and how targets become labels.

A data-set factory is a callable whose keyword parameters are the data set's own options
(``data=blobs data.n_classes=4``); it returns the examples in one of three forms:

- a tuple ``(X, y)``: features of shape (m, n) and targets of shape (m,) or (m, k);
- ``Examples(X, y, feature_names=..., class_names=..., task=..., source=...)``, which adds
  names and says what the targets are;
- any object with ``data`` and ``target`` attributes, such as scikit-learn's ``Bunch``
  (``load_iris()``), whose ``feature_names`` and ``target_names`` are read too.

Targets may be numbers or class names (strings). Everything after that belongs to the framework
and is the same for every data set: the options in ``FRAMEWORK_OPTIONS`` (split, scaling,
batching, shuffling, seed), class-name encoding, the checks below, and the run's MLflow dataset
records. A factory may change the defaults of those options with ``@data_defaults(...)``; one
that declares a parameter named like an option (``seed``, for a generator) receives its value.
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from backproplab.errors import ConfigError

TASKS = ("binary", "multiclass", "regression")
# The options every data set has, and their defaults for a data set that declares none.
FRAMEWORK_OPTIONS: dict[str, Any] = {
    "batch_size": 32,
    "shuffle": True,
    "val_fraction": 0.0,
    "standardize": False,
    "seed": 0,
}
# Integer targets with at most this many distinct values count as classes when no task is given.
MAX_AUTO_CLASSES = 20
DEFAULTS_ATTR = "__backproplab_data_defaults__"


@dataclass(frozen=True)
class Examples:
    """A data set as a factory returns it.

    ``X``: features, shape (m, n), numbers. ``y``: targets, shape (m,) or (m, k) for several
    regression targets; numbers or class names. ``feature_names``: n names (default x1..xn).
    ``class_names``: names of the classes in label order, for numeric class labels (label k,
    counted in sorted order of the distinct labels, is ``class_names[k]``). ``task``: binary,
    multiclass or regression; None infers it as ``data=csv data.task=auto`` does (0/1: binary,
    at most 20 integer values: classes, class names: classes, else regression). ``source``: where
    the arrays come from for the run's record: a file's path (``pathlib.Path``) or a text such
    as ``"sklearn.datasets.make_moons"``; None names the factory.
    """

    X: Any
    y: Any
    feature_names: Sequence[str] | None = None
    class_names: Sequence[str] | None = None
    task: str | None = None
    source: str | os.PathLike | None = None


def data_defaults(**defaults: Any) -> Callable[[Any], Any]:
    """Set a data set's defaults for the framework's options that its factory does not take
    itself, e.g. a small set that trains on whole batches: ``@data_defaults(batch_size=4,
    shuffle=False)`` above its factory."""
    unknown = sorted(set(defaults) - set(FRAMEWORK_OPTIONS))
    if unknown:
        raise TypeError(f"{unknown[0]!r} is not an option of every data set; valid: {', '.join(FRAMEWORK_OPTIONS)}")

    def mark(factory: Any) -> Any:
        setattr(factory, DEFAULTS_ATTR, {**getattr(factory, DEFAULTS_ATTR, {}), **defaults})
        return factory

    return mark


def option_defaults(factory: Callable[..., Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """The framework options' defaults for one data set: a factory parameter of the same name
    gives its own default (``seed=0`` of a generator), else ``@data_defaults``, else
    ``FRAMEWORK_OPTIONS``. ``parameters``: the factory's keyword parameters and defaults."""
    declared = getattr(factory, DEFAULTS_ATTR, {})
    out = {}
    for key, default in FRAMEWORK_OPTIONS.items():
        own = parameters.get(key, inspect.Parameter.empty)
        out[key] = own if own is not inspect.Parameter.empty else declared.get(key, default)
    return out


# -- the factory's result ----------------------------------------------------------------------


def as_examples(result: Any, owner: str) -> Examples:
    """``result`` in one of the three forms, as ``Examples``; ``owner`` names the data set and its
    plugin in the error a result of another form gets."""
    if isinstance(result, Examples):
        return result
    if isinstance(result, tuple) and len(result) == 2:
        return Examples(*result)
    if hasattr(result, "data") and hasattr(result, "target"):  # scikit-learn's Bunch
        feature_names = getattr(result, "feature_names", None)
        class_names = getattr(result, "target_names", None)
        return Examples(
            result.data,
            result.target,
            feature_names=None if feature_names is None else [str(n) for n in feature_names],
            class_names=None if class_names is None else [str(n) for n in class_names],
        )
    shown = type(result).__name__ if not isinstance(result, tuple) else f"a tuple of {len(result)}"
    raise ConfigError(
        f"{owner} returned {shown}; valid: (X, y), backproplab.Examples(X, y, ...) or an object with "
        "data and target arrays (scikit-learn's Bunch)"
    )


def features(examples: Examples, owner: str) -> tuple[np.ndarray, list[str]]:
    """X as a finite float matrix, and one name per column."""
    try:
        X = np.asarray(examples.X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{owner}: X is not numeric ({' '.join(str(exc).split())}); valid: an array of numbers, shape (m, n)") from None
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ConfigError(f"{owner}: X has shape {X.shape}; valid: a 2-D array (examples, features) with at least one of each")
    finite = np.isfinite(X)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        raise ConfigError(f"{owner}: X[{row}, {column}] is {X[row, column]}; valid: finite numbers only")
    names = examples.feature_names
    if names is None:
        return X, [f"x{k}" for k in range(1, X.shape[1] + 1)]
    names = [str(n) for n in names]
    if len(names) != X.shape[1]:
        raise ConfigError(f"{owner}: {len(names)} feature_names for {X.shape[1]} columns of X; valid: one name per column")
    repeated = _first_repeated(names)
    if repeated is not None:
        raise ConfigError(f"{owner}: the feature name {repeated!r} is given twice; valid: distinct names")
    return X, names


def _first_repeated(names: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


@dataclass(frozen=True)
class Targets:
    """Targets as the trainer takes them: class labels 0..k-1 of shape (m,), or regression
    values of shape (m, k); with the task and, for class names, the names in label order."""

    y: np.ndarray
    task: str
    classes: list[str] | None = None


@dataclass(frozen=True)
class Wording:
    """How an error names the targets: ``what`` the whole column, ``where(r)`` row r (from 1),
    ``task_key`` the setting that chose the task."""

    what: str
    where: Callable[[int], str]
    task_key: str


def targets_of(examples: Examples, n_rows: int, owner: str) -> Targets:
    """A factory's targets, checked against X's rows and interpreted as its task says."""
    wording = Wording(f"the targets of {owner}", lambda r: f"{owner}: y[{r - 1}]", "task")
    task = examples.task if examples.task is not None else "auto"
    if task not in ("auto",) + TASKS:
        raise ConfigError(f"{owner}: task={task!r} is invalid; valid: None, {', '.join(TASKS)}")
    y = np.asarray(examples.y)
    if y.ndim not in (1, 2) or y.shape[0] != n_rows or (y.ndim == 2 and y.shape[1] < 1):
        raise ConfigError(f"{owner}: y has shape {y.shape} for {n_rows} rows of X; valid: ({n_rows},) or ({n_rows}, k)")
    if y.dtype.kind in "USO":
        if y.ndim != 1:
            raise ConfigError(f"{owner}: y holds text in shape {y.shape}; valid: class names in one column, shape ({n_rows},)")
        cells = [str(v).strip() for v in y]
        result = interpret(cells, task, wording)
    elif y.dtype.kind in "biuf":
        values = y.astype(np.float64)
        if not np.isfinite(values).all():
            index = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
            raise ConfigError(f"{owner}: y{list(index)} is {values[index]}; valid: finite numbers or class names")
        if values.ndim == 2:
            if task not in ("auto", "regression") and values.shape[1] > 1:
                raise ConfigError(f"{owner}: task={task} with y of shape {values.shape}; valid: task=regression for several targets")
            if values.shape[1] > 1:
                return Targets(values, "regression")
            values = values[:, 0]
        if examples.task is not None and examples.task != "regression" and _labels(values):
            # The author said what the labels are: they stay as given (a set may lack a class).
            result = Targets(values, examples.task)
        else:
            result = numeric_task(values, task, wording)
    else:
        raise ConfigError(f"{owner}: y has dtype {y.dtype}; valid: numbers or class names")
    return _named(result, examples.class_names, owner)


def _labels(values: np.ndarray) -> bool:
    return bool(np.all(values >= 0) and np.all(values == np.round(values)))


def _named(targets: Targets, class_names: Sequence[str] | None, owner: str) -> Targets:
    if class_names is None or targets.classes is not None:
        return targets
    if targets.task == "regression":
        raise ConfigError(f"{owner}: class_names given for regression targets; valid: class labels, or no class_names")
    names = [str(n) for n in class_names]
    n_classes = max(2, int(targets.y.max()) + 1)
    if len(names) != n_classes:
        raise ConfigError(f"{owner}: {len(names)} class_names for {n_classes} classes (labels 0..{n_classes - 1}); valid: one name per class")
    repeated = _first_repeated(names)
    if repeated is not None:
        raise ConfigError(f"{owner}: the class name {repeated!r} is given twice; valid: distinct names")
    return Targets(targets.y, targets.task, names)


def interpret(cells: Sequence[str], task: Any, wording: Wording) -> Targets:
    """Targets from text cells: numbers, or class names (encoded in sorted order)."""
    values = _numeric_cells(cells, wording)
    if values is None:
        return _text_targets(cells, task, wording)
    return numeric_task(values, task, wording)


def _numeric_cells(cells: Sequence[str], wording: Wording) -> np.ndarray | None:
    """The cells as numbers, or None when every cell is text (class names).

    A column that mixes the two is refused rather than guessed at: a stray word among numbers is
    more often a typo than a class, and an empty cell is never a label."""
    values = np.empty(len(cells))
    first_number = first_text = None
    for r, cell in enumerate(cells, start=1):
        if not cell:
            raise ConfigError(f"{wording.where(r)} is empty; valid: a number or a class name in every row")
        try:
            value = float(cell)
        except ValueError:
            first_text = first_text or (r, cell)
            continue
        if not math.isfinite(value):
            raise ConfigError(f"{wording.where(r)}: {cell!r} is not a finite number")
        first_number = first_number or (r, cell)
        values[r - 1] = value
    if first_text is None:
        return values
    if first_number is not None:
        raise ConfigError(
            f"{wording.what} mixes numbers (row {first_number[0]}: {first_number[1]!r}) and "
            f"text (row {first_text[0]}: {first_text[1]!r}); valid: numbers only, or class names only"
        )
    return None


def _text_targets(cells: Sequence[str], task: Any, wording: Wording) -> Targets:
    from sklearn.preprocessing import LabelEncoder

    encoder = LabelEncoder().fit(cells)
    classes = [str(c) for c in encoder.classes_]
    shown = ", ".join(repr(c) for c in classes[:5]) + (", ..." if len(classes) > 5 else "")
    if task == "regression":
        raise ConfigError(
            f"{wording.task_key}=regression: {wording.what} holds class names ({shown}); "
            f"valid: {wording.task_key}=auto, binary or multiclass, or numeric targets"
        )
    if len(classes) < 2:
        raise ConfigError(f"{wording.what} holds the single class name {classes[0]!r}; valid: at least two classes to learn to tell apart")
    if task == "binary" and len(classes) > 2:
        raise ConfigError(f"{wording.task_key}=binary: {wording.what} has {len(classes)} classes ({shown}); valid: auto or multiclass")
    if task == "auto":
        task = "binary" if len(classes) == 2 else "multiclass"
    return Targets(encoder.transform(cells).astype(float), task, classes)


def numeric_task(y: np.ndarray, task: Any, wording: Wording) -> Targets:
    """Numeric targets as labels 0..k-1 (sorted order) or a regression column."""
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
        return Targets(y.reshape(-1, 1), task)
    if not integral:
        bad = values[values != np.round(values)][0].item()  # a Python float: no np.float64(...) repr
        raise ConfigError(
            f"{wording.task_key}={task}: {wording.what} holds {bad!r}, which is not a class label; "
            f"valid: integer labels, or {wording.task_key}=regression"
        )
    if task == "binary" and len(values) > 2:
        raise ConfigError(f"{wording.task_key}=binary: {wording.what} has {len(values)} classes; valid: multiclass or regression")
    # Labels become 0..k-1 in sorted order, so e.g. {1, 2, 3} or {-1, 1} work as classes.
    return Targets(np.searchsorted(values, y).astype(float), task)
