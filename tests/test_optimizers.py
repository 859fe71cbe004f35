"""Optimizers: known answers from the published update equations, written out independently here
step by step, and a lower loss on a convex problem when driven by the real Trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest

import backproplab as bp
from backproplab.errors import ConfigError

REGISTRY = bp.get_registry()

# Two parameters with different shapes and different gradients, so state shared between them
# (or keyed by anything other than the parameter name) gives a wrong answer.
THETA0 = {"W1": np.array([[0.5, -1.0], [2.0, 0.25]]), "b1": np.array([0.1, -0.3])}
GRADS = [
    {"W1": np.array([[0.2, -0.4], [1.0, 0.0]]), "b1": np.array([-0.5, 0.05])},
    {"W1": np.array([[-0.1, 0.3], [0.6, 0.2]]), "b1": np.array([0.25, -0.15])},
    {"W1": np.array([[0.05, 0.1], [-0.2, 0.4]]), "b1": np.array([0.0, 0.3])},
    {"W1": np.array([[0.3, -0.2], [0.1, -0.5]]), "b1": np.array([-0.1, 0.2])},
]


def run(spec) -> list[dict[str, np.ndarray]]:
    """Feed GRADS to the optimizer built from ``spec``; return the parameters after each step."""
    opt = REGISTRY.resolve("optimizer", spec)
    params = {k: v.copy() for k, v in THETA0.items()}
    arrays = dict(params)
    history = []
    for g in GRADS:
        g_copy = {k: v.copy() for k, v in g.items()}
        opt.step(params, g_copy)
        for k in g:  # gradients are read, never written
            np.testing.assert_array_equal(g_copy[k], g[k])
        history.append({k: v.copy() for k, v in params.items()})
    for k in params:  # updated in place: references held elsewhere (the network) stay valid
        assert params[k] is arrays[k]
    return history


def expected(update) -> list[dict[str, np.ndarray]]:
    """Apply ``update(name, theta, g, state, t)`` per parameter with its own state dict."""
    theta = {k: v.copy() for k, v in THETA0.items()}
    state = {k: {} for k in THETA0}
    out = []
    for t, g in enumerate(GRADS, start=1):
        for k in theta:
            theta[k] = update(theta[k], g[k], state[k], t)
        out.append({k: v.copy() for k, v in theta.items()})
    return out


def sgd(lr, wd=0.0):
    def update(theta, g, s, t):
        g = g + wd * theta
        return theta - lr * g
    return update


def momentum(lr, mu, nesterov=False):
    # PyTorch's form (Sutskever et al. 2013 rearranged): v_1 = g_1, v_t = mu v_{t-1} + g_t;
    # plain: theta -= lr v_t; Nesterov: theta -= lr (g_t + mu v_t).
    def update(theta, g, s, t):
        s["v"] = g.copy() if t == 1 else mu * s["v"] + g
        step = g + mu * s["v"] if nesterov else s["v"]
        return theta - lr * step
    return update


def rmsprop(lr, rho, eps):
    # Hinton (2012), lecture 6e: E[g^2]_t = rho E[g^2]_{t-1} + (1 - rho) g_t^2, E[g^2]_0 = 0.
    def update(theta, g, s, t):
        s["sq"] = rho * s.get("sq", 0.0) + (1 - rho) * g**2
        return theta - lr * g / (np.sqrt(s["sq"]) + eps)
    return update


def adagrad(lr, eps, initial=0.0):
    # Duchi, Hazan & Singer (2011): G_t = G_{t-1} + g_t^2.
    def update(theta, g, s, t):
        s["G"] = s.get("G", initial) + g**2
        return theta - lr * g / (np.sqrt(s["G"]) + eps)
    return update


def adam(lr, b1, b2, eps, l2=0.0, decoupled=0.0):
    # Kingma & Ba (2015), Algorithm 1; Adam with L2 adds l2 * theta to g; AdamW (Loshchilov &
    # Hutter 2019, Algorithm 2 with schedule multiplier 1) subtracts lr * lambda * theta_{t-1}.
    def update(theta, g, s, t):
        g = g + l2 * theta
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        m_hat = s["m"] / (1 - b1**t)
        v_hat = s["v"] / (1 - b2**t)
        return theta - lr * (m_hat / (np.sqrt(v_hat) + eps) + decoupled * theta)
    return update


CASES = [
    ("sgd", {"name": "sgd", "lr": 0.1}, sgd(0.1)),
    ("sgd_weight_decay", {"name": "sgd", "lr": 0.1, "weight_decay": 0.01}, sgd(0.1, 0.01)),
    ("sgd_momentum", {"name": "sgd", "lr": 0.1, "momentum": 0.9}, momentum(0.1, 0.9)),
    ("sgd_nesterov", {"name": "sgd", "lr": 0.1, "momentum": 0.8, "nesterov": True}, momentum(0.1, 0.8, True)),
    ("rmsprop", {"name": "rmsprop", "lr": 0.01, "rho": 0.9, "eps": 1e-8}, rmsprop(0.01, 0.9, 1e-8)),
    ("adagrad", {"name": "adagrad", "lr": 0.1, "eps": 1e-10}, adagrad(0.1, 1e-10)),
    ("adagrad_initial", {"name": "adagrad", "lr": 0.1, "initial_accumulator": 0.5}, adagrad(0.1, 1e-10, 0.5)),
    ("adam", {"name": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, adam(0.01, 0.9, 0.999, 1e-8)),
    ("adam_l2", {"name": "adam", "lr": 0.01, "weight_decay": 0.1}, adam(0.01, 0.9, 0.999, 1e-8, l2=0.1)),
    ("adamw", {"name": "adamw", "lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.1},
     adam(0.01, 0.8, 0.99, 1e-8, decoupled=0.1)),
]


@pytest.mark.parametrize("spec,update", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_known_answer(spec, update):
    got, want = run(spec), expected(update)
    for t, (g, w) in enumerate(zip(got, want), start=1):
        for k in w:
            np.testing.assert_allclose(g[k], w[k], rtol=1e-13, atol=1e-15, err_msg=f"{spec} step {t} {k}")
    # The sequence really moved the parameters: a no-op optimizer cannot pass.
    assert not np.allclose(got[-1]["W1"], THETA0["W1"])


def test_adam_first_step_is_lr_times_sign():
    """A property of Adam's bias correction that needs no re-derivation: |step 1| = lr (eps aside)."""
    (first, *_) = run({"name": "adam", "lr": 0.01, "eps": 1e-12})
    g = GRADS[0]["b1"]
    np.testing.assert_allclose(first["b1"], THETA0["b1"] - 0.01 * np.sign(g), rtol=1e-9)


