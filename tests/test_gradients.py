"""Finite-difference checks of the whole back-propagation: Network.backward(loss.grad(...)) against
central differences of loss.value with respect to every parameter element, in float64.

The numeric derivative is the fourth-order central difference
(f(-2h) - 8 f(-h) + 8 f(h) - f(2h)) / 12h: the plain two-point one leaves a truncation error of
about 1e-10 absolute at h = 1e-5, which is larger than 1e-6 relative on the small gradient
elements of a deep network, while this one is accurate to about 1e-12.

The relative error is cs231n's, |a - n| / max(|a| + |n|, FLOOR), and must stay below 1e-6.
FLOOR keeps elements that are zero in exact arithmetic (a dead relu unit, mae signs that cancel)
from dividing round-off (about 3e-12 here) by zero; with FLOOR = 1e-5 an element below 1e-5
must still agree to 1e-11 absolute.

Every registered activation is covered because the cases are enumerated from the registry, so a
new built-in is checked without touching this file. Kinks (relu, leaky_relu, elu at z = 0; mae at
y_hat = y; hinge at y * y_hat = 1; huber at |d| = delta) are kept well away from the points where
the derivative is taken: ``kink_distance`` measures it and the case is re-drawn with another seed
until it is far enough, so central differences never straddle one.
"""

from __future__ import annotations

import numpy as np
import pytest

import backproplab as bp

H = 1e-4
FLOOR = 1e-5
MAX_REL_ERROR = 1e-6
KINK_MARGIN = 1e-2  # far beyond the largest change in z that a step of 2H can cause here

REGISTRY = bp.get_registry()
# Built-ins only: an installed third-party plugin is checked by its own tests (and the kit).
ACTIVATIONS = [n for n in REGISTRY.names("activation") if REGISTRY.get("activation", n).source.distribution == "backproplab"]
SOFTMAX_LIKE = {"softmax"}


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    return float(np.max(np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), FLOOR)))


