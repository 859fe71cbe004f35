"""Every config group composes through Hydra's compose API, as the CLI composes it.

The generated component options (one per registered name, third-party ones included) and the
experiments stored from ``experiments/`` are exercised through the same search path and
ConfigStore the command uses.
"""

from __future__ import annotations

import inspect

import pytest
from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from backproplab.hydra_app.compat import version_base
from backproplab import hookimpl
from backproplab.run.job import prepare
from backproplab.hydra_app.config_store import component_node, experiment_names, group_options, register_configs, yaml_options
from backproplab.errors import ConfigError
from backproplab.run.schema import config_error
from backproplab.components.loading import get_registry, load_plugins
from backproplab.components.registry import Source

# Composition is what changes most between Hydra releases: repeated on Hydra 1.4 by .ci/run.
pytestmark = pytest.mark.hydra_compat

register_configs()  # the generated component and experiment nodes, as the CLI stores them


def _compose(*overrides: str, hydra_node: bool = False):
    with initialize_config_module("backproplab.conf", **version_base()):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra_node)


def test_default_config_is_the_worked_example():
    cfg = _compose()
    assert cfg.model.hidden == [4]
    assert (cfg.model.activation, cfg.model.output_activation) == ("sigmoid", "sigmoid")
    assert cfg.data.name == "seed_example" and cfg.data.batch_size == 1 and cfg.data.shuffle is False
    assert cfg.loss.name == "bce"
    assert (cfg.optimizer.name, cfg.optimizer.lr) == ("sgd", 0.5)
    assert (cfg.initializer.name, cfg.initializer.scale, cfg.initializer.seed) == ("legacy_randn", 0.1, 3)
    assert cfg.trainer.epochs == 7
    assert "logger" in cfg and "name" in cfg.logger


def test_primary_config_keeps_the_working_directory():
    cfg = _compose(hydra_node=True)
    assert cfg.hydra.job.chdir is False


@pytest.mark.parametrize("kind", ["loss", "optimizer", "initializer"])
def test_every_registered_component_is_an_option_with_its_constructor_defaults(kind):
    registry = get_registry()
    names = registry.names(kind)
    assert names, f"no {kind} registered"
    with initialize_config_module("backproplab.conf", **version_base()):
        for name in names:
            node = OmegaConf.to_container(compose("config", overrides=[f"{kind}={name}"])[kind])
            expected = set(registry.get(kind, name).hyperparameters()) | {"name"}
            assert node["name"] == name
            assert set(node) == expected, f"{kind}={name}: keys {sorted(node)} != constructor {sorted(expected)}"
            if name not in yaml_options(kind):
                assert node == component_node(registry, kind, name)


@pytest.mark.parametrize("kind", ["loss", "optimizer", "initializer"])
def test_shipped_component_yaml_matches_the_constructor(kind):
    # A YAML file shadows the generated node; it must not drift from the constructor signature.
    registry = get_registry()
    with initialize_config_module("backproplab.conf", **version_base()):
        for name in yaml_options(kind):
            node = OmegaConf.to_container(compose("config", overrides=[f"{kind}={name}"])[kind])
            assert set(node) - {"name"} == set(registry.get(kind, name).hyperparameters())


def test_component_hyperparameters_are_set_from_overrides():
    cfg = _compose("optimizer=adam", "optimizer.lr=0.01", "optimizer.beta1=0.95")
    assert OmegaConf.to_container(cfg.optimizer) == {
        "name": "adam", "lr": 0.01, "beta1": 0.95, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
    }
    optimizer = prepare(cfg).optimizer
    assert (type(optimizer).__name__, optimizer.lr, optimizer.beta1) == ("Adam", 0.01, 0.95)


def test_unknown_hyperparameter_is_rejected_by_hydra():
    with pytest.raises(ConfigCompositionException, match="optimizer.lrr"):
        _compose("optimizer.lrr=0.1")


BUILTIN_DATA = ["breast_cancer", "circles", "csv", "digits", "marks", "moons", "seed_example", "xor"]


@pytest.mark.parametrize("name", BUILTIN_DATA)
def test_every_data_option_composes(name):
    assert name in group_options("data")
    extra = ["data.path=unused.csv"] if name == "csv" else []
    cfg = _compose(f"data={name}", *extra)
    assert cfg.data.name == name
    assert cfg.data.batch_size > 0


def test_data_options_are_exactly_the_registered_data_sets():
    assert set(group_options("data")) == set(get_registry().names("dataset")) >= set(BUILTIN_DATA)


def test_model_group_keys():
    cfg = _compose("model.hidden=[8,8]", "model.activation=relu", "model.output_activation=softmax", "model.dtype=float32")
    assert OmegaConf.to_container(cfg.model) == {
        "hidden": [8, 8], "activation": "relu", "output_activation": "softmax", "output_width": None, "dtype": "float32",
    }
    assert group_options("model") == ["mlp"]


