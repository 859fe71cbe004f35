"""Initialisers: shape (fan_out, fan_in), dtype, seeding, the published scales, and the legacy
generator that reproduces the worked example's weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

import backproplab as bp
from backproplab.errors import ConfigError

REGISTRY = bp.get_registry()
# Built-ins only: an installed third-party plugin is checked by its own tests (and the kit).
INITIALIZERS = [n for n in REGISTRY.names("initializer") if REGISTRY.get("initializer", n).source.distribution == "backproplab"]
DETERMINISTIC = {"zeros", "constant"}


def make(spec):
    return REGISTRY.resolve("initializer", spec)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", INITIALIZERS)
def test_shape_dtype_and_seed(name, dtype):
    shape = (7, 5)
    a = make(name)(shape, np.random.default_rng(1), dtype)
    b = make(name)(shape, np.random.default_rng(1), dtype)
    assert a.shape == shape and a.dtype == dtype
    np.testing.assert_array_equal(a, b)  # same seed, same weights
    if name not in DETERMINISTIC:
        c = make(name)(shape, np.random.default_rng(2), dtype)
        assert not np.array_equal(a, c), "another seed must give other weights"
        assert np.isfinite(a).all() and np.unique(a).size == a.size


# (spec, expected std or None, expected |w| bound or None) for a (fan_out, fan_in) = (300, 500) matrix
FAN_OUT, FAN_IN = 300, 500
SCALES = [
    ("xavier_normal", math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
    ("xavier_uniform", math.sqrt(6 / (FAN_IN + FAN_OUT)) / math.sqrt(3), math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ("he_normal", math.sqrt(2 / FAN_IN), None),
    ("he_uniform", math.sqrt(6 / FAN_IN) / math.sqrt(3), math.sqrt(6 / FAN_IN)),
    ("lecun_normal", math.sqrt(1 / FAN_IN), None),
    ({"name": "normal", "std": 0.2}, 0.2, None),
    ({"name": "uniform", "low": -0.3, "high": 0.3}, 0.3 / math.sqrt(3), 0.3),
    ({"name": "xavier_normal", "gain": 2.0}, 2.0 * math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
]


@pytest.mark.parametrize("spec,std,bound", SCALES, ids=lambda v: str(v) if not isinstance(v, float) else None)
def test_published_scales(spec, std, bound):
    w = make(spec)((FAN_OUT, FAN_IN), np.random.default_rng(0), np.float64)
    # 150k draws with a fixed seed: the sample std is within 1% of the population's.
    assert w.std() == pytest.approx(std, rel=0.01)
    assert abs(w.mean()) < 0.02 * std
    if bound is not None:
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() > 0.99 * bound


def test_zeros_and_constant():
    np.testing.assert_array_equal(make("zeros")((2, 3), None, np.float64), np.zeros((2, 3)))
    np.testing.assert_array_equal(make({"name": "constant", "value": 0.7})((2, 3), None, np.float32), np.full((2, 3), 0.7, np.float32))


def test_legacy_randn_is_numpys_legacy_stream_layer_after_layer():
    init = make({"name": "legacy_randn", "scale": 0.1, "seed": 3})
    rs = np.random.RandomState(3)
    expected_w1, expected_w2 = rs.randn(4, 3) * 0.1, rs.randn(1, 4) * 0.1
    rng = np.random.default_rng(123)  # ignored when the legacy seed is set
    np.testing.assert_array_equal(init((4, 3), rng, np.float64), expected_w1)
    np.testing.assert_array_equal(init((1, 4), rng, np.float64), expected_w2)


def test_legacy_randn_without_seed_follows_the_run_seed():
    a = make({"name": "legacy_randn", "scale": 0.1})((3, 3), np.random.default_rng(5), np.float64)
    b = make({"name": "legacy_randn", "scale": 0.1})((3, 3), np.random.default_rng(5), np.float64)
    c = make({"name": "legacy_randn", "scale": 0.1})((3, 3), np.random.default_rng(6), np.float64)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_network_draws_layers_in_order_from_one_generator():
    """build_network's seed fixes every layer; biases start at zero."""
    net = bp.build_network([4, 3, 2], "tanh", initializer="he_normal", seed=11)
    rng = np.random.default_rng(11)
    w1 = rng.standard_normal((3, 4)) * math.sqrt(2 / 4)
    w2 = rng.standard_normal((2, 3)) * math.sqrt(2 / 3)
    np.testing.assert_allclose(net.params["W1"], w1, rtol=1e-15)
    np.testing.assert_allclose(net.params["W2"], w2, rtol=1e-15)
    np.testing.assert_array_equal(net.params["b1"], np.zeros(3))
    np.testing.assert_array_equal(net.params["b2"], np.zeros(2))


def test_an_initializer_may_set_the_biases():
    class WithBias:
        def __call__(self, shape, rng, dtype):
            return np.ones(shape, dtype)

        def bias(self, shape, rng, dtype):
            return np.full(shape, 0.5, dtype)

    net = bp.Network([2, 3], [REGISTRY.create("activation", "identity")], WithBias(), dtype="float32")
    np.testing.assert_array_equal(net.params["b1"], np.full(3, 0.5, np.float32))
    assert net.params["b1"].dtype == np.float32


@pytest.mark.parametrize(
    "spec,match",
    [
        ({"name": "normal", "std": 0}, r"std must be a finite number > 0, got 0"),
        ({"name": "uniform", "low": 1.0, "high": 0.5}, r"low < high, got low=1\.0, high=0\.5"),
        ({"name": "legacy_randn", "seed": -1}, "seed must be a non-negative integer"),
        ({"name": "legacy_randn", "scale": -0.1}, "scale"),
        ({"name": "he_normal", "gain": 2.0}, r"has no hyperparameter 'gain'; valid: \(none\)"),
    ],
)
def test_bad_hyperparameters(spec, match):
    with pytest.raises(ConfigError, match=match):
        make(spec)


def test_wrong_shape_from_an_initializer_is_reported():
    class Wrong:
        def __call__(self, shape, rng, dtype):
            return np.zeros((1, 1), dtype)

    with pytest.raises(ConfigError, match=r"returned shape \(1, 1\) for W1, expected \(3, 2\)"):
        bp.Network([2, 3], [REGISTRY.create("activation", "identity")], Wrong())
