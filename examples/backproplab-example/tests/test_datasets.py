"""The spirals data set: its geometry, its options, and the framework loading it by name."""

import numpy as np
import pytest

import backproplab
from backproplab.components.registry import Source

import backproplab_example
from backproplab_example import spirals


def test_two_arms_point_symmetric_and_seeded():
    clean = spirals(n_points=50, noise=0.0)
    assert clean.X.shape == (100, 2) and np.bincount(clean.y).tolist() == [50, 50]
    np.testing.assert_allclose(clean.X[:50], -clean.X[50:])  # arm b is arm a turned half a circle
    assert np.abs(clean.X).max() <= 1.0
    a, b, c = spirals(seed=1), spirals(seed=1), spirals(seed=2)
    assert np.array_equal(a.X, b.X) and not np.array_equal(a.X, c.X)


@pytest.mark.parametrize("bad, message", [({"n_points": 1}, "n_points=1"), ({"n_points": 2**31}, "n_points=2147483648"), ({"turns": 0}, "turns=0"), ({"noise": -1}, "noise=-1")])
def test_bad_options_are_one_line_value_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        spirals(**bad)


def test_the_framework_loads_it_by_name():
    from backproplab.run.data import load_dataset

    source = Source("example", "backproplab-example", "test")
    plugin_set = backproplab.load_plugins(extra=[(backproplab_example, source)], entry_points=False)
    assert plugin_set.plugins[0].components["dataset"] == ["spirals"]
    ds = load_dataset({"name": "spirals", "n_points": 40}, plugin_set.registry)
    # the @data_defaults: a 20% stratified split, standardised with the training statistics
    assert (ds.n_train, ds.n_val, ds.task, ds.classes) == (64, 16, "binary", ["arm_a", "arm_b"])
    np.testing.assert_allclose(ds.X_train.mean(axis=0), 0, atol=1e-12)
    assert ds.feature_names == ["u", "v"]
