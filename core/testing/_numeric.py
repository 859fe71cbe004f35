"""Finite-difference gradient checks in float64, after cs231n's ``gradient_check.py``.

A derivative is checked one coordinate at a time with central differences,
``(f(x + h e_i) - f(x - h e_i)) / 2h``, and compared with cs231n's relative error
``|a - n| / max(|a| + |n|, 1e-8)``. Two refinements keep the check strict where the function is
smooth and honest where floating point or the function itself makes a finite difference
meaningless:

* Round-off. A finite difference cannot resolve a slope smaller than the rounding error of the
  values it subtracts, about ``eps * |f| / h``. That bound is added to the tolerance of each
  coordinate, so a tiny true slope next to a large value (sigmoid at z = 30) is judged by what
  float64 can measure rather than failing on noise. Where a coordinate misses at the default step
  it is re-measured at other steps, since a point where the second derivative jumps (ELU at 0)
  has O(h) rather than O(h^2) truncation error. A wrong derivative misses at every step.
* Kinks. Where the one-sided slopes disagree by more than ``KINK_RTOL`` (relu at 0), the
  function is not differentiable there and any value between the two one-sided slopes (a
  subgradient) is accepted. Random inputs almost never land within h of a kink; the edge inputs
  (0, +-1e-3, ...) are where kinks are met, and there the analytic value must still be a
  subgradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

RTOL = 1e-6
STEPS = (1e-5, 1e-6, 1e-4, 1e-7)
KINK_RTOL = 1e-3
_EPS = np.finfo(np.float64).eps
_ROUNDOFF_SAFETY = 16.0  # a few ulps of error in each evaluated function value


def rel_error(a, n):
    """cs231n's relative error, element-wise."""
    a, n = np.asarray(a, dtype=np.float64), np.asarray(n, dtype=np.float64)
    return np.abs(a - n) / np.maximum(1e-8, np.abs(a) + np.abs(n))


@dataclass
class Mismatch:
    """The worst coordinate at which the analytic derivative disagrees with the numeric one."""

    index: tuple[int, ...]
    x: float
    analytic: float
    numeric: float
    rel_error: float
    kink: tuple[float, float] | None  # the one-sided slopes, when the point is a kink

    def describe(self, what: str) -> str:
        at = f"{what}[{', '.join(map(str, self.index))}] = {self.x!r}"
        if self.kink is not None:
            left, right = self.kink
            return (
                f"at the kink {at} the analytic gradient {self.analytic:.10g} is not between "
                f"the one-sided slopes {left:.10g} and {right:.10g}"
            )
        return (
            f"at {at}: analytic {self.analytic:.10g}, numeric {self.numeric:.10g}, "
            f"relative error {self.rel_error:.3g} > {RTOL:g}"
        )


def _weighted(value, weight) -> tuple[float, float]:
    """(sum of value * weight, sum of |value * weight|) in float64."""
    v = np.asarray(value, dtype=np.float64)
    prod = v if weight is None else v * weight
    return float(np.sum(prod)), float(np.sum(np.abs(prod)))


def _slopes(f: Callable, x: np.ndarray, weight, h: float):
    """Central, left and right slopes of sum(f(x) * weight) per coordinate, and their round-off."""
    central = np.empty(x.shape)
    left = np.empty(x.shape)
    right = np.empty(x.shape)
    noise = np.empty(x.shape)
    f0 = np.asarray(f(x.copy()), dtype=np.float64)
    for idx in np.ndindex(x.shape):
        xp = x.copy()
        xp[idx] += h
        xm = x.copy()
        xm[idx] -= h
        fp = np.asarray(f(xp), dtype=np.float64)
        fm = np.asarray(f(xm), dtype=np.float64)
        # Subtract before weighting and summing: for element-wise functions only one entry
        # differs, so the rounding error is that of one value rather than of the whole sum.
        d_pm, _ = _weighted(fp - fm, weight)
        d_p0, _ = _weighted(fp - f0, weight)
        d_0m, _ = _weighted(f0 - fm, weight)
        _, mag = _weighted(np.abs(fp) + np.abs(fm) + np.abs(f0), weight)
        central[idx] = d_pm / (2 * h)
        right[idx] = d_p0 / h
        left[idx] = d_0m / h
        noise[idx] = _ROUNDOFF_SAFETY * _EPS * mag / h
    return central, left, right, noise


def compare_gradient(f: Callable, x: np.ndarray, analytic: np.ndarray, weight=None) -> Mismatch | None:
    """Check ``analytic`` against the numeric gradient of ``sum(f(x) * weight)`` at ``x``.

    Returns the worst mismatch, or None when every coordinate agrees.
    """
    x = np.asarray(x, dtype=np.float64)
    analytic = np.asarray(analytic, dtype=np.float64)
    ok = np.zeros(x.shape, dtype=bool)
    first = None
    for h in STEPS:
        with np.errstate(all="ignore"):  # a NaN or inf slope is reported as a mismatch below
            central, left, right, noise = _slopes(f, x, weight, h)
        if first is None:
            first = (central, left, right, noise)
        tol = RTOL * (np.abs(analytic) + np.abs(central)) + noise
        ok |= np.abs(analytic - central) <= tol
        if ok.all():
            return None
    central, left, right, noise = first
    spread = np.abs(left - right)
    kink = spread > KINK_RTOL * (np.abs(left) + np.abs(right)) + noise
    lo = np.minimum(left, right) - noise - RTOL * np.abs(left)
    hi = np.maximum(left, right) + noise + RTOL * np.abs(right)
    ok |= kink & (analytic >= lo) & (analytic <= hi)
    if ok.all():
        return None
    err = np.where(ok, -1.0, rel_error(analytic, central))
    idx = np.unravel_index(int(np.argmax(err)), x.shape)
    return Mismatch(
        index=tuple(int(i) for i in idx),
        x=float(x[idx]),
        analytic=float(analytic[idx]),
        numeric=float(central[idx]),
        rel_error=float(err[idx]),
        kink=(float(left[idx]), float(right[idx])) if kink[idx] else None,
    )
