"""Input checks that run before any computation, so bad input never fails deep inside numpy."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    from .registry import Registry

# The optional attribute by which a loss names the output activations it is meant to follow.
OUTPUT_ACTIVATIONS = "output_activations"


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_nonnegative_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_fraction(name: str, value: Any, *, low_open: bool = False, high_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number in {'(' if low_open else '['}0, 1{')' if high_open else ']'}, got {value!r}")
    ok_low = value > 0 if low_open else value >= 0
    ok_high = value < 1 if high_open else value <= 1
    if not (ok_low and ok_high):
        raise ConfigError(f"{name} must be in {'(' if low_open else '['}0, 1{')' if high_open else ']'}, got {value!r}")
    return float(value)


def as_float_matrix(name: str, value: Any, dtype: np.dtype, n_columns: int | None = None) -> np.ndarray:
    """A finite 2-D array of ``dtype``; a 1-D input is one example when ``n_columns`` says so."""
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be numeric, got {type(value).__name__} ({exc})") from None
    if arr.ndim == 1 and n_columns is not None and arr.shape[0] == n_columns:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be a 2-D array (examples, features), got shape {arr.shape}")
    if n_columns is not None and arr.shape[1] != n_columns:
        raise ConfigError(
            f"{name} has {arr.shape[1]} features per example but the network expects {n_columns}"
        )
    if arr.shape[0] == 0:
        raise ConfigError(f"{name} has no examples (shape {arr.shape})")
    # A finite sum proves every element finite without a boolean copy of the data; only when it
    # is not (a NaN or inf, or an overflow of huge finite values) is the element-wise check run.
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(arr, axis=None)
    if not np.isfinite(total) and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ConfigError(
            f"{name} contains a non-finite value {arr[tuple(bad)].item()!r} at {name}[{bad[0]}, {bad[1]}] (0-based); "
            "inputs must be finite numbers"
        )
    return arr


def _declared_outputs(loss: Any) -> tuple[str, ...]:
    declared = getattr(loss, OUTPUT_ACTIVATIONS, None)
    if declared is None:
        return ()
    if isinstance(declared, str):
        return (declared,)
    return tuple(n for n in declared if isinstance(n, str))


def _activation_factory(registry: "Registry", activation: Any) -> tuple[Any, str | None]:
    """(registered factory, name) of an activation name, ``{"name": ...}`` spec or instance;
    (None, None) when no plugin registered it (such an activation is not checked)."""
    if isinstance(activation, Mapping):
        activation = activation.get("name")
    if isinstance(activation, str):
        try:
            return registry.get("activation", activation).factory, activation
        except ConfigError:
            return None, None
    cls = activation if isinstance(activation, type) else type(activation)
    names = registry.names_of("activation", cls)
    return (cls, names[0]) if names else (None, None)


def _fits(registry: "Registry", loss: Any, factory: Any) -> bool | None:
    """Whether a loss declares ``factory`` among its output activations; None if it declares none
    that is installed (then nothing is checked)."""
    expected = []
    for name in _declared_outputs(loss):
        try:
            expected.append(registry.get("activation", name).factory)
        except ConfigError:  # declared, but no installed plugin provides it
            continue
    if not expected:
        return None
    return any(factory is f for f in expected)


def _choices(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_output_activation(
    loss: Any,
    output_activation: Any,
    registry: "Registry",
    *,
    loss_name: str | None = None,
    cli: bool = False,
) -> None:
    """Refuse a loss and an output activation that do not fit (e.g. cross_entropy after sigmoid).

    A loss may declare ``output_activations``: the registered names of the output activations it
    is meant to follow (aliases included through their registration). A loss that declares
    nothing, and an activation that no plugin registered, are not checked. ``cli`` words the
    advice as command-line overrides rather than as Python arguments.
    """
    factory, activation_name = _activation_factory(registry, output_activation)
    if factory is None or _fits(registry, loss, factory) is not False:
        return
    if loss_name is None:
        names = registry.names_of("loss", type(loss))
        loss_name = names[0] if names else type(loss).__name__
    expected = [n for n in dict.fromkeys(_declared_outputs(loss)) if n in registry.names("activation")]
    # Other losses that declare this activation, one name per loss (aliases skipped).
    alternatives: list[str] = []
    seen = {type(loss)}
    for registration in registry:
        if registration.kind != "loss" or registration.factory in seen:
            continue
        seen.add(registration.factory)
        if _fits(registry, registration.factory, factory):
            alternatives.append(registry.names_of("loss", registration.factory)[0])
    article = "an" if expected[0][0] in "aeiou" else "a"
    wanted = f"{article} {_choices(expected)} output"
    if cli:
        fixes = [f"model.output_activation={n}" for n in expected] + [f"loss={n}" for n in alternatives]
        raise ConfigError(
            f"loss={loss_name} expects {wanted} (got model.output_activation={activation_name}); use {_choices(fixes)}"
        )
    fixes = [f"output_activation={n!r}" for n in expected] + [f"loss={n!r}" for n in alternatives]
    raise ConfigError(f"loss {loss_name!r} expects {wanted} (got {activation_name!r}); use {_choices(fixes)}")
