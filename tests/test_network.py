"""The dense network: layout (W<l> is (n_l, n_{l-1}), z = X @ W.T + b), the forward cache, the
order and shapes of gradients, dtype handling, and parameter updates through ``params``."""

from __future__ import annotations

import numpy as np
import pytest

import backproplab as bp
from backproplab.errors import ConfigError

REGISTRY = bp.get_registry()
# Built-ins only: an installed third-party plugin is checked by its own tests (and the kit).
ACTIVATIONS = [n for n in REGISTRY.names("activation") if REGISTRY.get("activation", n).source.distribution == "backproplab"]


def test_layout_and_forward_follow_the_articles_notation():
    net = bp.build_network([3, 5, 4, 2], "tanh", "sigmoid", seed=0)
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert [net.params[k].shape for k in net.params] == [(5, 3), (5,), (4, 5), (4,), (2, 4), (2,)]
    assert net.n_parameters == 15 + 5 + 20 + 4 + 8 + 2
    assert (net.n_inputs, net.n_outputs, net.n_layers) == (3, 2, 3)
    X = np.random.default_rng(0).normal(size=(6, 3))
    for name in ("b1", "b2", "b3"):  # non-zero biases, so a missing "+ b" cannot pass
        net.params[name][...] = np.linspace(-0.5, 0.5, net.params[name].size)
    out = net.forward(X)
    a = X
    for l, f in ((1, np.tanh), (2, np.tanh), (3, lambda z: 1 / (1 + np.exp(-z)))):
        a = f(a @ net.params[f"W{l}"].T + net.params[f"b{l}"])
    np.testing.assert_allclose(out, a, rtol=1e-14)
    zs, acts = net.cache
    assert len(zs) == 3 and len(acts) == 4
    assert acts[0] is X and acts[-1] is out
    np.testing.assert_allclose(zs[0], X @ net.params["W1"].T + net.params["b1"], rtol=1e-14)


def test_backward_returns_every_gradient_in_parameter_order():
    net = bp.build_network([3, 4, 2], "relu", "identity", seed=1)
    X = np.random.default_rng(1).normal(size=(5, 3))
    y_hat = net.forward(X)
    g = np.ones_like(y_hat)
    grads = net.backward(g)
    assert list(grads) == list(net.params)
    for k in grads:
        assert grads[k].shape == net.params[k].shape
        assert not np.shares_memory(grads[k], net.params[k])
    # Output layer by hand: dE/dW2 = g^T a1, dE/db2 = sum over the batch.
    _, acts = net.cache
    np.testing.assert_allclose(grads["W2"], g.T @ acts[1], rtol=1e-14)
    np.testing.assert_allclose(grads["b2"], g.sum(axis=0), rtol=1e-14)


def test_backward_uses_the_last_forward_batch():
    net = bp.build_network([2, 3, 1], "sigmoid", seed=2)
    rng = np.random.default_rng(2)
    A, B = rng.normal(size=(4, 2)), rng.normal(size=(3, 2))
    net.forward(A)
    grads_b_expected = (net.forward(B), net.backward(np.ones((3, 1))))[1]
    net.forward(A)
    net.forward(B)
    for k, v in net.backward(np.ones((3, 1))).items():
        np.testing.assert_array_equal(v, grads_b_expected[k])


def test_backward_before_forward_is_an_error():
    net = bp.build_network([2, 1], "sigmoid")
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(np.ones((1, 1)))


def test_forward_and_backward_leave_inputs_alone():
    net = bp.build_network([3, 4, 2], "gelu", "softmax", seed=3)
    X = np.random.default_rng(3).normal(size=(5, 3))
    X0 = X.copy()
    out = net.forward(X)
    g = np.random.default_rng(4).normal(size=out.shape)
    g0 = g.copy()
    net.backward(g)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(g, g0)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_float32_end_to_end(name):
    """A float32 network computes in float32: no silent upcast in outputs, cache or gradients."""
    net = bp.build_network([3, 4, 2], name, "identity", seed=0, dtype="float32")
    assert all(p.dtype == np.float32 for p in net.params.values())
    X = net.check_input(np.random.default_rng(0).normal(size=(5, 3)))  # float64 in, float32 out
    assert X.dtype == np.float32
    out = net.forward(X)
    assert out.dtype == np.float32
    zs, acts = net.cache
    assert all(z.dtype == np.float32 for z in zs) and all(a.dtype == np.float32 for a in acts)
    grads = net.backward(np.ones_like(out))
    assert all(g.dtype == np.float32 for g in grads.values())


