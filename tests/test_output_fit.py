"""A loss and an output activation that do not fit are refused before any work starts.

Losses declare the output activations they are meant to follow (``output_activations``); the
check is generic, so a third-party loss can declare its own and one that declares nothing is
not checked.
"""

from __future__ import annotations

import numpy as np
import pytest

import backproplab as bp
from backproplab.errors import ConfigError
from backproplab.components.registry import Registry, Source
from backproplab.numerics.trainer import Trainer
from backproplab.components.pairing import check_output_activation

X = np.array([[7.0, 8.0, 10.0], [1.0, 2.0, 3.0]])
Y = [1, 0]


def net(output, width=1):
    return bp.build_network([3, 4, width], "sigmoid", output, seed=0)


@pytest.mark.parametrize(
    "output,width,loss,message",
    [
        ("sigmoid", 2, "cross_entropy",
         "loss 'cross_entropy' expects a softmax output (got 'sigmoid'); use output_activation='softmax' or loss='bce'"),
        ("sigmoid", 1, "hinge",
         "loss 'hinge' expects an identity or tanh output (got 'sigmoid'); "
         "use output_activation='identity', output_activation='tanh' or loss='bce'"),
        ("relu", 1, "bce",
         "loss 'bce' expects a sigmoid or softmax output (got 'relu'); "
         "use output_activation='sigmoid' or output_activation='softmax'"),
        ("identity", 3, "cross_entropy",
         "loss 'cross_entropy' expects a softmax output (got 'identity'); use output_activation='softmax' or loss='hinge'"),
        ("softmax", 2, "hinge",
         "loss 'hinge' expects an identity or tanh output (got 'softmax'); "
         "use output_activation='identity', output_activation='tanh', loss='bce' or loss='cross_entropy'"),
    ],
)
def test_build_trainer_refuses_a_loss_that_does_not_fit_the_output(output, width, loss, message):
    network = net(output, width)
    before = {k: v.copy() for k, v in network.params.items()}
    with pytest.raises(ConfigError) as info:
        bp.build_trainer(network, loss, "sgd")
    assert str(info.value) == message
    for k, v in before.items():
        np.testing.assert_array_equal(network.params[k], v)


@pytest.mark.parametrize(
    "output,width,loss",
    [
        ("sigmoid", 1, "bce"),
        ("logistic", 1, "binary_cross_entropy"),  # aliases are the same registered components
        ("softmax", 2, "bce"),
        ("softmax", 2, "cross_entropy"),
        ("identity", 1, "hinge"),
        ("linear", 1, "hinge"),
        ("tanh", 1, "hinge"),
        ("relu", 1, "mse"),  # regression losses declare nothing: any output fits
        ("sigmoid", 1, "mae"),
        ("softplus", 1, {"name": "huber", "delta": 0.5}),
    ],
)
def test_pairs_that_fit_train(output, width, loss):
    trainer = bp.build_trainer(net(output, width), loss, {"name": "sgd", "lr": 0.1}, batch_size=2, epochs=2)
    history = trainer.fit(X, Y if width == 1 else np.eye(width)[Y])
    assert len(history.losses) == 2 and all(np.isfinite(history.losses))


def test_the_trainer_itself_consults_no_plugins():
    # Pairing a loss with an output activation is the component system's check (build_trainer,
    # a configured run); the numerics hold objects and never look a name up.
    registry = bp.get_registry()
    network = net("sigmoid", 2)
    trainer = Trainer(network, registry.create("loss", "mse"), registry.create("optimizer", "sgd"), batch_size=2, epochs=1)
    assert len(trainer.fit(X, np.eye(2)[Y]).losses) == 1  # one batch of both examples
    with pytest.raises(ConfigError, match=r"^loss 'cross_entropy' expects a softmax output \(got 'sigmoid'\)"):
        bp.build_trainer(network, "cross_entropy")


def test_the_loss_is_named_as_the_user_typed_it():
    # The network holds activation objects, so an aliased activation is named by its first name.
    with pytest.raises(ConfigError, match=r"^loss 'binary_cross_entropy' expects a sigmoid or softmax output \(got 'identity'\)"):
        bp.build_trainer(bp.build_network([3, 1], "linear"), "binary_cross_entropy")


# --- third-party losses and activations ------------------------------------------------------


class PlainLoss:
    """A loss that declares nothing: never checked."""

    def value(self, y_hat, y):
        return float(np.mean((y_hat - y) ** 2))

    def grad(self, y_hat, y):
        return 2.0 * (y_hat - y) / y_hat.size


class NeedsSigmoid(PlainLoss):
    output_activations = ("sigmoid",)


class NeedsSomethingNotInstalled(PlainLoss):
    output_activations = ("sparsemax",)


class Odd:
    """An activation no plugin registered: never checked."""

    def forward(self, z):
        return z.copy()

    def backward(self, z, a, grad_a):
        return grad_a.copy()


def registry_with(**losses):
    """The built-in activations and three built-in losses, plus ``losses`` as a third party's."""
    builtin = bp.get_registry()
    registry = Registry()
    source = Source("test", "test-dist", "0")
    for name in builtin.names("activation"):
        registry.add("activation", name, builtin.get("activation", name).factory, source)
    for name in ("bce", "cross_entropy", "mse"):
        registry.add("loss", name, builtin.get("loss", name).factory, source)
    for name, factory in losses.items():
        registry.add("loss", name, factory, source)
    return registry


def test_a_loss_without_the_declaration_is_not_checked():
    registry = registry_with(plain=PlainLoss)
    for output in ("sigmoid", "relu", "softmax"):
        check_output_activation(PlainLoss(), registry.create("activation", output), registry)


def test_a_third_party_declaration_is_checked_and_offered_as_an_alternative():
    registry = registry_with(needs_sigmoid=NeedsSigmoid)
    check_output_activation(NeedsSigmoid(), registry.create("activation", "logistic"), registry)
    with pytest.raises(ConfigError) as info:
        check_output_activation(NeedsSigmoid(), registry.create("activation", "tanh"), registry)
    assert str(info.value) == "loss 'needs_sigmoid' expects a sigmoid output (got 'tanh'); use output_activation='sigmoid'"
    # bce after tanh: the third-party loss that declares sigmoid is offered beside bce's own advice.
    with pytest.raises(ConfigError) as info:
        check_output_activation(registry.create("loss", "bce"), registry.create("activation", "tanh"), registry)
    assert str(info.value).endswith("use output_activation='sigmoid' or output_activation='softmax'")
    with pytest.raises(ConfigError) as info:
        check_output_activation(registry.create("loss", "cross_entropy"), "sigmoid", registry, cli=True)
    assert str(info.value) == (
        "loss=cross_entropy expects a softmax output (got model.output_activation=sigmoid); "
        "use model.output_activation=softmax, loss=bce or loss=needs_sigmoid"
    )


def test_declared_names_that_are_not_installed_and_unregistered_activations_are_not_checked():
    registry = registry_with(needs_sparsemax=NeedsSomethingNotInstalled)
    check_output_activation(NeedsSomethingNotInstalled(), registry.create("activation", "relu"), registry)
    check_output_activation(registry.create("loss", "cross_entropy"), Odd(), registry)
    network = bp.build_network([3, 4, 2], "sigmoid", Odd(), seed=0)
    bp.build_trainer(network, "cross_entropy", "sgd")  # nothing to say about an unknown activation
