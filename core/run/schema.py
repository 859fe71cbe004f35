"""Config schemas generated from the components' constructor signatures.

Every registered component (loss, optimizer, initializer, activation) gets a structured-config
schema: a dataclass made with ``dataclasses.make_dataclass`` whose fields are the constructor's
keyword parameters, typed from their annotations (else from their default's type, else ``Any``),
with the constructor's defaults (``???`` where the argument is required). Hydra stores it in its
ConfigStore (``hydra_app.config_store``), so OmegaConf itself refuses ``optimizer.lr=abc`` or
``optimizer.momentun=0.9`` while composing; a configured run without Hydra (a plain mapping)
is checked against the same schema (``check_hyperparameters``). What a type cannot say (a
finite number, ``lr > 0``, a 32-bit seed) is checked here after the schema, in the same words.

OmegaConf's own errors name the key and the value but word them for OmegaConf's readers;
``config_error`` turns them into the one-line ``ConfigError`` every bad config value becomes.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import numbers
import re
import types
import typing
from typing import Any, Callable, Mapping, Optional, Sequence

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ValidationError

from backproplab.errors import ConfigError

# Set on each generated schema: which component it describes, and the constructor's defaults as
# written (a message quotes ``(default 0.5)``, not the schema's converted value).
COMPONENT_ATTR = "__backproplab_component__"
DEFAULTS_ATTR = "__backproplab_defaults__"
_EMPTY = inspect.Parameter.empty
_PRIMITIVES = (bool, int, float, str)

# Seeds go to numpy's legacy RandomState and scikit-learn's random_state, which take 32 bits.
SEED_MAX = 2**32 - 1
SEED_VALID = f"an integer in [0, {SEED_MAX}] (2**32 - 1)"


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    """A finite real number. A Python int too large for a float (a 400-digit ``optimizer.lr``)
    counts as not finite: ``math.isfinite`` would raise OverflowError on it."""
    if not _is_number(value):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def is_seed(value: Any) -> bool:
    return _is_int(value) and 0 <= value <= SEED_MAX


def yaml_value(value: Any) -> tuple[bool, Any]:
    """(representable, value) for a constructor default; required ones become Hydra's ``???``."""
    if value is _EMPTY:
        return True, "???"
    if value is None or isinstance(value, (bool, int, str)):
        return True, value
    if isinstance(value, float):
        return math.isfinite(value), value
    if isinstance(value, (list, tuple)) and all(yaml_value(v)[0] for v in value):
        return True, [yaml_value(v)[1] for v in value]
    return False, None


