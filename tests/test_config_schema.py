"""Config schemas generated from the components' signatures (backproplab.run.schema): the types
come from the annotations (else from the defaults), OmegaConf refuses a wrong type or an unknown
key while Hydra composes, and the refusal is the same ConfigError, field for field, as a plain
mapping gets from the run's own check, and one line with exit code 2 on the command line."""

from __future__ import annotations

import dataclasses
import re
from importlib import metadata
from typing import Any, Optional

import pytest
from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from backproplab import hookimpl
from backproplab.components.loading import get_registry, load_plugins
from backproplab.components.registry import Source
from backproplab.errors import ConfigError
from backproplab.hydra_app.compat import version_base
from backproplab.hydra_app.config_store import component_schema, register_configs
from backproplab.hydra_app.error_report import EXIT_CONFIG, describe
from backproplab.run.job import prepare
from backproplab.run.schema import config_error, schema_of

register_configs()


def _compose(*overrides: str):
    with initialize_config_module("backproplab.conf", **version_base()):
        return compose("config", overrides=["logger=none", *overrides])


def _plain(**sections: Any) -> dict[str, Any]:
    """The default run as plain containers, as a caller without Hydra hands it over, with
    ``sections`` replacing or updating its nodes (``optimizer={"lr": "abc"}``)."""
    cfg = OmegaConf.to_container(_compose(), resolve=True)
    for section, node in sections.items():
        cfg[section] = node if "name" in node else {**cfg[section], **node}
    return cfg


def _types(schema: type) -> dict[str, Any]:
    return {f.name: f.type for f in dataclasses.fields(schema)}


def _defaults(schema: type) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(schema))


class Annotated:
    def __init__(self, rate: float = 1, steps: int = 3, on: bool = False, mode: str = "a", seed: int | None = None,
                 shape: tuple = (1, 2), opt: Optional[float] = 0.5):
        pass


def unannotated(*, rate=0.1, steps=3, on=True, mode="x", whatever=None, weights=(1, 2)):
    return object()


def required(rate: float, *, count):
    return object()


def contradicted(rate: int = 0.5):  # a plugin's annotation that its own default breaks
    return object()


def forward_ref(rate: "NotImportedHere" = 0.5):  # noqa: F821 - an annotation only a type checker sees
    return object()


def test_types_come_from_annotations():
    schema = schema_of("optimizer", "annotated", Annotated)
    assert _types(schema) == {
        "name": str, "rate": float, "steps": int, "on": bool, "mode": str, "seed": Optional[int], "shape": Any, "opt": Optional[float],
    }
    # An int default under a float annotation is a float option.
    assert _defaults(schema) == {"name": "annotated", "rate": 1.0, "steps": 3, "on": False, "mode": "a", "seed": None,
                                 "shape": [1, 2], "opt": 0.5}


def test_without_annotations_the_default_decides_and_none_or_a_list_is_any():
    schema = schema_of("loss", "unannotated", unannotated)
    assert _types(schema) == {"name": str, "rate": float, "steps": int, "on": bool, "mode": str, "whatever": Any, "weights": Any}


def test_required_arguments_are_missing_values():
    schema = schema_of("loss", "required", required)
    assert _types(schema) == {"name": str, "rate": float, "count": Any}
    node = OmegaConf.structured(schema)
    assert OmegaConf.is_missing(node, "rate") and OmegaConf.is_missing(node, "count")
    assert dataclasses.fields(schema)[1].default is MISSING


def test_an_annotation_the_default_contradicts_or_that_cannot_be_read_falls_back():
    assert _types(schema_of("loss", "contradicted", contradicted))["rate"] is Any
    assert _types(schema_of("loss", "forward_ref", forward_ref))["rate"] is float  # from the default 0.5


def test_the_stored_option_is_the_schema_of_its_name_and_alias():
    registry = get_registry()
    for name in ("sgd", "gd"):
        schema = component_schema(registry, "optimizer", name)
        assert _types(schema) == {"name": str, "lr": float, "momentum": float, "nesterov": bool, "weight_decay": float}
        assert _defaults(schema)["name"] == name
    assert OmegaConf.get_type(_compose("optimizer=gd").optimizer) is component_schema(registry, "optimizer", "gd")


def _refused_by_hydra(*overrides: str) -> ConfigError:
    with pytest.raises(Exception) as info:
        prepare(_compose(*overrides))
    error = config_error(info.value, overrides)  # the value an OverflowError does not carry
    assert isinstance(error, ConfigError), info.value
    return error