def numeric_gradients(net: bp.Network, loss, X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for name, p in net.params.items():
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            f = {}
            for k in (-2, -1, 1, 2):
                p[idx] = old + k * H
                f[k] = loss.value(net.forward(X), y)
            p[idx] = old
            g[idx] = (f[-2] - 8 * f[-1] + 8 * f[1] - f[2]) / (12 * H)
        out[name] = g
    return out


def make_targets(loss_name: str, m: int, n_out: int, rng: np.random.Generator, labels: str = "onehot"):
    if loss_name == "bce":
        return rng.uniform(0.05, 0.95, size=(m, n_out))  # soft targets exercise both log terms
    if loss_name == "cross_entropy":
        classes = rng.integers(0, n_out, size=m)
        return classes if labels == "int" else np.eye(n_out)[classes]
    if loss_name == "hinge":
        return rng.choice([-1.0, 1.0], size=(m, n_out))
    return rng.normal(size=(m, n_out))


def kink_distance(net: bp.Network, hidden: str, output: str, loss_name: str, loss, y_hat, y) -> float:
    """How far the evaluation point is from the nearest kink of a piecewise function."""
    distances = [np.inf]
    zs, _ = net.cache
    for z in zs:  # every layer's pre-activation: harmless for smooth activations
        distances.append(np.min(np.abs(z)))
    if loss_name == "mae":
        distances.append(np.min(np.abs(y_hat - y)))
    elif loss_name == "hinge":
        distances.append(np.min(np.abs(1.0 - y * y_hat)))
    elif loss_name == "huber":
        distances.append(np.min(np.abs(np.abs(y_hat - y) - loss.delta)))
    return float(min(distances))


def check_case(hidden: str, output: str, loss_spec, hidden_layers: int, batch: int, labels: str = "onehot"):
    loss_name = loss_spec if isinstance(loss_spec, str) else loss_spec["name"]
    n_out = 3 if output == "softmax" or loss_name == "cross_entropy" else 2
    sizes = [4] + [5, 4, 3][:hidden_layers] + [n_out]
    loss = REGISTRY.resolve("loss", loss_spec)
    for seed in range(50):
        rng = np.random.default_rng(seed)
        net = bp.build_network(sizes, hidden, output, {"name": "normal", "std": 0.8}, seed=seed)
        X = net.check_input(rng.normal(size=(batch, sizes[0])))
        y = make_targets(loss_name, batch, n_out, rng, labels)
        y = loss.prepare(y, n_out) if hasattr(loss, "prepare") else y
        y_hat = net.forward(X)
        if kink_distance(net, hidden, output, loss_name, loss, y_hat, y) > KINK_MARGIN:
            break
    else:  # pragma: no cover - would mean the case itself is badly chosen
        pytest.fail(f"no seed keeps {hidden}/{output}/{loss_name} away from its kinks")
    with np.errstate(all="raise"):
        analytic = net.backward(loss.grad(net.forward(X), y))
        numeric = numeric_gradients(net, loss, X, y)
    assert list(analytic) == list(net.params)
    for name in net.params:
        assert analytic[name].shape == net.params[name].shape, name
        assert analytic[name].dtype == np.float64, name
        err = rel_error(analytic[name], numeric[name])
        assert err < MAX_REL_ERROR, f"{hidden}/{output}/{loss_name} {name}: relative error {err:.2e}"
        # A check that only ever compares zeros proves nothing.
    assert any(np.abs(numeric[n]).max() > 1e-3 for n in numeric)


@pytest.mark.parametrize("batch", [1, 6])
@pytest.mark.parametrize("hidden_layers", [1, 2, 3])
@pytest.mark.parametrize("hidden", ACTIVATIONS)
def test_every_activation_as_hidden_layer(hidden, hidden_layers, batch):
    check_case(hidden, "identity", "mse", hidden_layers, batch)


@pytest.mark.parametrize("loss", ["mse", {"name": "huber", "delta": 0.3}])
@pytest.mark.parametrize("output", ACTIVATIONS)
def test_every_activation_as_output_layer(output, loss):
    check_case("tanh", output, loss, 2, 5)


PAIRS = [
    # (hidden, output, loss, labels)
    ("sigmoid", "sigmoid", "bce", "onehot"),
    ("relu", "sigmoid", "bce", "onehot"),
    ("tanh", "softmax", "cross_entropy", "onehot"),
    ("tanh", "softmax", "cross_entropy", "int"),
    ("relu", "softmax", "cross_entropy", "int"),
    ("gelu", "softmax", "cross_entropy", "onehot"),
    ("identity", "identity", "mse", "onehot"),
    ("leaky_relu", "identity", "mae", "onehot"),
    ("elu", "identity", "huber", "onehot"),
    ("silu", "identity", {"name": "huber", "delta": 0.2}, "onehot"),
    ("softplus", "identity", "hinge", "onehot"),
    ("relu", "tanh", "hinge", "onehot"),
]


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("hidden_layers", [1, 2, 3])
@pytest.mark.parametrize("hidden,output,loss,labels", PAIRS, ids=lambda v: v if isinstance(v, str) else v.get("name"))
def test_activation_loss_pairs(hidden, output, loss, labels, hidden_layers, batch):
    check_case(hidden, output, loss, hidden_layers, batch, labels)


def test_parametrised_activations_use_their_hyperparameters():
    """alpha must reach both the forward and the backward pass."""
    for spec in ({"name": "leaky_relu", "alpha": 0.3}, {"name": "elu", "alpha": 0.5}):
        check_case(spec, "identity", "mse", 2, 4)


def test_huber_linear_and_quadratic_regions_both_checked():
    """With a small delta most residuals are in the linear region, with a large one all are quadratic."""
    rng = np.random.default_rng(0)
    y_hat, y = rng.normal(size=(50, 1)), rng.normal(size=(50, 1))
    d = np.abs(y_hat - y)
    assert (d > 0.2).any() and (d < 0.2).any()
    check_case("tanh", "identity", {"name": "huber", "delta": 0.2}, 1, 8)
    check_case("tanh", "identity", {"name": "huber", "delta": 50.0}, 1, 8)


def test_rel_error_detects_a_wrong_gradient():
    """The yardstick itself can fail: a gradient off by 1e-4 relative is rejected."""
    a = np.array([0.5, -0.2, 1e-3])
    assert rel_error(a, a) == 0.0
    assert rel_error(a * (1 + 1e-4), a) > MAX_REL_ERROR
    assert rel_error(np.zeros(3), np.full(3, 3e-12)) < MAX_REL_ERROR  # round-off around an exact zero
    assert rel_error(np.zeros(3), np.full(3, 1e-9)) > MAX_REL_ERROR  # a small gradient that was missed