def test_default_sgd_is_the_articles_rule():
    opt = REGISTRY.create("optimizer", "sgd", lr=0.5)
    params = {"W1": np.array([1.0, 2.0])}
    opt.step(params, {"W1": np.array([0.2, -0.4])})
    np.testing.assert_array_equal(params["W1"], [1.0 - 0.5 * 0.2, 2.0 + 0.5 * 0.4])


def least_squares(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.01 * rng.normal(size=n)
    return X, y


CONVEX = [
    {"name": "sgd", "lr": 0.05},
    {"name": "sgd", "lr": 0.01, "momentum": 0.9},
    {"name": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True},
    {"name": "rmsprop", "lr": 0.05},
    {"name": "adagrad", "lr": 0.3},
    {"name": "adam", "lr": 0.05},
    {"name": "adamw", "lr": 0.05, "weight_decay": 0.001},
]


@pytest.mark.parametrize("spec", CONVEX, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_lowers_the_loss_on_least_squares(spec):
    X, y = least_squares()
    net = bp.build_network([3, 1], "identity", initializer="zeros")
    trainer = bp.build_trainer(net, "mse", spec, batch_size=16, epochs=30, seed=0)
    before, _ = trainer.evaluate(X, y)
    history = trainer.fit(X, y)
    after, _ = trainer.evaluate(X, y)
    assert after < 0.05 * before, (before, after)
    assert history.losses[-1] < history.losses[0]


BUILTIN_OPTIMIZERS = [n for n in REGISTRY.names("optimizer") if REGISTRY.get("optimizer", n).source.distribution == "backproplab"]


@pytest.mark.parametrize("name", BUILTIN_OPTIMIZERS)
def test_every_optimizer_lowers_a_quadratic_and_keeps_float32(name):
    """Enumerated from the registry, so a new built-in optimizer is covered with its defaults."""
    opt = REGISTRY.create("optimizer", name)
    target = {"W1": np.array([[1.0, -2.0]], np.float32), "b1": np.array([3.0], np.float32)}
    params = {k: np.zeros_like(v) for k, v in target.items()}

    def loss():
        return sum(float(np.sum((params[k] - target[k]) ** 2)) for k in params)

    start = loss()
    for _ in range(200):
        opt.step(params, {k: 2 * (params[k] - target[k]) for k in params})
        assert all(p.dtype == np.float32 for p in params.values())
    assert loss() < start


@pytest.mark.parametrize(
    "name,hyper,match",
    [
        ("sgd", {"lr": 0}, r"lr must be a finite number > 0, got 0"),
        ("sgd", {"lr": -0.1}, r"got -0\.1"),
        ("sgd", {"lr": math.inf}, r"got inf"),
        ("sgd", {"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1\.0"),
        ("sgd", {"nesterov": True}, "nesterov=true needs momentum > 0"),
        ("adam", {"beta1": 1.0}, r"beta1 must be in \[0, 1\)"),
        ("adam", {"lr": "fast"}, r"lr must be a finite number > 0, got 'fast'"),
        ("rmsprop", {"eps": 0.0}, "eps"),
        ("adagrad", {"initial_accumulator": -1.0}, "initial_accumulator"),
        ("adamw", {"weight_decay": -0.01}, "weight_decay"),
    ],
)
def test_bad_hyperparameters(name, hyper, match):
    with pytest.raises(ConfigError, match=match):
        REGISTRY.create("optimizer", name, **hyper)
