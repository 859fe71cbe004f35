"""Bad input is refused with one clear line (a ConfigError, which is a ValueError) that names
the offending value and what would be valid, before any computation starts."""

from __future__ import annotations

import numpy as np
import pytest

import backproplab as bp
from backproplab.errors import ConfigError, UnknownComponentError


class Spy(bp.Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, trainer):
        self.calls.append("begin")

    def on_iteration(self, step):
        self.calls.append("iteration")


def setup(loss="mse", n_out=1, sizes=(3, 4), **trainer_options):
    output = {"bce": "sigmoid", "cross_entropy": "softmax"}.get(loss, "identity")
    net = bp.build_network([*sizes, n_out], "tanh", output, seed=0)
    spy = Spy()
    trainer = bp.build_trainer(net, loss, {"name": "adam", "lr": 0.01}, callbacks=[spy], **trainer_options)
    return net, trainer, spy


def assert_refused(trainer, spy, X, y, match, **fit_options):
    before = {k: v.copy() for k, v in trainer.network.params.items()}
    with pytest.raises(ConfigError, match=match) as info:
        trainer.fit(X, y, **fit_options)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)
    # Nothing ran: no callback, no optimizer state, no parameter moved, no iteration counted.
    assert spy.calls == []
    assert trainer.optimizer.m == {} and trainer.iteration == 0
    for k, v in before.items():
        np.testing.assert_array_equal(trainer.network.params[k], v)
    return str(info.value)


GOOD_X = np.random.default_rng(0).normal(size=(6, 3))
GOOD_Y = np.linspace(-1, 1, 6)


def test_wrong_number_of_features():
    _, trainer, spy = setup()
    assert_refused(trainer, spy, GOOD_X[:, :2], GOOD_Y, r"^X has 2 features per example but the network expects 3$")


