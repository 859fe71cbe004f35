"""Built-in losses: values against their formulas, E as the batch mean, gradients against
finite differences, the domain checks in ``prepare``, and the documented clipping at 0 and 1."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import backproplab as bp
import backproplab.plugins.losses as losses_module
from backproplab.errors import ConfigError

REGISTRY = bp.get_registry()
# Built-ins only: an installed third-party plugin is checked by its own tests (and the kit).
LOSSES = [n for n in REGISTRY.names("loss") if REGISTRY.get("loss", n).source.distribution == "backproplab"]


def make(name: str, **hyper):
    return REGISTRY.create("loss", name, **hyper)


Y_HAT = np.array([[0.8, 0.1], [0.3, 0.6]])
Y = np.array([[1.0, 0.0], [0.0, 1.0]])


def test_bce_value_is_the_formula():
    expected = -np.mean([math.log(0.8), math.log(0.9), math.log(0.7), math.log(0.6)])
    assert make("bce").value(Y_HAT, Y) == pytest.approx(expected, rel=1e-14)


def test_cross_entropy_sums_classes_and_averages_examples():
    y_hat = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    expected = -(math.log(0.7) + math.log(0.8)) / 2
    ce = make("cross_entropy")
    assert ce.value(y_hat, np.array([[1.0, 0, 0], [0, 0, 1.0]])) == pytest.approx(expected, rel=1e-14)
    assert ce.value(y_hat, ce.prepare([0, 2], 3)) == pytest.approx(expected, rel=1e-14)


def test_mse_mae_huber_hinge_values():
    d = Y_HAT - Y  # [[-0.2, 0.1], [0.3, -0.4]]
    assert make("mse").value(Y_HAT, Y) == pytest.approx(np.mean(d**2), rel=1e-14)
    assert make("mae").value(Y_HAT, Y) == pytest.approx(np.mean(np.abs(d)), rel=1e-14)
    # delta = 0.25: |d| = 0.2 and 0.1 quadratic, 0.3 and 0.4 linear.
    huber = [0.5 * 0.04, 0.5 * 0.01, 0.25 * (0.3 - 0.125), 0.25 * (0.4 - 0.125)]
    assert make("huber", delta=0.25).value(Y_HAT, Y) == pytest.approx(np.mean(huber), rel=1e-14)
    scores, labels = np.array([[2.0], [0.5], [-0.3]]), np.array([[1.0], [1.0], [-1.0]])
    assert make("hinge").value(scores, labels) == pytest.approx((0.0 + 0.5 + 0.7) / 3, rel=1e-14)


def example_pair(name: str, rng: np.random.Generator, m: int, k: int):
    """(y_hat, y) in the loss's domain, away from the kinks of mae, hinge and huber."""
    if name in ("bce", "binary_cross_entropy"):
        return rng.uniform(0.05, 0.95, (m, k)), rng.uniform(0, 1, (m, k))
    if name == "cross_entropy":
        p = rng.uniform(0.1, 1.0, (m, k))
        return p / p.sum(axis=1, keepdims=True), np.eye(k)[rng.integers(0, k, m)]
    if name == "hinge":
        y = rng.choice([-1.0, 1.0], (m, k))
        margin = rng.uniform(-2, 2, (m, k))
        margin = np.where(np.abs(margin - 1) < 0.05, margin + 0.2, margin)
        return margin * y, y  # y * y_hat = margin, kept away from 1
    y = rng.normal(size=(m, k))
    d = rng.uniform(0.05, 2.0, (m, k)) * rng.choice([-1.0, 1.0], (m, k))
    if name == "huber":
        d = np.where(np.abs(np.abs(d) - 1.0) < 0.05, d * 1.2, d)
    return y + d, y


@pytest.mark.parametrize("name", LOSSES)
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**20), m=st.integers(1, 5), k=st.integers(1, 4))
def test_grad_is_the_derivative_of_value(name, seed, m, k):
    if name == "cross_entropy" and k == 1:
        k = 2
    loss = make(name)
    y_hat, y = example_pair(name, np.random.default_rng(seed), m, k)
    analytic = loss.grad(y_hat, y)
    h = 1e-6
    numeric = np.zeros_like(y_hat)
    for idx in np.ndindex(y_hat.shape):
        plus, minus = y_hat.copy(), y_hat.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric[idx] = (loss.value(plus, y) - loss.value(minus, y)) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", LOSSES)
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**20), m=st.integers(2, 6))
def test_value_is_the_batch_mean_of_per_example_losses(name, seed, m):
    """E = (1/m) sum_i L_i: the batch value is the mean of the one-example values."""
    loss = make(name)
    y_hat, y = example_pair(name, np.random.default_rng(seed), m, 3)
    per_example = [loss.value(y_hat[i : i + 1], y[i : i + 1]) for i in range(m)]
    assert loss.value(y_hat, y) == pytest.approx(np.mean(per_example), rel=1e-12)
    # ... and so the batch gradient is the per-example gradient divided by m.
    stacked = np.concatenate([loss.grad(y_hat[i : i + 1], y[i : i + 1]) for i in range(m)]) / m
    np.testing.assert_allclose(loss.grad(y_hat, y), stacked, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["bce", "cross_entropy"])
