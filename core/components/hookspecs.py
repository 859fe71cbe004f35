"""The plugin contract: one marker pair and four registration hooks.

Each hook receives a ``register(name, factory)`` callback (the style of ``llm`` and ``tox``)
and calls it once per component it provides. ``factory`` is a class (or any callable) whose
keyword arguments are the component's hyperparameters; the registry builds instances from it.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT_NAME = "backproplab"
ENTRY_POINT_GROUP = "backproplab"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[[str, Callable[..., Any]], None]


@hookspec
def register_activations(register: Register) -> None:
    """Called once at start-up, when plugins are loaded. Call ``register(name, factory)`` for
    each activation. An activation provides ``forward(z) -> a`` and
    ``backward(z, a, grad_a) -> grad_z`` (a vector-Jacobian product). Return nothing."""


@hookspec
def register_losses(register: Register) -> None:
    """Called once at start-up. Call ``register(name, factory)`` for each loss. A loss provides
    ``value(y_hat, y) -> float`` and ``grad(y_hat, y) -> dE/dy_hat`` with E the batch mean,
    and optionally ``prepare(y, n_outputs)`` and ``accuracy(y_hat, y)``. Return nothing."""


@hookspec
def register_initializers(register: Register) -> None:
    """Called once at start-up. Call ``register(name, factory)`` for each initialiser. An
    initialiser is called as ``init(shape, rng, dtype)`` with shape ``(fan_out, fan_in)`` and
    returns a new array. Return nothing."""


@hookspec
def register_optimizers(register: Register) -> None:
    """Called once at start-up. Call ``register(name, factory)`` for each optimizer. An
    optimizer provides ``step(params, grads)``, updating the arrays of ``params`` in place and
    keeping its state keyed by parameter name. Return nothing."""
