"""Data sets selected with ``data=NAME``: loaded through their plugin, checked, split and
standardised before training.

Every data set, built-in or third-party, is a factory registered with ``register_datasets``
(``backproplab.components.datasets`` says what it returns). The framework then does the same
for each:

- the data set's own options (its factory's keyword parameters, ``data.n_samples``) are checked
  against the schema generated from the factory's signature before it runs;
- its examples are checked (a numeric, finite X; one target per row), and class names among the
  targets are encoded with scikit-learn's ``LabelEncoder`` (sorted order), the names travelling
  with the data set as ``Dataset.classes`` so that a run can save which output means which class;
- ``data.val_fraction``: a held-out split drawn with ``data.seed`` (stratified for classes);
- ``data.standardize``: zero mean and unit variance from the *training* split's statistics only,
  so nothing about the validation split leaks into training;
- ``data.shuffle`` and ``data.batch_size`` are read by the trainer, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from backproplab.components.datasets import FRAMEWORK_OPTIONS, as_examples, features, option_defaults, targets_of
from backproplab.components.loading import get_registry
from backproplab.components.registry import Registration, Registry, accepts_any_keyword
from backproplab.errors import ConfigError, closest, exception_line, format_problem
from backproplab.validation import check_fraction

from .schema import check_hyperparameters, schema_of

# Keys every data config has; a data set's factory adds its own.
COMMON_KEYS = ("name", *FRAMEWORK_OPTIONS)
KIND = "dataset"


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
    # What made the arrays, for the run's record: a file's Path, or a text naming the generator
    # or loader (``Examples.source``, else the factory and its plugin).
    source: Path | str | None = None

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


def unknown_data_set(name: Any, available: list[str]) -> ConfigError:
    """``data=iris`` that no plugin registered: one line with the installed data sets, the
    closest name, and the way to train on a file of one's own (``data=csv data.path=iris.csv``)."""
    hint = closest(str(name), available, cutoff=0.7)  # 0.6 would offer digits for iris
    stem = name if isinstance(name, str) and name.isidentifier() else "FILE"
    text = format_problem("data", name, "is unknown", available, "available", hint)
    return ConfigError(
        f"{text}; for a CSV file of your own: data=csv data.path={stem}.csv",
        key="data", value=name, valid=available, hint=hint,
    )


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


# The framework's keys that decide the arrays (batch_size and shuffle only decide their order).
_SHAPING_OPTIONS = ("val_fraction", "standardize", "seed")


def source_of(cfg: Mapping[str, Any], dataset: Dataset | None = None) -> tuple[str | None, dict[str, Any]]:
    """(the file the arrays were read from, as an absolute path, or None for a generated or
    built-in set; what made the arrays: the loader and every data key that decides them)."""
    name = cfg.get("name")
    source = dataset.source if dataset is not None else None
    path = str(Path(source).resolve()) if isinstance(source, Path) else None
    if path is not None:
        made_by = f"read_csv({path})" if name in ("csv", "marks") else f"data={name} reading {path}"
    else:
        made_by = str(source) if source else f"backproplab data={name}"
    origin = {"data": name, "made_by": made_by}
    shaping = [k for k in cfg if k not in COMMON_KEYS] + list(_SHAPING_OPTIONS)
    origin.update({f"data.{k}": cfg[k] for k in shaping if k in cfg and k != "path"})
    return path, origin


def _registration(registry: Registry, name: Any) -> Registration:
    if not isinstance(name, str) or name not in registry.names(KIND):  # a list is unhashable: no ``in`` test first
        raise unknown_data_set(name, registry.names(KIND))
    return registry.get(KIND, name)


def _owner(registration: Registration) -> str:
    source = registration.source
    plugin = "built in" if source.distribution == "backproplab" else f"from {source.distribution} {source.version}"
    return f"data={registration.name} ({plugin})"


def _factory_params(registration: Registration, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments the factory is called with: the configured values of its own
    options and of any common option it declares (``seed``), checked against the schema
    generated from its signature; an option left out takes the factory's default."""
    parameters = registration.hyperparameters()
    takes_any = accepts_any_keyword(registration.factory)  # **options: every key that is not a common one
    params = {k: v for k, v in cfg.items() if k != "name" and (k in parameters or (takes_any and k not in COMMON_KEYS))}
    schema = schema_of("data", registration.name, registration.factory)
    return check_hyperparameters("data", f"data={registration.name}", schema, params)


def _examples(registration: Registration, params: dict[str, Any]) -> tuple[Raw, Any]:
    owner = _owner(registration)
    try:
        result = registration.factory(**params)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's failure, named with its plugin, before any output
        raise ConfigError(f"{owner} could not make its examples: {exception_line(exc)}") from None
    examples = as_examples(result, owner)
    X, names = features(examples, owner)
    targets = targets_of(examples, X.shape[0], owner)
    source = examples.source
    if source is None:
        factory = registration.factory
        source = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))} ({registration.source.distribution})"
    return Raw(X, targets.y, targets.task, names, targets.classes), source


def load_dataset(cfg: Mapping[str, Any], registry: Registry | None = None) -> Dataset:
    """Build the configured data set; every problem is a one-line ConfigError naming the key."""
    registry = registry or get_registry()
    name = cfg.get("name")
    registration = _registration(registry, name)
    own = [k for k in registration.hyperparameters() if k not in COMMON_KEYS]
    if not accepts_any_keyword(registration.factory):
        unknown = sorted(set(cfg) - set(COMMON_KEYS) - set(own))
        if unknown:
            valid = ", ".join([*COMMON_KEYS, *own])
            raise ConfigError(f"data.{unknown[0]} is not an option of data={name}; valid: {valid}")
    # A mapping without Hydra may leave common options out: the data set's own defaults apply.
    defaults = option_defaults(registration.factory, registration.hyperparameters())
    seed = cfg.get("seed", defaults["seed"])
    # scikit-learn's random_state takes 32 bits, as numpy's legacy seeds do.
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**32 - 1:
        raise ConfigError(key="data.seed", value=seed, valid=f"an integer in [0, {2**32 - 1}] (2**32 - 1)")
    try:
        fraction = check_fraction("data.val_fraction", cfg.get("val_fraction", defaults["val_fraction"]))
    except ConfigError:
        raise ConfigError(
            f"data.val_fraction={cfg.get('val_fraction')!r} is invalid; valid: a number in [0, 1)"
        ) from None
    standardize = _check_bool("standardize", cfg.get("standardize", defaults["standardize"]))
    raw, source = _examples(registration, _factory_params(registration, cfg))
    try:
        X_train, y_train, X_val, y_val = _split(raw, fraction, seed)
    except ConfigError as exc:
        if "n_samples" not in own:
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
        name, raw.task, X_train, y_train, X_val, y_val, n_classes, raw.feature_names, mean, scale, raw.classes, source
    )
