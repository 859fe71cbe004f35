"""Conformance checks for data sets: a ``register_datasets`` factory, called with its keyword
options, returns ``(X, y)``, ``backproplab.Examples`` or an object with ``data`` and ``target``
(``backproplab.components.datasets``).

A factory is built from a config, so its options need config-friendly defaults (a required one,
such as ``csv``'s ``path``, is given with ``params=``). Its examples must pass the framework's own
checks, the ones a run applies: a finite numeric X, one target per row, names that match. The
same options must give the same examples (a generator draws from its ``seed`` option, never
numpy's global state), or a sweep could not tell a better setting from a different draw. Its
``@data_defaults`` must be values the framework accepts.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import numpy as np

from backproplab.components.datasets import FRAMEWORK_OPTIONS, as_examples, features, option_defaults, targets_of
from backproplab.errors import ConfigError

from ._checks import register_check, run_checks
from ._subject import _is_config_value, call, fail, label

KIND = "dataset"
SEED_MAX = 2**32 - 1


def _parameters(factory: Any) -> dict[str, inspect.Parameter]:
    __tracebackhide__ = True
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError) as exc:
        fail(KIND, factory, f"its signature cannot be inspected ({exc}), so a config cannot call it")
    return dict(signature.parameters)


def _examples(factory: Any, params: Mapping[str, Any] | None):
    __tracebackhide__ = True
    kwargs = dict(params or {})
    result = call(KIND, factory, f"calling it with {kwargs}", factory, **kwargs)
    owner = f"data={label(factory)}"
    try:
        examples = as_examples(result, owner)
        X, names = features(examples, owner)
        targets = targets_of(examples, X.shape[0], owner)
    except ConfigError as exc:
        fail(KIND, factory, f"the framework refuses its examples: {exc}")
    return X, targets, names


@register_check(KIND)
def check_dataset_builds_from_keywords(factory: Any, *, params: Mapping[str, Any] | None = None) -> None:
    """Every parameter is a keyword option with a default a config can hold (or is given in
    ``params``), and calling the factory with them works."""
    __tracebackhide__ = True
    given = dict(params or {})
    for p in _parameters(factory).values():
        if p.kind is p.POSITIONAL_ONLY:
            fail(KIND, factory, f"option {p.name!r} is positional-only; data-set options are keyword arguments (data.{p.name}=)")
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            if p.name not in given:
                fail(KIND, factory, f"option {p.name!r} has no default; give it a default, or pass params={{{p.name!r}: ...}} "
                     "to the check as a run must pass data." + p.name)
        elif not _is_config_value(p.default):
            fail(KIND, factory, f"the default of option {p.name!r} is {p.default!r} ({type(p.default).__name__}), which a "
                 "config cannot hold; use None, bool, int, float, str or a list")
    unknown = sorted(set(given) - set(_parameters(factory)))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in _parameters(factory).values()):
        fail(KIND, factory, f"params names {unknown[0]!r}, which is not an option of the factory")
    call(KIND, factory, f"calling it with {given}", factory, **given)


@register_check(KIND)
def check_dataset_examples(factory: Any, *, params: Mapping[str, Any] | None = None) -> None:
    """Returns one of the three forms, with finite numeric features of shape (m, n), one target
    per row (numbers or class names), and feature and class names that match them."""
    __tracebackhide__ = True
    _examples(factory, params)


@register_check(KIND)
def check_dataset_repeatable(factory: Any, *, params: Mapping[str, Any] | None = None) -> None:
    """The same options give the same examples, and numpy's global random state is left alone
    (a generator draws from its ``seed`` option)."""
    __tracebackhide__ = True
    state = np.random.get_state()
    X1, t1, _ = _examples(factory, params)
    after = np.random.get_state()
    if not (after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]):
        fail(KIND, factory, "draws from numpy's global random state (np.random.*); declare a seed option and draw from "
             "np.random.default_rng(seed)")
    X2, t2, _ = _examples(factory, params)
    if not (np.array_equal(X1, X2) and np.array_equal(t1.y, t2.y)):
        fail(KIND, factory, "two calls with the same options returned different examples; seed every random draw "
             "from the factory's seed option")


@register_check(KIND)
def check_dataset_defaults(factory: Any) -> None:
    """The defaults it sets for the framework's options (``@data_defaults``, or a parameter of
    the same name) are values a run accepts."""
    __tracebackhide__ = True
    parameters = {name: p.default for name, p in _parameters(factory).items()}
    defaults = option_defaults(factory, parameters)
    valid = {
        "batch_size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"),
        "shuffle": (lambda v: isinstance(v, bool), "true or false"),
        "val_fraction": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1, "a number in [0, 1)"),
        "standardize": (lambda v: isinstance(v, bool), "true or false"),
        "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= SEED_MAX, f"an integer in [0, {SEED_MAX}]"),
    }
    assert set(valid) == set(FRAMEWORK_OPTIONS)
    for key, value in defaults.items():
        ok, words = valid[key]
        if not ok(value):
            fail(KIND, factory, f"its default data.{key}={value!r} is invalid; valid: {words}")


def check_dataset(factory: Any, *, params: Mapping[str, Any] | None = None) -> None:
    """Run every data-set check on a ``register_datasets`` factory; ``params``: options to call it
    with (those without a default, e.g. ``{"path": "train.csv"}``)."""
    __tracebackhide__ = True
    run_checks(factory, KIND, {"params": params})