def test_trainer_group_keys():
    cfg = _compose("trainer.epochs=3", "trainer.seed=11")
    assert (cfg.trainer.epochs, cfg.trainer.seed) == (3, 11)


@pytest.mark.parametrize("logger", ["none", "mlflow"])
def test_logger_group(logger):
    cfg = _compose(f"logger={logger}")
    assert cfg.logger.name == logger


def test_experiment_names():
    assert set(experiment_names()) >= {"seed_backprop", "marks", "lr_sweep", "batch_size_sweep", "architecture_sweep"}


def test_seed_backprop_experiment_is_the_default_run():
    # Resolved: the default links initializer.seed to trainer.seed, the experiment pins both to 3.
    experiment = OmegaConf.to_container(_compose("experiment=seed_backprop"), resolve=True)
    assert experiment == OmegaConf.to_container(_compose(), resolve=True)


def test_command_line_group_choice_beats_the_experiment():
    cfg = _compose("experiment=seed_backprop", "data=xor")
    assert cfg.data.name == "xor" and cfg.model.hidden == [4]


def test_marks_experiment_overrides_data_and_components():
    cfg = _compose("experiment=marks")
    assert cfg.data.name == "marks" and "path" not in cfg.data and cfg.data.batch_size == 20
    # Another file of marks.csv's format keeps the experiment's batching and split.
    other = _compose("experiment=marks", "data=csv", "data.path=somewhere.csv")
    assert other.data.name == "csv" and other.data.path == "somewhere.csv" and other.data.target == "y"
    assert other.data.batch_size == 20 and other.data.val_fraction == 0.2 and other.data.standardize is True
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 0.01
    assert cfg.initializer.name == "xavier_normal"
    assert cfg.model.hidden == [8, 8]


@pytest.mark.parametrize(
    "name, key, values",
    [
        ("lr_sweep", "optimizer.lr", "0.01,0.1,0.5,1.0"),
        ("batch_size_sweep", "data.batch_size", "1,8,32,160"),
        ("architecture_sweep", "model.hidden", "[2],[8],[8,8],[16,16,16]"),
    ],
)
def test_sweep_experiments_are_multiruns(name, key, values):
    cfg = _compose(f"experiment={name}", hydra_node=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert cfg.hydra.sweeper.params[key] == values
    assert cfg.data.name == "moons"


def test_every_experiment_builds():
    for name in experiment_names():
        prepared = prepare(_compose(f"experiment={name}"))
        assert prepared.network.n_outputs == 1


class _ThirdParty:
    """An in-process plugin standing in for an installed distribution."""

    class Doubler:
        def __init__(self, factor: float = 2.0, centred: bool = False):
            self.factor, self.centred = factor, centred

        def step(self, params, grads):
            for name, g in grads.items():
                params[name] -= 0.01 * self.factor * g

    @hookimpl
    def register_optimizers(self, register):
        register("doubler", self.Doubler)


def test_third_party_component_is_selectable_without_yaml():
    plugins = load_plugins(extra=[(_ThirdParty(), Source("doubler", "backproplab-doubler", "9.9"))])
    registry = plugins.registry
    store = ConfigStore.instance()
    try:
        register_configs(registry)
        cfg = _compose("optimizer=doubler", "optimizer.factor=3.5")
        assert OmegaConf.to_container(cfg.optimizer) == {"name": "doubler", "factor": 3.5, "centred": False}
        prepared = prepare(cfg, registry)
        assert prepared.optimizer.factor == 3.5
        source = next(c.source for c in prepared.components if c.role == "optimizer")
        assert (source.distribution, source.version) == ("backproplab-doubler", "9.9")
        # Refused by the schema generated from the plugin's signature, while Hydra composes.
        with pytest.raises(Exception) as info:
            prepare(_compose("optimizer=doubler", "optimizer.factor=x"), registry)
        error = config_error(info.value)
        assert isinstance(error, ConfigError)
        assert (error.key, error.value) == ("optimizer.factor", "x") and error.valid.startswith("a number")
    finally:
        store.repo["optimizer"].pop("doubler.yaml", None)
        register_configs(get_registry())


def test_required_constructor_argument_becomes_a_missing_value():
    def needs_rate(*, rate):  # a factory with a required keyword
        return object()

    class Plugin:
        @hookimpl
        def register_losses(self, register):
            register("needs_rate", needs_rate)

    registry = load_plugins(extra=[(Plugin(), Source("p", "p-dist", "1"))]).registry
    assert inspect.signature(needs_rate).parameters["rate"].default is inspect.Parameter.empty
    assert component_node(registry, "loss", "needs_rate") == {"name": "needs_rate", "rate": "???"}