def _parameters(factory: Callable[..., Any]) -> list[inspect.Parameter]:
    """The keyword parameters with their annotations evaluated where they can be (a plugin
    written with ``from __future__ import annotations`` has strings), else as written."""
    for evaluate in (True, False):
        try:
            sig = inspect.signature(factory, eval_str=evaluate)
        except (NameError, SyntaxError, TypeError, AttributeError):
            continue  # an annotation naming what only TYPE_CHECKING imports: use them unevaluated
        except ValueError:
            return []
        return [p for p in sig.parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return []


def _fits(kind: Any, value: Any) -> bool:
    """Whether the schema type ``kind`` can hold ``value`` as OmegaConf would keep it."""
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return _is_int(value)
    if kind is float:
        return _is_number(value)
    if kind is str:
        return isinstance(value, str)
    return True


def _field_type(annotation: Any, default: Any) -> Any:
    """The schema type of one parameter: its annotation when it is one OmegaConf can check
    (bool, int, float, str, each optionally Optional), else its default's type; ``Any`` when
    neither says (a list, an object, no annotation and no default). A ``None`` default makes
    the type Optional; a default that the annotation contradicts makes it ``Any``."""
    optional = default is None
    kind: Any = Any
    if annotation is not _EMPTY and not isinstance(annotation, str):
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            annotation = args[0] if len(args) == 1 else Any
        if annotation in _PRIMITIVES:
            kind = annotation
    elif default is not _EMPTY and default is not None and type(default) in _PRIMITIVES:
        kind = type(default)
    if kind is not Any and default is not _EMPTY and default is not None and not _fits(kind, default):
        kind = Any  # a plugin's annotation that its own default breaks: its default still runs
    return Optional[kind] if optional and kind is not Any else kind


def _class_name(kind: str, name: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", f"{name} {kind}")
    return "".join(w[:1].upper() + w[1:] for w in words) + "Config"


def schema_of(kind: str, name: str, factory: Callable[..., Any]) -> type:
    """The structured-config schema of the component ``kind`` registered as ``name``: a
    dataclass with ``name`` and one field per keyword parameter whose default a config can hold
    (the same keys as ``component_node``). Made once per component and process."""
    try:
        return _cached_schema(kind, name, factory)
    except TypeError:  # a factory that cannot be hashed (a callable instance defining __eq__ only)
        return _make_schema(kind, name, factory)


def _make_schema(kind: str, name: str, factory: Callable[..., Any]) -> type:
    fields: list[tuple[str, Any, Any]] = [("name", str, dataclasses.field(default=name))]
    defaults: dict[str, Any] = {}
    for param in _parameters(factory):
        ok, value = yaml_value(param.default)
        if not ok or param.name == "name":
            continue
        defaults[param.name] = param.default
        field_type = _field_type(param.annotation, param.default)
        if param.default is _EMPTY:
            spec = dataclasses.field(default=MISSING)
        elif isinstance(value, list):
            spec = dataclasses.field(default_factory=functools.partial(list, value))
        else:
            spec = dataclasses.field(default=value)
        fields.append((param.name, field_type, spec))
    schema = dataclasses.make_dataclass(
        _class_name(kind, name), fields, namespace={COMPONENT_ATTR: (kind, name), DEFAULTS_ATTR: defaults}
    )
    _made[schema.__name__] = schema
    return schema


# Every schema made in this process by its class name, the one thing OmegaConf's OverflowError
# says of the node it was setting (``object_type=SgdOptimizerConfig``).
_made: dict[str, type] = {}

_cached_schema = functools.lru_cache(maxsize=None)(_make_schema)


def schema_fields(schema: type) -> dict[str, Any]:
    """Field name -> schema type."""
    return {f.name: f.type for f in dataclasses.fields(schema)}


def _base(field_type: Any) -> Any:
    args = [a for a in typing.get_args(field_type) if a is not type(None)]
    return args[0] if typing.get_origin(field_type) is typing.Union and len(args) == 1 else field_type


TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def value_error(
    prefix: str, owner: str, param: str, value: Any, field_type: Any, default: Any, *, type_ok: bool = True
) -> ConfigError | None:
    """The one-line error for ``prefix.param=value``, or None when the value is fine.
    ``type_ok``: whether the schema took the value; what a type cannot say (a finite number,
    ``optimizer.lr > 0``, a 32-bit seed) is checked either way."""
    key = f"{prefix}.{param}"
    if prefix == "optimizer" and param == "lr" and _is_number(value) and not (value > 0 and is_finite(value)):
        return ConfigError(key=key, value=value, valid="a finite number > 0")
    if param == "seed" and (default is None or _is_int(default)):
        if value is None or is_seed(value):
            return None
        return ConfigError(key=key, value=value, problem=f"is invalid for {owner}", valid=f"{SEED_VALID} or null")
    words = TYPE_WORDS.get(_base(field_type))
    if words == "a number" and _is_number(value) and not is_finite(value):
        words = "a finite number"  # nan, inf, or an int too large for a float
    elif type_ok or words is None:
        return None
    valid = words if default is _EMPTY else f"{words} (default {default!r})"
    return ConfigError(key=key, value=value, problem=f"is invalid for {owner}", valid=valid)


def check_hyperparameters(prefix: str, owner: str, schema: type, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` (a component's keyword hyperparameters, without ``name``) through ``schema``:
    converted as OmegaConf converts them (an int where a float is declared becomes a float), or
    a ConfigError for the first value that the schema or a range refuses. Keys the schema does
    not have are passed on unchanged: the registry names them (or a ``**kwargs`` factory takes them)."""
    fields = schema_fields(schema)
    defaults = getattr(schema, DEFAULTS_ATTR)
    node = OmegaConf.structured(schema)
    out = dict(params)
    for param, value in params.items():
        if param == "name" or param not in fields:
            continue
        try:
            node[param] = value
        except (ValidationError, OverflowError):
            error = value_error(prefix, owner, param, value, fields[param], defaults[param], type_ok=False)
            raise (error or ConfigError(key=f"{prefix}.{param}", value=value, problem=f"is invalid for {owner}")) from None
        converted = OmegaConf.to_container(node, resolve=False)[param]  # type: ignore[index]
        error = value_error(prefix, owner, param, converted, fields[param], defaults[param])
        if error is not None:
            raise error
        out[param] = converted
    return out


# -- OmegaConf's errors, as ConfigErrors ------------------------------------------------------------

_FULL_KEY = re.compile(r"full_key: (\S+)")


def _too_large(text: str) -> int | None:
    try:
        number = int(text.replace("_", ""))
    except ValueError:
        return None
    try:
        float(number)
    except OverflowError:
        return number
    return None


def _overflowing_value(key: str, overrides: Sequence[str]) -> int | None:
    """The integer too large for a float that the command line (or a job's overrides) set
    ``key`` to. OmegaConf's OverflowError names the key but not the value; the value is the
    one the user typed, found in the overrides they gave (every value of a sweep's list)."""
    for text in reversed(list(overrides)):
        name, sep, value = text.partition("=")
        if not sep or name.lstrip("+~") != key:
            continue
        for item in re.split(r"[,()\[\]\s]+", value):
            number = _too_large(item)
            if number is not None:
                return number
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def config_error(exc: BaseException, overrides: Sequence[str] = ()) -> ConfigError | None:
    """A value that a generated component schema refused while a config was composed (Hydra's
    ConfigCompositionException around OmegaConf's ValidationError, or OmegaConf's OverflowError),
    as the ConfigError the same value gets from ``check_hyperparameters``; None for anything else.
    ``overrides``: the command line (or the job's overrides) that was composed, where the value
    an OverflowError does not carry is found."""
    for error in _chain(exc):
        if isinstance(error, ValidationError):
            schema = getattr(error, "object_type", None)
            key, value = getattr(error, "full_key", None), getattr(error, "value", None)
        elif isinstance(error, OverflowError):
            found = _FULL_KEY.search(str(error))
            object_type = re.search(r"object_type=(\S+)", str(error))
            if found is None:
                continue
            key = found.group(1)
            value = _overflowing_value(key, overrides)
            schema = _made.get(object_type.group(1)) if object_type else None
            if value is None or schema is None:
                continue
        else:
            continue
        component = getattr(schema, COMPONENT_ATTR, None)
        if component is None or not key or "." not in str(key):
            continue
        kind, name = component
        prefix, param = str(key).rsplit(".", 1)
        fields = schema_fields(schema)
        if param not in fields:
            continue
        default = getattr(schema, DEFAULTS_ATTR).get(param, _EMPTY)
        result = value_error(prefix, f"{kind}={name}", param, value, fields[param], default, type_ok=False)
        return result or ConfigError(key=str(key), value=value, problem=f"is invalid for {kind}={name}")
    return None
