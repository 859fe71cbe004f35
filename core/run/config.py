"""The run config's schema and its validation, before anything is built or trained.

Hydra composes the component options from schemas generated from the constructors' signatures
(``backproplab.run.schema``), so OmegaConf has already refused a wrong type there; this module
checks the composed config (or a plain mapping, without Hydra) against the same schemas and the
ranges a type cannot express, and turns it into a typed ``RunConfig``. Every problem is one
``ConfigError`` line that names the key as the user types it, the bad value and what would be valid.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from backproplab.errors import ConfigError, UnknownComponentError, closest, one_line
from backproplab.numerics.network import SUPPORTED_DTYPES
from backproplab.components.registry import MULTI_GROUPS, SINGLE_GROUPS, Registration, Registry, accepts_any_keyword

from .schema import SEED_MAX, SEED_VALID, check_hyperparameters, is_finite, is_seed, schema_of  # noqa: F401 - re-exported

# The groups that choose one registered component each (``optimizer=adam``), and those that
# choose several (``callbacks=[early_stopping]``), from the kinds' table.
COMPONENT_KINDS = tuple(SINGLE_GROUPS)
MULTI_COMPONENT_GROUPS = tuple(MULTI_GROUPS)
# A group a config may leave out (a plain mapping written before it existed), and what it means.
OPTIONAL_GROUPS = {"schedule": {"name": "constant"}}
# Upper bounds that no run which can finish needs, so that a typo'd extra digit is refused up
# front instead of starting a run that never ends: a batch of more than 2**31 - 1 rows cannot
# be held in memory (it is clamped to the training set anyway), and a billion iterations is far
# beyond what a numpy network trains in a day. Memory does not bound it: a run keeps a bounded
# History whatever its length (only a trace, logger.trace, grows with it, and is checked apart).
MAX_BATCH_SIZE = 2**31 - 1
MAX_ITERATIONS = 10**9
# The run config's top-level keys (the component groups in the kinds' table order). ``hydra`` is Hydra's own node: absent
# from a job's config, accepted (and ignored) in a mapping that still carries it.
TOP_LEVEL_KEYS = ("hydra", "model", "data", *COMPONENT_KINDS, *MULTI_COMPONENT_GROUPS, "trainer", "logger")


@dataclass(frozen=True)
class ComponentSpec:
    """A component as configured: its kind, registered name and keyword hyperparameters, and
    the key its node has in the config (``optimizer``, ``callbacks.early_stopping``)."""

    kind: str
    name: str
    params: dict[str, Any]
    key: str = ""

    def as_spec(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


@dataclass(frozen=True)
class ModelConfig:
    hidden: list[int]
    activation: Any  # a registered name, or {"name": ..., **hyperparameters}
    output_activation: Any
    output_width: int | None
    dtype: str


# What a run reports to a search sweeper (``trainer.objective``) and which way is better.
# ``auto``: the final validation loss when the data has a validation split, else the final
# training loss (a run without a split has no other loss to compare).
OBJECTIVES = {
    "auto": "minimize",
    "final_val_loss": "minimize",
    "final_train_loss": "minimize",
    "final_val_accuracy": "maximize",
    "final_train_accuracy": "maximize",
}


def objective_direction(objective: str) -> str:
    """``minimize`` or ``maximize``: the direction a search over ``objective`` must take."""
    return OBJECTIVES[objective]


@dataclass(frozen=True)
class TrainerConfig:
    epochs: int
    seed: int | None
    objective: str = "auto"
    # Seconds of training between periodic checkpoints, each written at the next epoch's end.
    checkpoint_every_s: float = 60.0


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    data: dict[str, Any]  # checked further by backproplab.run.data.load_dataset
    loss: ComponentSpec
    optimizer: ComponentSpec
    initializer: ComponentSpec
    schedule: ComponentSpec
    callbacks: list[ComponentSpec]
    trainer: TrainerConfig
    logger: dict[str, Any]
    batch_size: int
    shuffle: bool
    resolved: dict[str, Any]  # the whole config as plain containers, for tracking


def to_container(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Plain containers with interpolations resolved; a missing ``???`` value names its key."""
    if not isinstance(cfg, DictConfig):
        return dict(cfg)
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except MissingMandatoryValue as exc:
        key = exc.full_key
        raise ConfigError(f"{key} is required but has no value; set it on the command line, e.g. {key}=VALUE") from None
    except InterpolationResolutionError as exc:
        key = str(exc.full_key)
        source = _interpolation_source(cfg, key) or key
        written = _written(cfg, source)
        absent = [ref for ref in _REFERENCE.findall(written) if _written(cfg, ref) is _ABSENT] if isinstance(written, str) else []
        if absent:
            raise ConfigError(
                f"{source}={written}: {', '.join(absent)} is not a key of the config; an interpolation names a key "
                "by its full path, e.g. ${trainer.seed}"
            ) from None
        if source == key:
            raise
        raise ConfigError(f"{source}: {one_line(exc).split('; full_key:')[0]}") from None


_REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")
_ABSENT = object()