@pytest.mark.parametrize("bad,shown", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite_inputs(bad, shown):
    _, trainer, spy = setup()
    X = GOOD_X.copy()
    X[4, 2] = bad
    assert_refused(trainer, spy, X, GOOD_Y, rf"X contains a non-finite value {shown} at X\[4, 2\] \(0-based\); inputs must be finite numbers")


def test_non_finite_validation_inputs_are_caught_before_training():
    _, trainer, spy = setup()
    X_val = GOOD_X[:2].copy()
    X_val[1, 0] = np.nan
    assert_refused(trainer, spy, GOOD_X, GOOD_Y, r"X_val contains a non-finite value nan at X_val\[1, 0\] \(0-based\)",
                   validation_data=(X_val, GOOD_Y[:2]))


def test_non_finite_targets():
    _, trainer, spy = setup()
    y = GOOD_Y.copy()
    y[0] = np.nan
    assert_refused(trainer, spy, GOOD_X, y, "non-finite")


@pytest.mark.parametrize(
    "loss,n_out,y,match",
    [
        ("bce", 1, [0, 1, 2, 0, 1, 0], r"bce targets must lie in \[0, 1\], got 2\.0"),
        ("cross_entropy", 3, [0, 1, 5, 2, 1, 0], r"cross_entropy label 5 is outside the classes 0\.\.2 of a 3-output network"),
        ("cross_entropy", 3, [0, 1, -1, 2, 1, 0], r"cross_entropy label -1 is outside the classes 0\.\.2"),
        ("cross_entropy", 3, [0, 1, 1.5, 2, 1, 0], r"cross_entropy label 1\.5 is outside the classes 0\.\.2"),
        ("hinge", 1, [1, -1, 3, 1, -1, 1], r"hinge targets must be -1/\+1 \(or 0/1\), got 3\.0"),
    ],
)
def test_labels_outside_the_losss_domain(loss, n_out, y, match):
    _, trainer, spy = setup(loss, n_out)
    assert_refused(trainer, spy, GOOD_X, y, match)


def test_validation_labels_are_checked_too():
    _, trainer, spy = setup("bce")
    assert_refused(trainer, spy, GOOD_X, [0, 1] * 3, r"got 2\.0", validation_data=(GOOD_X[:2], [2, 0]))


def test_mismatched_lengths():
    _, trainer, spy = setup()
    assert_refused(trainer, spy, GOOD_X, GOOD_Y[:5], r"X has 6 examples but y has 5")
    assert_refused(trainer, spy, GOOD_X, GOOD_Y, r"X_val has 2 examples but y_val has 3",
                   validation_data=(GOOD_X[:2], GOOD_Y[:3]))


@pytest.mark.parametrize(
    "X,match",
    [
        ([["a", "b", "c"]], r"X must be numeric, got list"),
        (np.zeros((2, 3, 1)), r"X must be a 2-D array \(examples, features\), got shape \(2, 3, 1\)"),
        (np.zeros((0, 3)), r"X has no examples \(shape \(0, 3\)\)"),
    ],
)
def test_malformed_inputs(X, match):
    _, trainer, spy = setup()
    assert_refused(trainer, spy, X, [], match)


@pytest.mark.parametrize("batch_size", [0, -5, 2.5, True, "8"])
def test_batch_size_must_be_a_positive_integer(batch_size):
    net = bp.build_network([3, 1])
    with pytest.raises(ConfigError, match=rf"^batch_size must be a positive integer, got {batch_size!r}$"):
        bp.build_trainer(net, "mse", "sgd", batch_size=batch_size)


@pytest.mark.parametrize("epochs", [0, -1])
def test_epochs_must_be_a_positive_integer(epochs):
    with pytest.raises(ConfigError, match=rf"epochs must be a positive integer, got {epochs}"):
        bp.build_trainer(bp.build_network([3, 1]), "mse", "sgd", epochs=epochs)


@pytest.mark.parametrize("seed", [-1, 1.5, "7"])
def test_seed_must_be_a_non_negative_integer_or_none(seed):
    with pytest.raises(ConfigError, match=rf"^seed must be a non-negative integer or None, got {seed!r}$"):
        bp.build_trainer(bp.build_network([3, 1]), "mse", "sgd", seed=seed)
    bp.build_trainer(bp.build_network([3, 1]), "mse", "sgd", seed=None)


@pytest.mark.parametrize("sizes,bad", [([3, 0, 1], 0), ([3, -4, 1], -4), ([3, 4, 0], 0), ([0, 4, 1], 0), ([3, 2.5, 1], 2.5)])
def test_layer_width_must_be_a_positive_integer(sizes, bad):
    with pytest.raises(ConfigError, match=rf"layer width \(layer \d, sizes .*\) must be a positive integer, got {bad}"):
        bp.build_network(sizes)


def test_a_network_needs_an_input_and_an_output():
    with pytest.raises(ConfigError, match=r"sizes needs at least an input and an output width, got \[3\]"):
        bp.build_network([3])


@pytest.mark.parametrize(
    "build,kind,name,hint",
    [
        (lambda: bp.build_network([3, 1], "sigmoidd"), "activation", "sigmoidd", "sigmoid"),
        (lambda: bp.build_network([3, 2, 1], "relu", "softmaxx"), "activation", "softmaxx", "softmax"),
        (lambda: bp.build_network([3, 1], initializer="he_norma"), "initializer", "he_norma", "he_normal"),
        (lambda: bp.build_trainer(bp.build_network([3, 1]), "crossentropy"), "loss", "crossentropy", "cross_entropy"),
        (lambda: bp.build_trainer(bp.build_network([3, 1]), "mse", "adm"), "optimizer", "adm", "adam"),
    ],
)
def test_unknown_names_list_the_available_ones_and_the_closest(build, kind, name, hint):
    with pytest.raises(UnknownComponentError) as info:
        build()
    message = str(info.value)
    available = ", ".join(bp.get_registry().names(kind))
    assert message == f"unknown {kind} {name!r}; available: {available}; did you mean {hint!r}?"


def test_an_unrelated_unknown_name_lists_names_without_a_guess():
    with pytest.raises(UnknownComponentError, match=r"unknown loss 'zzz'; available: bce, .*hinge.*[^?]$"):
        bp.build_trainer(bp.build_network([3, 1]), "zzz")


def test_unknown_hyperparameter_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"^optimizer 'sgd' has no hyperparameter 'lrate'; valid: lr, momentum, nesterov, weight_decay$"):
        bp.build_trainer(bp.build_network([3, 1]), "mse", {"name": "sgd", "lrate": 0.1})
    with pytest.raises(ConfigError, match=r"activation 'relu' has no hyperparameter 'alpha'; valid: \(none\)"):
        bp.build_network([3, 1], {"name": "relu", "alpha": 0.1})


@pytest.mark.parametrize("lr", [0, -0.01, float("nan")])
def test_learning_rate_must_be_positive(lr):
    with pytest.raises(ConfigError, match=rf"optimizer 'adam': lr must be a finite number > 0, got {lr!r}"):
        bp.build_trainer(bp.build_network([3, 1]), "mse", {"name": "adam", "lr": lr})


def test_a_spec_without_a_name():
    with pytest.raises(ConfigError, match=r"optimizer spec \{'lr': 0\.1\} has no 'name'; available: adagrad, adam"):
        bp.build_trainer(bp.build_network([3, 1]), "mse", {"lr": 0.1})
