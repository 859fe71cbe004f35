"""What the kit is checking: a component class or instance, its kind, and how to get fresh copies.

A class is built with its default hyperparameters; an instance is deep-copied whenever a check
needs a pristine one (two fresh optimizers, an initialiser before its first draw), so state left
by one check never leaks into the next.
"""

from __future__ import annotations

import copy
import inspect
import io
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from backproplab.components.protocols import CALLBACK_HOOKS, PROTOCOLS, required_methods

# A data set is a factory function, with no Protocol of its own.
KINDS = (*PROTOCOLS, "dataset")

# Values a Hydra/OmegaConf node can hold, so a default is also a valid config value.
_CONFIG_SCALARS = (type(None), bool, int, float, str)


def component_class(component: Any) -> type:
    return component if isinstance(component, type) else type(component)


def label(component: Any) -> str:
    if inspect.isfunction(component):  # a data set's factory
        return component.__qualname__
    return component_class(component).__name__


def fail(kind: str, component: Any, message: str) -> None:
    __tracebackhide__ = True
    raise AssertionError(f"{kind} {label(component)}: {message}")


def expect_array_like(kind: str, component: Any, what: str, out: Any, reference: np.ndarray, reference_name: str) -> None:
    """``out`` must be an ndarray with ``reference``'s shape and dtype (float32 stays float32)."""
    __tracebackhide__ = True
    if not isinstance(out, np.ndarray):
        fail(kind, component, f"{what} returned {type(out).__name__}, not a numpy array")
    if out.shape != reference.shape:
        fail(kind, component, f"{what} changed the shape: {reference_name} {reference.shape}, {what} {out.shape}")
    if out.dtype != reference.dtype:
        fail(kind, component, f"{what} changed the dtype: {reference_name} {reference.dtype}, {what} {out.dtype}")


def fresh(kind: str, component: Any) -> Any:
    """A pristine instance: a class built with its defaults, or a deep copy of an instance."""
    __tracebackhide__ = True
    if isinstance(component, type):
        try:
            return component()
        except Exception as exc:
            fail(kind, component, f"cannot be built with its default hyperparameters: {type(exc).__name__}: {exc}")
    try:
        return copy.deepcopy(component)
    except Exception as exc:
        fail(kind, component, f"cannot be copied with copy.deepcopy ({type(exc).__name__}: {exc}); "
             "pass the class instead of an instance")


def _defines_call(cls: type) -> bool:
    return any("__call__" in vars(k) for k in cls.__mro__ if k is not object)


def detect_kind(component: Any) -> str:
    """The kind of a component, from the methods its interface requires."""
    if inspect.isfunction(component):  # components are classes; a data set is its factory function
        return "dataset"
    cls = component_class(component)
    # The kinds whose Protocol's methods the class has; every class is callable (it constructs),
    # so an initializer is one that defines __call__ and matches no other kind.
    # A callback needs any one of its hooks, not all of them.
    found = [
        kind
        for kind, protocol in PROTOCOLS.items()
        if kind not in ("initializer", "callback") and all(callable(getattr(cls, m, None)) for m in required_methods(protocol))
    ]
    if not found and any(callable(getattr(cls, hook, None)) for hook in CALLBACK_HOOKS):
        found.append("callback")
    if not found and _defines_call(cls):
        found.append("initializer")
    if len(found) != 1:
        what = "matches none of" if not found else f"matches several ({', '.join(found)}) of"
        raise TypeError(
            f"{cls.__name__} {what} the component interfaces: activation (forward, backward), "
            "loss (value, grad), optimizer (step), initializer (__call__), schedule (initial_lr, next_lr), "
            f"callback (any of {', '.join(CALLBACK_HOOKS)}); pass kind= explicitly"
        )
    return found[0]


def _is_config_value(value: Any) -> bool:
    if isinstance(value, _CONFIG_SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_config_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_config_value(v) for k, v in value.items())
    return False


def keyword_hyperparameters(kind: str, component: Any) -> dict[str, Any]:
    """The constructor's hyperparameters with their defaults; fails unless a config can build it.

    Hydra builds components from a config node, i.e. from keyword arguments whose values are
    plain config values. So every constructor parameter needs a default, must be passable by
    keyword, and its default must be something a YAML file can hold.
    """
    __tracebackhide__ = True
    cls = component_class(component)
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError) as exc:
        fail(kind, component, f"constructor signature cannot be inspected ({exc}), so a config cannot build it")
    params: dict[str, Any] = {}
    for p in sig.parameters.values():
        if p.kind is p.POSITIONAL_ONLY:
            fail(kind, component, f"hyperparameter {p.name!r} is positional-only; hyperparameters must be keyword arguments")
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            fail(kind, component, f"hyperparameter {p.name!r} has no default; every hyperparameter needs one "
                 "so that the component can be built from a config that does not mention it")
        if not _is_config_value(p.default):
            fail(kind, component, f"the default of hyperparameter {p.name!r} is {p.default!r} "
                 f"({type(p.default).__name__}), which a config file cannot hold; use None, bool, int, float, str or a list")
        params[p.name] = p.default
    return params


def builds_from_keywords(kind: str, component: Any) -> None:
    """Every constructor parameter has a config-friendly default, and building with them works."""
    __tracebackhide__ = True
    params = keyword_hyperparameters(kind, component)
    call(kind, component, f"building from keyword hyperparameters {params}", component_class(component), **params)


@contextmanager
def strict_floats(kind: str, component: Any, doing: str) -> Iterator[None]:
    """Turn numpy overflow, invalid operations and division by zero into check failures.

    A result can be finite even though an intermediate overflowed (``1 / (1 + exp(1000))``);
    users would still see RuntimeWarnings in every epoch, so the kit reports it. Underflow to
    zero is normal in these functions and is allowed.
    """
    __tracebackhide__ = True
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            yield
    except FloatingPointError as exc:
        fail(kind, component, f"{doing}: numpy floating-point error ({exc}); compute it in a numerically stable form")


def call(kind: str, component: Any, doing: str, fn, *args, **kwargs):
    """Call a component method, turning an unexpected exception into a check failure that says
    what was being done."""
    __tracebackhide__ = True
    try:
        return fn(*args, **kwargs)
    except AssertionError:
        raise
    except FloatingPointError:
        raise
    except Exception as exc:
        fail(kind, component, f"{doing} raised {type(exc).__name__}: {exc}")


def through_npz(kind: str, component: Any, state: Any) -> dict[str, np.ndarray]:
    """A component's ``state_dict()`` written with ``np.savez`` and read back without pickle, as
    a run's checkpoint stores it; a state that cannot be stored so fails the check."""
    __tracebackhide__ = True
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        fail(kind, component, f"state_dict() returned {type(state).__name__}; valid: a dict of string keys to numpy arrays")
    for key, value in state.items():
        if not isinstance(value, np.ndarray) or value.dtype.hasobject:
            fail(kind, component, f"state_dict()[{key!r}] is {type(value).__name__}"
                 f"{'' if not isinstance(value, np.ndarray) else ' of objects'}; valid: a numeric numpy array "
                 "(a 0-d array for a scalar), which a checkpoint's npz file stores without pickle")
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}