def test_finite_when_predictions_hit_exactly_0_or_1(name, dtype):
    y_hat = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=dtype)
    y = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=dtype)
    loss = make(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            value = loss.value(y_hat, y)
            grad = loss.grad(y_hat, y)
    assert math.isfinite(value) and np.isfinite(grad).all()
    assert grad.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clipping_is_what_the_docstring_says(dtype):
    """The module docstring promises clipping at eps = finfo(dtype).eps and -log(eps) at the edge."""
    doc = losses_module.__doc__
    assert "Clipping" in doc and "finfo(dtype).eps" in doc
    eps = np.finfo(dtype).eps
    one, zero = np.ones((1, 1), dtype), np.zeros((1, 1), dtype)
    bce, ce = make("bce"), make("cross_entropy")
    # A prediction of exactly 0 (or 1) for the wrong class costs -log(eps), in either loss.
    assert bce.value(zero, one) == pytest.approx(-math.log(eps), rel=1e-5)
    assert bce.value(one, zero) == pytest.approx(-math.log(eps), rel=1e-5)
    assert ce.value(np.array([[0.0, 1.0]], dtype), np.array([[1.0, 0.0]], dtype)) == pytest.approx(-math.log(eps), rel=1e-5)
    # The gradient is taken at the clipped probability: (p - y) / (p (1 - p)) with p = eps.
    p = np.float64(eps)
    assert float(bce.grad(zero, one)[0, 0]) == pytest.approx((p - 1) / (p * (1 - p)), rel=1e-5)
    # Away from 0 and 1 clipping changes nothing.
    mid = np.array([[0.25]], dtype)
    assert bce.value(mid, one) == pytest.approx(-math.log(0.25), rel=1e-6)
    doc_eps = {np.float64: "2.2e-16", np.float32: "1.2e-7"}[dtype]
    assert doc_eps in doc and float(doc_eps) == pytest.approx(eps, rel=0.05)


@pytest.mark.parametrize("name", LOSSES)
def test_float32_gradient_stays_float32(name):
    loss = make(name)
    y_hat, y = example_pair(name, np.random.default_rng(0), 4, 3)
    y_hat, y = y_hat.astype(np.float32), y.astype(np.float32)
    assert loss.grad(y_hat, y).dtype == np.float32
    assert isinstance(loss.value(y_hat, y), float)


def test_cross_entropy_integer_labels_become_one_hot():
    ce = make("cross_entropy")
    np.testing.assert_array_equal(ce.prepare([2, 0, 1], 3), np.eye(3)[[2, 0, 1]])
    np.testing.assert_array_equal(ce.prepare(np.array([[1], [0]]), 3), np.eye(3)[[1, 0]])
    np.testing.assert_array_equal(ce.prepare(np.array([1.0, 2.0]), 3), np.eye(3)[[1, 2]])


def test_hinge_accepts_zero_one_labels_as_minus_one_plus_one():
    hinge = make("hinge")
    np.testing.assert_array_equal(hinge.prepare([0, 1, 1], 1), [[-1.0], [1.0], [1.0]])
    np.testing.assert_array_equal(hinge.prepare([-1, 1], 1), [[-1.0], [1.0]])


@pytest.mark.parametrize(
    "name,y,n_outputs,match",
    [
        ("bce", [0.0, 2.0], 1, r"bce targets must lie in \[0, 1\], got 2\.0"),
        ("bce", [-0.5], 1, r"got -0\.5"),
        ("cross_entropy", [0, 5], 3, r"label 5 is outside the classes 0\.\.2"),
        ("cross_entropy", [0.5, 1], 3, r"label 0\.5"),
        ("cross_entropy", [-1], 3, r"label -1"),
        ("cross_entropy", [[0.5, 0.2, 0.1]], 3, "summing to 1"),
        ("hinge", [1, 3], 1, r"hinge targets must be -1/\+1 \(or 0/1\), got 3\.0"),
        ("mse", [[1.0, 2.0]], 1, r"shape \(1, 2\) but the network has 1 outputs"),
        ("mse", [1.0, np.nan], 1, "non-finite"),
    ],
)
def test_targets_outside_the_domain_are_config_errors(name, y, n_outputs, match):
    with pytest.raises(ConfigError, match=match):
        make(name).prepare(y, n_outputs)


def test_accuracy():
    assert make("bce").accuracy(np.array([[0.9], [0.2], [0.6]]), np.array([[1.0], [0.0], [0.0]])) == pytest.approx(2 / 3)
    assert make("cross_entropy").accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.eye(2)[[1, 1]]) == 0.5
    assert make("hinge").accuracy(np.array([[0.3], [-2.0]]), np.array([[1.0], [1.0]])) == 0.5


@pytest.mark.parametrize("name, miss", [("bce", 0.0), ("hinge", -1.0)])
def test_multi_output_accuracy_counts_an_example_right_only_when_every_output_is(name, miss):
    """An all-negative guess on ten one-hot classes is 0% accurate, not 90% (scikit-learn's
    accuracy_score on multi-label data)."""
    y = np.eye(10)[[3, 7]]
    if name == "hinge":
        y = 2 * y - 1
    all_negative = np.full((2, 10), miss)
    assert make(name).accuracy(all_negative, y) == 0.0
    right_first = all_negative.copy()
    right_first[0, 3] = 1.0
    assert make(name).accuracy(right_first, y) == 0.5


@pytest.mark.parametrize("delta", [0, -1.0, float("nan")])
def test_huber_delta_must_be_positive(delta):
    with pytest.raises(ConfigError, match="delta"):
        make("huber", delta=delta)
