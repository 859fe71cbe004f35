"""Whether a loss fits the output activation it follows (cross_entropy after softmax, ...).

A loss may declare ``output_activations``: the registered names of the output activations it is
meant to follow. The names are looked up in the registry, so this is a check of the component
system, run where components are built (``build_trainer``, a configured run), never in the
training loop itself.
"""

from __future__ import annotations

from typing import Any, Mapping

from backproplab.errors import ConfigError

from .registry import Registry

# The optional attribute by which a loss names the output activations it is meant to follow.
OUTPUT_ACTIVATIONS = "output_activations"


def _declared_outputs(loss: Any) -> tuple[str, ...]:
    declared = getattr(loss, OUTPUT_ACTIVATIONS, None)
    if declared is None:
        return ()
    if isinstance(declared, str):
        return (declared,)
    return tuple(n for n in declared if isinstance(n, str))


def _activation_factory(registry: Registry, activation: Any) -> tuple[Any, str | None]:
    """(registered factory, name) of an activation name, ``{"name": ...}`` spec or instance;
    (None, None) when no plugin registered it (such an activation is not checked)."""
    if isinstance(activation, Mapping):
        activation = activation.get("name")
    if isinstance(activation, str):
        try:
            return registry.get("activation", activation).factory, activation
        except ConfigError:
            return None, None
    cls = activation if isinstance(activation, type) else type(activation)
    names = registry.names_of("activation", cls)
    return (cls, names[0]) if names else (None, None)


def _fits(registry: Registry, loss: Any, factory: Any) -> bool | None:
    """Whether a loss declares ``factory`` among its output activations; None if it declares none
    that is installed (then nothing is checked)."""
    expected = []
    for name in _declared_outputs(loss):
        try:
            expected.append(registry.get("activation", name).factory)
        except ConfigError:  # declared, but no installed plugin provides it
            continue
    if not expected:
        return None
    return any(factory is f for f in expected)


def _choices(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_output_activation(
    loss: Any,
    output_activation: Any,
    registry: Registry,
    *,
    loss_name: str | None = None,
    cli: bool = False,
) -> None:
    """Refuse a loss and an output activation that do not fit (e.g. cross_entropy after sigmoid).

    A loss may declare ``output_activations``: the registered names of the output activations it
    is meant to follow (aliases included through their registration). A loss that declares
    nothing, and an activation that no plugin registered, are not checked. ``cli`` words the
    advice as command-line overrides rather than as Python arguments.
    """
    factory, activation_name = _activation_factory(registry, output_activation)
    if factory is None or _fits(registry, loss, factory) is not False:
        return
    if loss_name is None:
        names = registry.names_of("loss", type(loss))
        loss_name = names[0] if names else type(loss).__name__
    expected = [n for n in dict.fromkeys(_declared_outputs(loss)) if n in registry.names("activation")]
    # Other losses that declare this activation, one name per loss (aliases skipped).
    alternatives: list[str] = []
    seen = {type(loss)}
    for registration in registry:
        if registration.kind != "loss" or registration.factory in seen:
            continue
        seen.add(registration.factory)
        if _fits(registry, registration.factory, factory):
            alternatives.append(registry.names_of("loss", registration.factory)[0])
    article = "an" if expected[0][0] in "aeiou" else "a"
    wanted = f"{article} {_choices(expected)} output"
    if cli:
        fixes = [f"model.output_activation={n}" for n in expected] + [f"loss={n}" for n in alternatives]
        raise ConfigError(
            f"loss={loss_name} expects {wanted} (got model.output_activation={activation_name}); use {_choices(fixes)}"
        )
    fixes = [f"output_activation={n!r}" for n in expected] + [f"loss={n!r}" for n in alternatives]
    raise ConfigError(f"loss {loss_name!r} expects {wanted} (got {activation_name!r}); use {_choices(fixes)}")