def _refused_plain(cfg: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        prepare(cfg)
    return info.value


HUGE = int("9" * 400)


@pytest.mark.parametrize(
    "overrides, plain, key, value, valid",
    [
        (["optimizer.lr=abc"], {"optimizer": {"lr": "abc"}}, "optimizer.lr", "abc", "a number (default 0.5)"),
        (["optimizer.nesterov=[1]"], {"optimizer": {"nesterov": [1]}}, "optimizer.nesterov", [1], "true or false (default False)"),
        (["optimizer=adam", "optimizer.beta1=true"], {"optimizer": {"name": "adam", "beta1": True}},
         "optimizer.beta1", True, "a number (default 0.9)"),
        (["optimizer=adam", f"optimizer.beta1={HUGE}"], {"optimizer": {"name": "adam", "beta1": HUGE}},
         "optimizer.beta1", HUGE, "a finite number (default 0.9)"),
        ([f"optimizer.lr={HUGE}"], {"optimizer": {"lr": HUGE}}, "optimizer.lr", HUGE, "a finite number > 0"),
        (["initializer=xavier_normal", "initializer.gain=x"], {"initializer": {"name": "xavier_normal", "gain": "x"}},
         "initializer.gain", "x", "a number (default 1.0)"),
    ],
)
def test_a_wrong_type_is_the_same_error_from_hydra_and_from_a_plain_mapping(overrides, plain, key, value, valid):
    for error in (_refused_by_hydra(*overrides), _refused_plain(_plain(**plain))):
        assert (error.key, error.value, error.valid) == (key, value, valid)


def test_an_int_where_a_float_is_declared_is_taken_as_a_float():
    cfg = _compose("optimizer.lr=1", "optimizer.momentum=0")
    assert cfg.optimizer.lr == 1.0 and isinstance(cfg.optimizer.lr, float)
    prepared = prepare(_plain(optimizer={"lr": 1}))
    assert isinstance(prepared.config.optimizer.params["lr"], float)


def test_a_yaml_option_that_shadows_the_schema_is_checked_against_it():
    # conf/initializer/legacy_randn.yaml links its seed to trainer.seed; the run checks it.
    error = _refused_plain(_plain(initializer={"scale": "big"}))
    assert (error.key, error.value) == ("initializer.scale", "big")
    assert error.valid == "a number (default 0.1)"


def test_an_unknown_key_is_refused_with_the_valid_keys():
    with pytest.raises(Exception) as info:
        _compose("optimizer.momentun=0.9")
    line, code = describe(info.value)
    assert code == EXIT_CONFIG
    assert line == "error: optimizer.momentun is not a key of the config; valid keys: name, lr, momentum, nesterov, weight_decay; did you mean 'momentum'?"


class _Keywords:
    """A plugin whose factory takes any keyword: its typed keys are checked, others passed on."""

    class Scaled:
        def __init__(self, factor: float = 2.0, **extra: Any):
            self.factor, self.extra = factor, extra

        def step(self, params, grads):
            for name, g in grads.items():
                params[name] -= 0.01 * self.factor * g

    @hookimpl
    def register_optimizers(self, register):
        register("scaled", self.Scaled)


def test_a_keyword_taking_plugin_keeps_its_extra_keys_and_types_its_own():
    registry = load_plugins(extra=[(_Keywords(), Source("scaled", "backproplab-scaled", "1.0"))]).registry
    store = ConfigStore.instance()
    try:
        register_configs(registry)
        prepared = prepare(_compose("optimizer=scaled", "optimizer.factor=3", "+optimizer.tilt=0.5"), registry)
        assert prepared.optimizer.factor == 3.0 and prepared.optimizer.extra == {"tilt": 0.5}
        with pytest.raises(Exception) as info:
            _compose("optimizer=scaled", "optimizer.factor=x")
        error = config_error(info.value)
        assert (error.key, error.value, error.valid) == ("optimizer.factor", "x", "a number (default 2.0)")
    finally:
        store.repo["optimizer"].pop("scaled.yaml", None)
        register_configs(get_registry())


# -- the command line: a plugin's option, refused by its schema ------------------------------------
try:
    metadata.version("backproplab-example")
    EXAMPLE = True
except metadata.PackageNotFoundError:
    EXAMPLE = False


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.slow
@pytest.mark.skipif(not EXAMPLE, reason="pip install -e examples/backproplab-example")
@pytest.mark.parametrize(
    "args, expected",
    [
        (["optimizer=lion", "optimizer.beta1=abc"],
         "error: optimizer.beta1='abc' is invalid for optimizer=lion; valid: a number (default 0.9)"),
        (["-m", "optimizer=lion", "optimizer.lr=0.001,abc"],
         "error: sweep job #1 of 2 (optimizer.lr=abc) is invalid, so no job was started: "
         "optimizer.lr='abc' is invalid for optimizer=lion; valid: a number (default 0.0001)"),
    ],
)
def test_a_wrong_type_for_a_plugin_option_is_one_line_and_exit_2(cli, tmp_path, args, expected):
    proc = cli(*args, f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "hydra.sweep.dir=sweep")
    assert proc.returncode == EXIT_CONFIG, proc.stderr
    assert _one_line(proc.stderr) == expected
    assert not list(tmp_path.iterdir()), sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert not re.search(r"iteration|final loss", proc.stdout)
