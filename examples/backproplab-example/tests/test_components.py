"""Known answers for Mish and Lion, and the plugin's registration through backproplab's loader."""

import numpy as np
import pytest

import backproplab
from backproplab.components.registry import Source

import backproplab_example
from backproplab_example import Lion, Mish


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
    assert isinstance(plugin_set.registry.create("optimizer", "lion", lr=0.01), Lion)
    assert plugin_set.registry.source_of("activation", "mish") == source
