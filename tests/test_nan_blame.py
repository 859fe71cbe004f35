"""A non-finite loss in training is blamed on what caused it: a part that turned finite inputs
into NaN is at fault itself, wherever in the run it first does so (the up-front probe sees one
batch only); a run that overflows is told to lower its learning rate."""

from __future__ import annotations

import types

import numpy as np
import pytest

import backproplab as bp
from backproplab.components.registry import Source
from backproplab.errors import NonFiniteLossError
from backproplab.run import job


class LateNaN:
    """tanh for its first 30 batches, then the sqrt of a negative (NaN) for positive inputs."""

    def __init__(self):
        self.calls = 0

    def forward(self, z):
        self.calls += 1
        if self.calls <= 30:
            return np.tanh(z)
        with np.errstate(invalid="ignore"):
            return np.where(z > 0, np.sqrt(-z), np.tanh(z))

    def backward(self, z, a, grad):
        return grad * (1.0 - np.tanh(z) ** 2)


class LateNaNLoss:
    """Squared error, until an output passes 0.9: then 0/0."""

    def value(self, y_hat, y):
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(np.mean((y_hat - y) ** 2) if y_hat.max() < 0.9 else np.float64(0.0) / 0.0)

    def grad(self, y_hat, y):
        return 2 * (y_hat - y) / y_hat.size


def registry():
    plugin = types.ModuleType("late_nan_plugin")
    plugin.register_activations = bp.hookimpl(lambda register: register("late_nan", LateNaN))
    plugin.register_losses = bp.hookimpl(lambda register: register("late_nan_mse", LateNaNLoss))
    return bp.load_plugins(extra=[(plugin, Source("late_nan_plugin", "backproplab-late-nan", "1.0"))]).registry


def config(**parts) -> dict:
    cfg = {
        "model": {"hidden": [6], "activation": "tanh", "output_activation": "sigmoid", "output_width": None, "dtype": "float64"},
        "data": {"name": "moons", "n_samples": 200, "noise": 0.1, "batch_size": 16, "shuffle": True, "val_fraction": 0.2, "standardize": True, "seed": 0},
        "loss": {"name": "bce"},
        "optimizer": {"name": "sgd", "lr": 0.5},
        "initializer": {"name": "xavier_uniform"},
        "trainer": {"epochs": 40, "seed": 0, "checkpoint_every_s": 0},
        "logger": {"name": "none"},
    }
    for key, value in parts.items():
        section, name = key.split("__")
        cfg[section][name] = value
    return cfg


def test_an_activation_that_turns_finite_inputs_into_nan_later_in_training_is_blamed():
    with pytest.raises(NonFiniteLossError) as raised:
        job.run(config(model__activation="late_nan"), registry=registry())
    message = str(raised.value)
    assert raised.value.iteration > 0  # past the probe's one batch
    assert "; model.activation=late_nan (activation 'late_nan' from backproplab-late-nan 1.0" in message
    assert "), layer 1, returned NaN for finite inputs" in message
    assert "not the learning rate" in message and "optimizer.lr" not in message


def test_a_loss_that_turns_finite_outputs_into_nan_later_in_training_is_blamed():
    with pytest.raises(NonFiniteLossError) as raised:
        job.run(config(loss__name="late_nan_mse"), registry=registry())
    assert raised.value.iteration > 0
    message = str(raised.value)
    assert "; loss=late_nan_mse (loss 'late_nan_mse' from backproplab-late-nan 1.0" in message
    assert ") returned NaN for finite inputs: the component is at fault, not the learning rate" in message


def test_an_overflowing_run_is_still_told_to_lower_its_learning_rate():
    with pytest.raises(NonFiniteLossError, match=r"try a smaller optimizer.lr") as raised:
        job.run(config(optimizer__lr=1e200, model__activation="relu", loss__name="mse", model__output_activation="identity"))
    assert raised.value.at_fault is None