def _written(cfg: DictConfig, key: str) -> Any:
    """``key``'s value as written in the config, interpolations unresolved; ``_ABSENT`` if the
    config has no such key."""
    node: Any = cfg
    for part in key.split("."):
        # validate_access=False: under Hydra's struct flag a missing key would raise, and the
        # point here is to find out whether it exists.
        node = node._get_node(part, validate_access=False) if isinstance(node, DictConfig) else None
        if node is None:
            return _ABSENT
    return node._value()


def _interpolation_source(cfg: DictConfig, key: str) -> str | None:
    """The key whose own value fails to resolve, when ``key`` only refers to it: legacy_randn's
    ``initializer.seed`` is ``${trainer.seed}``, and a bad ``trainer.seed=${oc.env:NOPE}`` is the
    key the user typed. None when ``key`` is itself the source."""
    seen = {key}
    while True:
        text = _written(cfg, key)
        ref = _REFERENCE.fullmatch(text) if isinstance(text, str) else None
        if ref is None or ref.group(1) in seen or _written(cfg, ref.group(1)) is _ABSENT:
            return key if len(seen) > 1 else None
        key = ref.group(1)
        seen.add(key)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _section(cfg: Mapping[str, Any], key: str) -> dict[str, Any]:
    node = cfg.get(key)
    if not isinstance(node, Mapping):
        raise ConfigError(f"{key}={node!r} is not a config group; choose an option, e.g. {key}=NAME")
    return dict(node)


def _known_component(registry: Registry, kind: str, key: str, name: Any) -> None:
    try:
        registry.get(kind, name)
    except UnknownComponentError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _activation(registry: Registry, key: str, value: Any) -> Any:
    if isinstance(value, str):
        _known_component(registry, "activation", key, value)
        return value
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        name = value["name"]
        _known_component(registry, "activation", key, name)
        registration = registry.get("activation", name)
        if not accepts_any_keyword(registration.factory):
            accepted = [k for k in registration.hyperparameters() if k != "name"]
            for param in value:
                if param != "name" and param not in accepted:
                    raise ConfigError(
                        key=f"{key}.{param}",
                        value=value[param],
                        subject=f"{key}.{param}",  # the value is fine; the key is not
                        problem=f"is not a hyperparameter of activation {name}" + ("" if accepted else f"; {name} takes none"),
                        valid=accepted or None,
                        hint=closest(str(param), accepted, cutoff=0.5),
                    )
        params = check_values(key, f"activation {name}", registration, {k: v for k, v in value.items() if k != "name"})
        return {"name": name, **params}
    available = ", ".join(registry.names("activation"))
    raise ConfigError(f"{key}={value!r} is not an activation name; available: {available}")


def _hidden(value: Any) -> list[int]:
    if isinstance(value, (list, tuple)) and all(_is_int(v) and v > 0 for v in value):
        return [int(v) for v in value]
    raise ConfigError(f"model.hidden={value!r} is invalid; valid: a list of positive integers, e.g. model.hidden=[8,8] or []")


def check_values(key: str, owner: str, registration: Registration, params: Mapping[str, Any]) -> dict[str, Any]:
    """A component's hyperparameter values through the schema generated from its constructor
    (``backproplab.run.schema``): converted as OmegaConf converts them, or one ConfigError line
    naming ``key.param``, the value and what is valid, before the constructor sees them."""
    schema = schema_of(registration.kind, registration.name, registration.factory)
    return check_hyperparameters(key, owner, schema, params)


def component(registry: Registry, kind: str, node: Mapping[str, Any], key: str | None = None) -> ComponentSpec:
    """Check a component node against the schema generated from the registered constructor.
    ``key``: where the node is in the config (default: the kind, ``optimizer``)."""
    key = key or kind
    params = dict(node)
    name = params.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"{key}.name={name!r} is invalid; available: {', '.join(registry.names(kind))}")
    try:
        registration = registry.get(kind, name)
    except UnknownComponentError as exc:
        raise ConfigError(f"{key}={name}: {exc}") from None
    params = check_values(key, owner(kind, name, key), registration, params)
    return ComponentSpec(kind, name, params, key)


def owner(kind: str, name: str, key: str) -> str:
    """How a message names the component a bad value was for: ``optimizer=sgd`` or
    ``model.activation=relu`` as it was chosen, ``callback=early_stopping`` for an option of a
    several-options group (``callbacks.early_stopping``)."""
    return f"{kind}={name}" if key.partition(".")[0] in MULTI_COMPONENT_GROUPS else f"{key}={name}"


def components(registry: Registry, group: str, kind: str, nodes: Any) -> list[ComponentSpec]:
    """The components a several-options group selects: ``callbacks`` is a mapping from a key to
    a node (``callbacks.early_stopping.patience=3``) whose ``name`` defaults to its key; null or
    absent selects none."""
    if nodes is None:
        return []
    if not isinstance(nodes, Mapping):
        raise ConfigError(
            f"{group}={nodes!r} is not a selection of {group}; choose them as {group}=[NAME,...], "
            f"available: {', '.join(registry.names(kind))}"
        )
    out = []
    for key, node in nodes.items():
        if node is None:  # a node removed with ~callbacks.NAME leaves nothing to build
            continue
        if not isinstance(node, Mapping):
            raise ConfigError(f"{group}.{key}={node!r} is not a config node; e.g. {group}.{key}.PARAM=VALUE")
        out.append(component(registry, kind, {"name": str(key), **node}, f"{group}.{key}"))
    return out


