"""Value checks that run before any computation, so bad input never fails deep inside numpy.

The foundation of every layer: the numerics check their inputs with these, and components
(built-in or third-party) check their hyperparameters with them. Depends on nothing but errors."""

from __future__ import annotations

import numbers
import os
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


# -- memory ---------------------------------------------------------------------------------------

# A generated or loaded data set exists about this many times over while it is split and
# standardised (the generator's arrays, the split, the scaled copy).
DATA_COPIES = 4
FLOAT_BYTES = 8  # float64, the dtype of data sets and of the default network


def machine_memory() -> int | None:
    """Bytes of physical memory (``SC_PHYS_PAGES * SC_PAGE_SIZE``), else ``MemTotal`` of
    /proc/meminfo; None when neither can be read, and then no memory bound is applied.

    The total, not what is free right now: a run refused for lack of memory must be refused
    every time, not depending on what else happens to be running (other jobs of a sweep)."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return int(pages) * int(size)
    except (AttributeError, ValueError, OSError):
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def format_bytes(n: int) -> str:
    """``74.5 GiB``; absurd sizes stay short (``3.2e+09 PiB``) rather than a 30-digit number."""
    value = float(n) if n < 2**1000 else float("inf")
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    if unit == "bytes":
        return f"{int(value)} bytes"
    return f"{value:.1f} {unit}" if value < 1e6 else f"{value:.1e} {unit}"


def check_data_size(key: str, value: Any, n_rows: int, n_features: int, *, memory: int | None = None) -> None:
    """Refuse a data set of ``n_rows`` x ``n_features`` float64 values that cannot fit into the
    machine's memory, before a generator allocates it: numpy would fail with "Unable to
    allocate 373 GiB" naming no key. ``key=value`` is the option that sets the size."""
    memory = machine_memory() if memory is None else memory
    if memory is None:
        return
    needed = n_rows * n_features * FLOAT_BYTES * DATA_COPIES
    if needed <= memory:
        return
    largest = memory // (n_features * FLOAT_BYTES * DATA_COPIES)
    raise ConfigError(
        key=key,
        value=value,
        problem=(
            f"needs about {format_bytes(needed)} ({n_rows} samples x {n_features} features x {FLOAT_BYTES} bytes, "
            f"x{DATA_COPIES} for the generated, split and scaled copies), but this machine has {format_bytes(memory)} of memory"
        ),
        valid=f"an integer in [2, {largest}]",
    )
