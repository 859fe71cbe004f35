"""The registry: names to components, with the plugin distribution behind each, and the error
messages users see when a name or a hyperparameter is wrong."""

from __future__ import annotations

import inspect

import pytest

import backproplab as bp
from backproplab.errors import ConfigError, PluginError, UnknownComponentError
from backproplab.components.registry import KINDS, Registry, Source, closest

ONE = Source("one", "dist-one", "1.0")
TWO = Source("two", "dist-two", "2.3")


class Scaled:
    def __init__(self, factor: float = 2.0, *, offset: float = 0.0):
        if factor == 0:
            raise ValueError("factor must not be 0")
        self.factor, self.offset = factor, offset


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.add("activation", "scaled", Scaled, ONE)
    reg.add("loss", "scaled", Scaled, ONE)  # one namespace per kind: no clash
    return reg


def test_create_and_resolve(registry):
    built = registry.create("activation", "scaled", factor=3.0, offset=1.0)
    assert (built.factor, built.offset) == (3.0, 1.0)
    assert registry.resolve("activation", "scaled").factor == 2.0
    assert registry.resolve("activation", {"name": "scaled", "factor": 5.0}).factor == 5.0
    instance = Scaled(7.0)
    assert registry.resolve("activation", instance) is instance  # ready instances pass through
    assert isinstance(registry.resolve("activation", Scaled), Scaled)  # a class is instantiated
    # Every resolve of a name is a new object: no state is shared between layers or runs.
    assert registry.resolve("activation", "scaled") is not registry.resolve("activation", "scaled")


def test_the_spec_mapping_is_not_consumed(registry):
    spec = {"name": "scaled", "factor": 4.0}
    registry.resolve("activation", spec)
    assert spec == {"name": "scaled", "factor": 4.0}


def test_names_sources_and_hyperparameters(registry):
    assert registry.names("activation") == ["scaled"]
    assert registry.names("optimizer") == []
    assert registry.source_of("loss", "scaled") == ONE
    assert str(ONE) == "dist-one 1.0 (entry point 'one')"
    assert registry.get("activation", "scaled").hyperparameters() == {"factor": 2.0, "offset": 0.0}
    assert [(r.kind, r.name) for r in registry] == [("activation", "scaled"), ("loss", "scaled")]


def test_a_name_registered_twice_names_both_distributions(registry):
    with pytest.raises(PluginError) as info:
        registry.add("activation", "scaled", Scaled, TWO)
    assert str(info.value) == (
        "activation 'scaled' is registered twice: by dist-one 1.0 (entry point 'one') and by "
        "dist-two 2.3 (entry point 'two'); uninstall one of them or restrict loading with BACKPROPLAB_PLUGINS"
    )


@pytest.mark.parametrize("name,factory,match", [("", Scaled, "invalid name ''"), (3, Scaled, "invalid name 3"),
                                                ("x", 42, "non-callable factory 42")])
def test_malformed_registrations(registry, name, factory, match):
    with pytest.raises(PluginError, match=match):
        registry.add("activation", name, factory, TWO)


def test_unknown_name_lists_available_and_closest(registry):
    registry.add("activation", "softsign", Scaled, TWO)
    with pytest.raises(UnknownComponentError) as info:
        registry.get("activation", "scaledd")
    assert str(info.value) == "unknown activation 'scaledd'; available: scaled, softsign; did you mean 'scaled'?"
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)
    with pytest.raises(UnknownComponentError, match=r"^unknown optimizer 'sgd'; available: \(none\)$"):
        registry.create("optimizer", "sgd")


def test_unknown_and_invalid_hyperparameters(registry):
    with pytest.raises(ConfigError, match=r"^activation 'scaled' has no hyperparameter 'fcator'; valid: factor, offset; did you mean 'factor'\?$"):
        registry.create("activation", "scaled", fcator=1.0)
    # A ValueError from the constructor becomes a one-line ConfigError naming the component.
    with pytest.raises(ConfigError, match=r"^activation 'scaled': factor must not be 0$"):
        registry.create("activation", "scaled", factor=0)


def test_factories_taking_any_keyword_get_them_all(registry):
    registry.add("optimizer", "anything", lambda **kw: kw, TWO)
    assert registry.create("optimizer", "anything", lr=0.1, whatever=1) == {"lr": 0.1, "whatever": 1}


def test_unknown_kind_lists_the_kinds(registry):
    with pytest.raises(ValueError, match=r"unknown component kind 'layer'; valid: activation, loss, initializer, optimizer"):
        registry.names("layer")


def test_closest():
    assert closest("rleu", ["relu", "elu", "gelu"]) == "relu"
    assert closest("xyz", ["relu", "elu"]) is None


def test_the_default_registry_holds_every_required_builtin():
    """The built-in names, registered by the backproplab distribution's own entry points."""
    reg = bp.get_registry()
    required = {
        "activation": ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "identity", "softmax", "silu", "gelu"],
        "loss": ["bce", "cross_entropy", "mse", "mae", "hinge", "huber"],
        "initializer": ["zeros", "constant", "normal", "uniform", "xavier_normal", "xavier_uniform", "he_normal",
                        "he_uniform", "lecun_normal", "legacy_randn"],
        "optimizer": ["sgd", "rmsprop", "adagrad", "adam", "adamw"],
        "schedule": ["constant", "step", "multistep", "exponential", "cosine", "linear", "plateau"],
        "callback": ["early_stopping"],
        "dataset": ["seed_example", "xor", "moons", "circles", "digits", "breast_cancer", "marks", "csv"],
    }
    plugin_for = {"activation": "activations", "loss": "losses", "initializer": "initializers", "optimizer": "optimizers",
                  "schedule": "schedules", "callback": "callbacks", "dataset": "datasets"}
    for kind, names in required.items():
        for name in names:
            source = reg.source_of(kind, name)
            assert source == Source(plugin_for[kind], "backproplab", bp.__version__), (kind, name)
    assert set(KINDS) == set(required)


@pytest.mark.parametrize("kind", KINDS)
def test_builtin_hyperparameters_are_keyword_arguments_with_defaults(kind):
    """Each built-in can be built from keyword hyperparameters alone, as a Hydra node does."""
    reg = bp.get_registry()
    for registration in reg:
        if registration.kind != kind or registration.source.distribution != "backproplab":
            continue
        params = registration.hyperparameters()
        required = [k for k, default in params.items() if default is inspect.Parameter.empty]
        # csv's path is the one option without a default: the file is the user's to name.
        assert required == (["path"] if (kind, registration.name) == ("dataset", "csv") else []), registration.name
        if kind == "dataset":
            continue  # a data set's factory makes its data: test_data.py loads each one
        reg.create(kind, registration.name, **{k: v for k, v in params.items()})
