"""Built-in activations: values, vector-Jacobian products, dtype, and stability at |z| = 1000.

Names are enumerated from the registry, so a new built-in activation is held to every generic
check here without editing this file.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import backproplab as bp
from backproplab.errors import ConfigError

REGISTRY = bp.get_registry()
# Built-ins only: an installed third-party plugin is checked by its own tests (and the kit).
ACTIVATIONS = [n for n in REGISTRY.names("activation") if REGISTRY.get("activation", n).source.distribution == "backproplab"]
KINKED_AT_ZERO = {"relu", "leaky_relu", "elu"}


def make(name: str, **hyper):
    return REGISTRY.create("activation", name, **hyper)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# Reference values from the textbook formulas, computed with the math module.
KNOWN = [
    ("sigmoid", {}, [-2.0, 0.0, 3.0], [sigmoid(-2.0), 0.5, sigmoid(3.0)]),
    ("tanh", {}, [-2.0, 0.0, 3.0], [math.tanh(-2.0), 0.0, math.tanh(3.0)]),
    ("relu", {}, [-2.0, 0.0, 3.0], [0.0, 0.0, 3.0]),
    ("leaky_relu", {"alpha": 0.1}, [-2.0, 0.0, 3.0], [-0.2, 0.0, 3.0]),
    ("elu", {"alpha": 0.5}, [-2.0, 0.0, 3.0], [0.5 * (math.exp(-2.0) - 1.0), 0.0, 3.0]),
    ("softplus", {}, [-2.0, 0.0, 3.0], [math.log1p(math.exp(-2.0)), math.log(2.0), math.log1p(math.exp(3.0))]),
    ("identity", {}, [-2.0, 0.0, 3.0], [-2.0, 0.0, 3.0]),
    ("silu", {}, [-2.0, 0.0, 3.0], [-2.0 * sigmoid(-2.0), 0.0, 3.0 * sigmoid(3.0)]),
    ("gelu", {}, [-2.0, 0.0, 3.0], [x * 0.5 * (1.0 + math.erf(x / math.sqrt(2.0))) for x in (-2.0, 0.0, 3.0)]),
    ("softmax", {}, [0.0, math.log(2.0), math.log(5.0)], [1 / 8, 2 / 8, 5 / 8]),
]


@pytest.mark.parametrize("name,hyper,z,expected", KNOWN, ids=[k[0] for k in KNOWN])
def test_known_values(name, hyper, z, expected):
    out = make(name, **hyper).forward(np.array([z]))
    np.testing.assert_allclose(out[0], expected, rtol=1e-12, atol=1e-15)


def test_every_builtin_has_a_known_value_test():
    """A new built-in activation needs a reference value above (aliases share their class)."""
    covered = {type(make(k[0])) for k in KNOWN}
    missing = [n for n in ACTIVATIONS if type(make(n)) not in covered]
    assert not missing, f"no reference values for {missing}"


def vjp_numeric(act, z: np.ndarray, g: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """d/dz of sum(g * f(z)), by fourth-order central differences, element by element."""
    out = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        f = {}
        for k in (-2, -1, 1, 2):
            zp = z.copy()
            zp[idx] += k * h
            f[k] = float(np.sum(g * act.forward(zp)))
        out[idx] = (f[-2] - 8 * f[-1] + 8 * f[1] - f[2]) / (12 * h)
    return out


z_arrays = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 3), st.integers(1, 4)),
    elements=st.floats(-8.0, 8.0, allow_nan=False, allow_infinity=False),
)


@pytest.mark.parametrize("name", ACTIVATIONS)
@settings(max_examples=25, deadline=None)
@given(z=z_arrays, seed=st.integers(0, 2**16))
def test_backward_is_the_vjp_of_forward(name, z, seed):
    if name in KINKED_AT_ZERO:
        z = np.where(np.abs(z) < 1e-3, 0.5, z)  # central differences must not straddle the kink
    act = make(name)
    g = np.random.default_rng(seed).normal(size=z.shape)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        a = act.forward(z)
        analytic = act.backward(z, a, g)
    numeric = vjp_numeric(act, z, g)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_softmax_backward_is_the_full_jacobian_product():
    z = np.array([[0.3, -1.2, 2.0, 0.1], [5.0, 5.0, 5.0, 5.0]])
    g = np.array([[1.0, -2.0, 0.5, 3.0], [0.2, 0.1, -0.4, 0.0]])
    sm = make("softmax")
    a = sm.forward(z)
    expected = np.stack([(np.diag(p) - np.outer(p, p)).T @ gi for p, gi in zip(a, g)])
    np.testing.assert_allclose(sm.backward(z, a, g), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(sm.forward(z + 700.0), a, rtol=1e-12)  # shift invariance, no overflow


# Limits as z -> -inf and z -> +inf, with default hyperparameters.
LIMITS = {
    "sigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "relu": (0.0, 1000.0),
    "leaky_relu": (-10.0, 1000.0),
    "elu": (-1.0, 1000.0),
    "softplus": (0.0, 1000.0),
    "identity": (-1000.0, 1000.0),
    "silu": (0.0, 1000.0),
    "gelu": (0.0, 1000.0),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_finite_at_magnitude_1000(name, dtype):
    """No overflow, no 0/0, no warning, forward or backward. Underflow is allowed: exp(-1000)
    rounding to 0 is the correctly rounded answer, and numpy ignores it by default."""
    z = np.array([[-1000.0, -30.0, -1.0, 0.5, 1.0, 30.0, 1000.0]], dtype=dtype)
    act = make(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            a = act.forward(z)
            grad = act.backward(z, a, np.ones_like(z))
    assert np.isfinite(a).all() and np.isfinite(grad).all(), (a, grad)
    cls = type(act).__name__.lower()
    limits = LIMITS.get(name) or next((v for k, v in LIMITS.items() if type(make(k)).__name__.lower() == cls), None)
    if limits is not None:
        np.testing.assert_allclose([a[0, 0], a[0, -1]], limits, rtol=1e-6, atol=1e-30)
    if name == "softmax":
        np.testing.assert_allclose(a[0, -1], 1.0)
        assert a[0, 0] == 0.0


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "silu", "gelu", "elu", "tanh"])
def test_derivative_limits_at_magnitude_1000(name):
    z = np.array([[-1000.0, 1000.0]])
    act = make(name)
    grad = act.backward(z, act.forward(z), np.ones_like(z))
    expected = {"sigmoid": [0, 0], "tanh": [0, 0], "softplus": [0, 1], "silu": [0, 1], "gelu": [0, 1], "elu": [0, 1]}
    np.testing.assert_allclose(grad[0], expected[name], atol=1e-300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_dtype_and_shape_preserved_and_inputs_untouched(name, dtype):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(5, 3)).astype(dtype)
    g = rng.normal(size=(5, 3)).astype(dtype)
    z0, g0 = z.copy(), g.copy()
    act = make(name)
    a = act.forward(z)
    a0 = a.copy()
    grad = act.backward(z, a, g)
    assert a.dtype == dtype and grad.dtype == dtype
    assert a.shape == z.shape and grad.shape == z.shape
    # The network caches z and a for the backward pass, so neither direction may write to them.
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_array_equal(g, g0)
    np.testing.assert_array_equal(a, a0)
    assert not np.shares_memory(a, z), "forward must return a new array: z stays in the cache"


@pytest.mark.parametrize("name,hyper", [("leaky_relu", {"alpha": -0.1}), ("elu", {"alpha": 0.0}), ("elu", {"alpha": "big"})])
def test_bad_hyperparameters_are_config_errors(name, hyper):
    with pytest.raises(ConfigError, match="alpha"):
        make(name, **hyper)