def test_float64_is_the_default_and_other_dtypes_are_refused():
    assert bp.build_network([2, 1]).dtype == np.float64
    with pytest.raises(ConfigError, match=r"dtype 'float16' is not supported; valid: float64, float32"):
        bp.build_network([2, 1], dtype="float16")
    with pytest.raises(ConfigError, match=r"dtype 'double-ish' is not supported"):
        bp.build_network([2, 1], dtype="double-ish")


def test_params_are_the_live_arrays():
    """Optimizers update params in place; the next forward pass must see it."""
    net = bp.build_network([2, 1], "identity", initializer="zeros")
    X = np.array([[1.0, 2.0]])
    assert net.forward(X)[0, 0] == 0.0
    net.params["W1"] += np.array([[1.0, 1.0]])
    net.params["b1"] += 0.5
    assert net.forward(X)[0, 0] == 3.5


def test_replacing_a_params_entry_is_seen_by_the_next_pass():
    net = bp.build_network([2, 1], "identity", initializer="zeros")
    net.params["W1"] = np.array([[2.0, 0.0]])
    assert net.forward(np.array([[1.5, 9.0]]))[0, 0] == 3.0


def test_set_params_copies_into_the_existing_arrays():
    net = bp.build_network([2, 2], "identity")
    w = net.params["W1"]
    net.set_params({"W1": [[1, 2], [3, 4]], "b1": [0.5, -0.5]})
    assert net.params["W1"] is w
    np.testing.assert_array_equal(w, [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ConfigError, match=r"unknown parameter 'W9'; valid: W1, b1"):
        net.set_params({"W9": [[0]]})
    with pytest.raises(ConfigError, match=r"W1 needs shape \(2, 2\), got \(3,\)"):
        net.set_params({"W1": [1, 2, 3]})


def test_per_layer_activations_and_a_separate_output_activation():
    net = bp.build_network([2, 3, 3, 1], ["relu", {"name": "leaky_relu", "alpha": 0.2}], "sigmoid")
    kinds = [type(a).__name__ for a in net.activations]
    assert kinds == ["ReLU", "LeakyReLU", "Sigmoid"]
    assert net.activations[1].alpha == 0.2
    # One instance per layer, so a stateful third-party activation is never shared.
    same = bp.build_network([2, 3, 3, 1], "tanh")
    assert len({id(a) for a in same.activations}) == 3
    with pytest.raises(ConfigError, match="2 hidden layers need 2 activations, got 1"):
        bp.build_network([2, 3, 3, 1], ["relu"], "sigmoid")
    with pytest.raises(ConfigError, match="output_activation is required"):
        bp.build_network([2, 3, 1], ["relu"])


def test_predict_checks_its_input_and_one_example_may_be_1d():
    net = bp.build_network([3, 2, 1], "sigmoid", seed=0)
    np.testing.assert_array_equal(net.predict([7, 8, 10]), net.predict([[7, 8, 10]]))
    with pytest.raises(ConfigError, match="2 features per example but the network expects 3"):
        net.predict([[1, 2]])


def test_repr_names_the_layers():
    assert repr(bp.build_network([3, 4, 1], "relu", "sigmoid", dtype="float32")) == (
        "Network(sizes=[3, 4, 1], activations=[ReLU, Sigmoid], dtype=float32)"
    )


def test_no_hidden_layer_is_logistic_regression():
    net = bp.build_network([3, 1], "sigmoid", initializer="zeros")
    assert list(net.params) == ["W1", "b1"]
    np.testing.assert_array_equal(net.forward(np.ones((2, 3))), np.full((2, 1), 0.5))
