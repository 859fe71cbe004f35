"""Conformance checks for activations: ``forward(z) -> a`` and ``backward(z, a, grad_a) -> grad_z``.

``backward`` is a vector-Jacobian product, so it is checked against the numeric gradient of
``sum(forward(z) * grad_a)`` with a random ``grad_a``: one check that covers element-wise
activations and row-wise ones such as softmax alike. Inputs are 2-D, (examples, units), as the
network passes them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import register_check, run_checks
from ._numeric import compare_gradient
from ._subject import call, expect_array_like, fail, fresh, keyword_hyperparameters, strict_floats

KIND = "activation"

# Zero, tiny values either side of zero (where kinks live), moderate and large |z|. Rows mix
# signs so that row-wise activations (softmax) meet saturated and balanced rows.
EDGE_INPUTS = np.array(
    [
        [0.0, 0.0, 0.0],
        [1e-3, -1e-3, 0.0],
        [1.0, -1.0, 30.0],
        [-30.0, 1000.0, -1000.0],
    ]
)
LARGE = 1000.0


def _forward(act, z):
    return call(KIND, act, f"forward on an array of shape {z.shape}, dtype {z.dtype}", act.forward, z)


def _backward(act, z, a, g):
    return call(KIND, act, f"backward on an array of shape {z.shape}, dtype {z.dtype}", act.backward, z, a, g)


@register_check(KIND)
def check_activation_builds_from_keywords(activation: Any) -> None:
    """Every constructor parameter has a config-friendly default; building with them works."""
    __tracebackhide__ = True
    params = keyword_hyperparameters(KIND, activation)
    call(KIND, activation, f"building from keyword hyperparameters {params}", _cls(activation), **params)


def _cls(component):
    return component if isinstance(component, type) else type(component)


@register_check(KIND)
def check_activation_shape_and_dtype(activation: Any, *, seed: int = 0) -> None:
    """forward and backward return arrays of the input's shape and dtype, float32 and float64."""
    __tracebackhide__ = True
    rng = np.random.default_rng(seed)
    for dtype in (np.float32, np.float64):
        for shape in ((5, 4), (1, 1), (2, 7)):
            act = fresh(KIND, activation)
            z = rng.standard_normal(shape).astype(dtype)
            a = _forward(act, z)
            for what, out in (("forward", a), ("backward", None)):
                if out is None:
                    out = _backward(act, z, a, rng.standard_normal(shape).astype(dtype))
                expect_array_like(KIND, activation, what, out, z, "input")


@register_check(KIND)
def check_activation_does_not_mutate_inputs(activation: Any, *, seed: int = 0) -> None:
    """forward leaves z alone; backward leaves z, a and grad_a alone (the network caches them)."""
    __tracebackhide__ = True
    rng = np.random.default_rng(seed)
    act = fresh(KIND, activation)
    z = rng.standard_normal((4, 3))
    z0 = z.copy()
    a = _forward(act, z)
    if not np.array_equal(z, z0):
        fail(KIND, activation, "forward modified its input z in place; return a new array instead")
    a0 = np.array(a, copy=True)
    g = rng.standard_normal(z.shape)
    g0 = g.copy()
    _backward(act, z, a, g)
    for name, now, before in (("z", z, z0), ("a", a, a0), ("grad_a", g, g0)):
        if not np.array_equal(now, before):
            fail(KIND, activation, f"backward modified its input {name} in place; return a new array instead")


@register_check(KIND)
def check_activation_finite_for_large_inputs(activation: Any, *, large: float = LARGE) -> None:
    """forward and backward stay finite, without numpy overflow, at |z| = 1000 in both dtypes."""
    __tracebackhide__ = True
    for dtype in (np.float32, np.float64):
        z = np.array([[large, -large, 0.0], [-large, large, large / 2]], dtype=dtype)
        act = fresh(KIND, activation)
        with strict_floats(KIND, activation, f"forward at |z| = {large:g} ({np.dtype(dtype).name})"):
            a = _forward(act, z.copy())
        with strict_floats(KIND, activation, f"backward at |z| = {large:g} ({np.dtype(dtype).name})"):
            g = _backward(act, z.copy(), np.array(a, copy=True), np.ones_like(z))
        for what, out in (("forward", a), ("backward", g)):
            out = np.asarray(out)
            if not np.isfinite(out).all():
                bad = np.argwhere(~np.isfinite(out))[0]
                fail(KIND, activation, f"{what} is not finite at z = {float(z[tuple(bad)])!r} ({np.dtype(dtype).name}): "
                     f"got {float(out[tuple(bad)])!r}")


def _gradient(activation: Any, z: np.ndarray, where: str, seed: int) -> None:
    __tracebackhide__ = True
    act = fresh(KIND, activation)
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(z.shape)
    a = _forward(act, z.copy())
    if not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        fail(KIND, activation, f"forward is not finite at z = {float(z[tuple(bad)])!r} (float64): got {float(a[tuple(bad)])!r}")
    analytic = _backward(act, z.copy(), a, g.copy())
    if np.shape(analytic) != z.shape:
        fail(KIND, activation, f"backward returned shape {np.shape(analytic)} for input shape {z.shape}")
    mismatch = compare_gradient(lambda x: _forward(act, x), z, analytic, weight=g)
    if mismatch is not None:
        fail(KIND, activation, f"backward disagrees with central differences of forward on {where} inputs, "
             + mismatch.describe("z"))


@register_check(KIND)
def check_activation_gradient(activation: Any, *, seed: int = 0) -> None:
    """backward matches central differences of forward (float64) on random inputs."""
    __tracebackhide__ = True
    rng = np.random.default_rng(seed)
    for shape in ((5, 4), (1, 3)):
        _gradient(activation, rng.standard_normal(shape) * 2.0, "random", seed)


@register_check(KIND)
def check_activation_gradient_edge(activation: Any, *, seed: int = 0, edge_inputs: Any = None) -> None:
    """backward matches central differences at 0, +-1e-3, +-1, +-30 and +-1000; at a kink
    (one-sided slopes disagree) it must return a subgradient."""
    __tracebackhide__ = True
    z = EDGE_INPUTS if edge_inputs is None else np.asarray(edge_inputs, dtype=np.float64)
    _gradient(activation, z.copy(), "edge", seed)



def check_activation(activation: Any, **options: Any) -> None:
    """Run every activation check on a class (built with its defaults) or an instance.

    Options: ``seed`` (random inputs), ``edge_inputs`` (a 2-D array replacing the default edge
    inputs), ``large`` (the |z| at which outputs must stay finite, default 1000).
    Raises AssertionError naming the component and the violated property.
    """
    __tracebackhide__ = True
    run_checks(activation, KIND, options)
