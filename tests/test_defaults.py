"""One default per hyperparameter: the config option, its aliases, the Python API and the error
texts agree, and the worked example still comes out of ``backproplab`` with no arguments.

The worked example's lr 0.5 and scale 0.1 are the constructors' defaults (``sgd``, ``legacy_randn``);
its seed 3 is ``trainer.seed``'s default, which ``legacy_randn`` takes as its legacy seed.
"""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import backproplab as bp
from backproplab.hydra_app.compat import version_base
from backproplab.hydra_app.config_store import register_configs
from backproplab.run.job import prepare
from backproplab.hydra_app.config_store import COMPONENT_GROUPS, component_node, yaml_options
from backproplab.errors import ConfigError
from backproplab.run.schema import config_error
from backproplab.components.loading import get_registry

register_configs()  # the generated component and experiment nodes, as the CLI stores them

# Keys a shipped YAML option may set differently from the constructor, and why.
LINKS = {("initializer", "legacy_randn", "seed"): "${trainer.seed}"}


def _compose(*overrides: str):
    with initialize_config_module("backproplab.conf", **version_base()):
        return compose("config", overrides=["logger=none", *overrides])


def test_sgd_and_its_alias_gd_compose_to_the_same_hyperparameters():
    sgd = OmegaConf.to_container(_compose("optimizer=sgd").optimizer)
    gd = OmegaConf.to_container(_compose("optimizer=gd").optimizer)
    assert sgd.pop("name") == "sgd" and gd.pop("name") == "gd"
    assert sgd == gd == {"lr": 0.5, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}


def test_every_shipped_yaml_option_agrees_with_its_constructor():
    """A YAML file may only link a key (legacy_randn's seed), never restate a default differently."""
    import yaml
    from importlib import resources

    registry = get_registry()
    for group in COMPONENT_GROUPS:
        for name in yaml_options(group):
            text = resources.files("backproplab.conf").joinpath(group, f"{name}.yaml").read_text()
            shipped = yaml.safe_load(text)
            generated = component_node(registry, group, name)
            assert set(shipped) == set(generated), (group, name)
            for key, value in shipped.items():
                expected = LINKS.get((group, name, key), generated[key])
                assert value == expected, (group, name, key, value, generated[key])


def test_the_python_api_default_optimizer_is_the_same_sgd():
    net = bp.build_network([3, 4, 1], "sigmoid")
    assert bp.build_trainer(net).optimizer.lr == 0.5
    assert bp.get_registry().create("optimizer", "gd").lr == 0.5
    assert bp.get_registry().create("initializer", "legacy_randn").scale == 0.1


def test_error_texts_quote_the_default_that_is_in_effect():
    # The generated schema refuses the value while Hydra composes; the CLI's one formatter
    # (config_error, then ConfigError's fields) words it.
    for choice in ("sgd", "gd"):
        with pytest.raises(Exception) as info:
            prepare(_compose(f"optimizer={choice}", "optimizer.lr=abc"))
        error = config_error(info.value)
        assert isinstance(error, ConfigError)
        assert (error.key, error.value, error.valid) == ("optimizer.lr", "abc", "a number (default 0.5)")
        assert str(error) == f"optimizer.lr='abc' is invalid for optimizer={choice}; valid: a number (default 0.5)"


def _first_weights(*overrides: str) -> np.ndarray:
    return prepare(_compose(*overrides)).network.params["W1"]


def legacy(seed: int) -> np.ndarray:
    return np.random.RandomState(seed).randn(4, 3) * 0.1


def test_the_default_run_has_the_articles_weights():
    np.testing.assert_array_equal(_first_weights(), legacy(3))
    cfg = _compose()
    assert (cfg.trainer.seed, cfg.initializer.seed, cfg.optimizer.lr, cfg.initializer.scale) == (3, 3, 0.5, 0.1)


def test_trainer_seed_moves_the_legacy_randn_weights():
    np.testing.assert_array_equal(_first_weights("trainer.seed=4"), legacy(4))
    # An explicit initializer.seed pins the weights whatever trainer.seed says.
    np.testing.assert_array_equal(_first_weights("trainer.seed=4", "initializer.seed=3"), legacy(3))
    # The pinned experiment keeps the article's weights.
    np.testing.assert_array_equal(_first_weights("experiment=seed_backprop", "trainer.seed=4"), legacy(3))


def test_trainer_seed_moves_the_weights_of_every_other_initializer_too():
    a = _first_weights("initializer=xavier_normal")
    b = _first_weights("initializer=xavier_normal", "trainer.seed=4")
    assert a.shape == b.shape and not np.array_equal(a, b)
    np.testing.assert_array_equal(a, _first_weights("initializer=xavier_normal", "trainer.seed=3"))
