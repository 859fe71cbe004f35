"""Known answers for Mish and Lion, and the plugin's registration through backproplab's loader."""

import numpy as np
import pytest

import backproplab
from backproplab.components.registry import Source

import backproplab_example
from backproplab_example import InverseTimeDecay, Lion, Mish, StopAtLoss


def test_mish_known_values():
    z = np.array([[-1.0, 0.0, 1.0, 20.0]])
    # z * tanh(log(1 + e^z)), evaluated independently of the implementation.
    expected = z * np.tanh(np.log1p(np.exp(z)))
    assert np.allclose(Mish().forward(z), expected, rtol=1e-12)
    assert Mish().forward(np.array([[1.0]]))[0, 0] == pytest.approx(0.8650983882673103, rel=1e-12)


def test_lion_follows_algorithm_2():
    opt = Lion(lr=0.1, beta1=0.9, beta2=0.99, weight_decay=0.5)
    theta = np.array([1.0, -2.0])
    params = {"w": theta}
    m = np.zeros(2)
    expected = theta.copy()
    for g in (np.array([0.3, -0.1]), np.array([-1.0, 0.2]), np.array([0.05, 0.05])):
        c = 0.9 * m + 0.1 * g
        expected = expected - 0.1 * (np.sign(c) + 0.5 * expected)
        m = 0.99 * m + 0.01 * g
        opt.step(params, {"w": g})
    assert params["w"] is theta
    assert np.allclose(theta, expected, rtol=1e-15)


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"beta1": 1.0}, {"weight_decay": -1.0}])
def test_lion_rejects_bad_hyperparameters(bad):
    with pytest.raises(ValueError, match=f"lion {next(iter(bad))} must be"):
        Lion(**bad)


def test_registers_through_the_plugin_manager():
    source = Source("example", "backproplab-example", "test")
    plugin_set = backproplab.load_plugins(extra=[(backproplab_example, source)], entry_points=False)
    (info,) = plugin_set.plugins
    assert info.error is None
    assert info.components["activation"] == ["mish"] and info.components["optimizer"] == ["lion"]
    assert info.components["dataset"] == ["spirals"]
    assert info.components["schedule"] == ["inverse_time"] and info.components["callback"] == ["stop_at_loss"]
    assert isinstance(plugin_set.registry.create("optimizer", "lion", lr=0.01), Lion)
    assert plugin_set.registry.source_of("activation", "mish") == source


def test_inverse_time_decay_known_rates():
    schedule = InverseTimeDecay(decay=0.5)
    rates = [schedule.initial_lr(0.3)]
    for epoch in range(3):
        rates.append(schedule.next_lr(epoch, rates[-1], {}))
    assert rates == pytest.approx([0.3, 0.2, 0.15, 0.12], rel=1e-15)


def test_schedule_and_callback_in_a_run_through_the_python_api():
    network = backproplab.build_network([2, 4, 1], activation="tanh", output_activation="sigmoid", seed=0)
    trainer = backproplab.build_trainer(
        network,
        optimizer={"name": "sgd", "lr": 0.5},
        schedule={"name": "inverse_time", "decay": 1.0},
        callbacks=[{"name": "stop_at_loss", "target": 0.5}],
        batch_size=4,
        epochs=50,
    )
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    history = trainer.fit(X, np.array([0.0, 1.0, 1.0, 1.0]))
    assert [e.lr for e in history.epochs[:3]] == pytest.approx([0.5, 0.25, 0.5 / 3])
    assert len(history.epochs) < 50 and history.epochs[-1].train_loss <= 0.5
    assert history.stop_reason.startswith(f"stopped at epoch {len(history.epochs)}: train/loss")
    assert all(e.train_loss > 0.5 for e in history.epochs[:-1])


@pytest.mark.parametrize("bad", [{"target": -1.0}, {"monitor": "loss"}])
def test_stop_at_loss_rejects_bad_hyperparameters(bad):
    with pytest.raises(ValueError, match="stop_at_loss"):
        StopAtLoss(**bad)