def validate(cfg: DictConfig | Mapping[str, Any], registry: Registry) -> RunConfig:
    """The typed run config, or a one-line ConfigError for the first problem found."""
    resolved = to_container(cfg)
    unknown = [key for key in resolved if key not in TOP_LEVEL_KEYS]
    if unknown:  # added with +key=value, which Hydra's struct mode lets through
        key = str(unknown[0])
        hint = closest(key, list(TOP_LEVEL_KEYS), cutoff=0.5)
        did_you_mean = f"; did you mean {hint!r}?" if hint else ""
        raise ConfigError(f"{key} is not a key of the config; valid keys: {', '.join(TOP_LEVEL_KEYS)}{did_you_mean}")
    model = _section(resolved, "model")
    data = _section(resolved, "data")
    trainer = _section(resolved, "trainer")

    allowed_model = {"hidden", "activation", "output_activation", "output_width", "dtype"}
    extra = sorted(set(model) - allowed_model)
    if extra:
        raise ConfigError(f"model.{extra[0]} is not a model option; valid: {', '.join(sorted(allowed_model))}")
    hidden = _hidden(model.get("hidden", []))
    activation = _activation(registry, "model.activation", model.get("activation"))
    output_activation = _activation(registry, "model.output_activation", model.get("output_activation", activation))
    width = model.get("output_width")
    if width is not None and not (_is_int(width) and width > 0):
        raise ConfigError(f"model.output_width={width!r} is invalid; valid: a positive integer, or null to derive it from the data")
    dtype = model.get("dtype", "float64")
    if dtype not in SUPPORTED_DTYPES:
        raise ConfigError(f"model.dtype={dtype!r} is invalid; valid: {', '.join(SUPPORTED_DTYPES)}")

    batch_size = data.get("batch_size")
    if not (_is_int(batch_size) and 0 < batch_size <= MAX_BATCH_SIZE):
        raise ConfigError(
            key="data.batch_size",
            value=batch_size,
            valid=f"an integer in [1, {MAX_BATCH_SIZE}] (values above the training set size are clamped to it)",
        )
    shuffle = data.get("shuffle", True)
    if not isinstance(shuffle, bool):
        raise ConfigError(f"data.shuffle={shuffle!r} is invalid; valid: true, false")

    allowed_trainer = {"epochs", "seed", "objective", "checkpoint_every_s"}
    extra = sorted(set(trainer) - allowed_trainer)
    if extra:
        raise ConfigError(f"trainer.{extra[0]} is not a trainer option; valid: {', '.join(sorted(allowed_trainer))}")
    epochs = trainer.get("epochs")
    if not (_is_int(epochs) and 0 < epochs <= MAX_ITERATIONS):
        raise ConfigError(key="trainer.epochs", value=epochs, valid=f"an integer in [1, {MAX_ITERATIONS}]")
    seed = trainer.get("seed")
    if seed is not None and not is_seed(seed):
        raise ConfigError(key="trainer.seed", value=seed, valid=f"{SEED_VALID} or null")
    objective = trainer.get("objective", "auto")
    if objective not in OBJECTIVES:
        raise ConfigError(key="trainer.objective", value=objective, valid=list(OBJECTIVES), hint=closest(str(objective), list(OBJECTIVES)))
    every_s = trainer.get("checkpoint_every_s", 60)
    if not (is_finite(every_s) and every_s >= 0):
        raise ConfigError(key="trainer.checkpoint_every_s", value=every_s, valid="a number of seconds >= 0 (0: a checkpoint at every epoch's end)")
    # After trainer.seed: legacy_randn's initializer.seed is ${trainer.seed}, and the error
    # should name the key the user typed.
    for group, default in OPTIONAL_GROUPS.items():
        resolved.setdefault(group, dict(default))
    specs = {kind: component(registry, kind, _section(resolved, kind)) for kind in COMPONENT_KINDS}
    several = {group: components(registry, group, MULTI_GROUPS[group], resolved.get(group)) for group in MULTI_COMPONENT_GROUPS}

    logger = resolved.get("logger") or {"name": "none"}
    if not isinstance(logger, Mapping):
        raise ConfigError(f"logger={logger!r} is not a config group; valid: logger=mlflow or logger=none")

    return RunConfig(
        model=ModelConfig(hidden, activation, output_activation, width, dtype),
        data=data,
        loss=specs["loss"],
        optimizer=specs["optimizer"],
        initializer=specs["initializer"],
        schedule=specs["schedule"],
        callbacks=several["callbacks"],
        trainer=TrainerConfig(int(epochs), None if seed is None else int(seed), str(objective), float(every_s)),
        logger=dict(logger),
        batch_size=int(batch_size),
        shuffle=shuffle,
        resolved=resolved,
    )
