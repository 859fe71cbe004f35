"""Value checks that run before any computation, so bad input never fails deep inside numpy.

The foundation of every layer: the numerics check their inputs with these, and components
(built-in or third-party) check their hyperparameters with them. Depends on nothing but errors."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .errors import ConfigError

def is_finite_number(value: Any) -> bool:
    """A finite real number; False, not a TypeError or OverflowError, for an int beyond int64
    or too large for a float (``np.isfinite(10**20)`` raises)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return bool(np.isfinite(float(value)))
    except (OverflowError, TypeError, ValueError):
        return False


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive_float(name: str, value: Any) -> float:
    if not is_finite_number(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_nonnegative_float(name: str, value: Any) -> float:
    if not is_finite_number(value) or value < 0:
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
