"""The plugin contract: one marker pair and one registration hook per kind of component.

Each hook receives a ``register(name, factory, aliases=())`` callback (the style of ``llm`` and
``tox``) and calls it once per component it provides. ``factory`` is a class (or any callable)
whose keyword arguments are the component's hyperparameters; the registry builds instances from
it. ``aliases`` are other names for the same component (``register("sigmoid", Sigmoid,
aliases=("logistic",))``): each is usable wherever the name is, and reports and error texts name
the component by its first name. The interfaces themselves are the Protocols of
``backproplab.components.protocols``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol

import pluggy

PROJECT_NAME = "backproplab"
ENTRY_POINT_GROUP = "backproplab"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

class Register(Protocol):
    """The callback every registration hook receives."""

    def __call__(self, name: str, factory: Callable[..., Any], *, aliases: Iterable[str] = ()) -> None: ...


@hookspec
def register_activations(register: Register) -> None:
    """Called once at start-up, when plugins are loaded. Call ``register(name, factory,
    aliases=())`` for each activation. An activation provides ``forward(z) -> a`` and
    ``backward(z, a, grad_a) -> grad_z`` (a vector-Jacobian product). Return nothing."""


@hookspec
def register_losses(register: Register) -> None:
    """Called once at start-up. Call ``register(name, factory, aliases=())`` for each loss. A loss provides
    ``value(y_hat, y) -> float`` and ``grad(y_hat, y) -> dE/dy_hat`` with E the batch mean,
    and optionally ``prepare(y, n_outputs)`` and ``accuracy(y_hat, y)``. Return nothing."""


@hookspec
def register_initializers(register: Register) -> None:
    """Called once at start-up. Call ``register(name, factory, aliases=())`` for each initialiser. An
    initialiser is called as ``init(shape, rng, dtype)`` with shape ``(fan_out, fan_in)`` and
    returns a new array. Return nothing."""


@hookspec
def register_optimizers(register: Register) -> None:
    """Called once at start-up. Call ``register(name, factory, aliases=())`` for each optimizer. An
    optimizer provides ``step(params, grads)``, updating the arrays of ``params`` in place and
    keeping its state keyed by parameter name. Return nothing."""


@hookspec
def register_datasets(register: Register) -> None:
    """Called once at start-up. Call ``register(name, factory, aliases=())`` for each data set,
    which then is ``data=NAME``. The factory's keyword parameters are its ``data.KEY=`` options;
    called with them, it returns ``(X, y)``, ``backproplab.Examples(X, y, feature_names=...,
    class_names=..., task=..., source=...)`` or an object with ``data`` and ``target`` arrays
    (scikit-learn's ``Bunch``). Splitting, scaling, batching and class-name encoding are the
    framework's. Return nothing."""


@hookspec
def register_schedules(register: Register) -> None:
    """Called once at start-up. Call ``register(name, factory, aliases=())`` for each
    learning-rate schedule. A schedule provides ``initial_lr(base_lr) -> lr`` and
    ``next_lr(epoch, lr, metrics) -> lr``; the trainer sets the result as the optimizer's ``lr``
    before the first epoch and after every epoch. Return nothing."""


@hookspec
def register_callbacks(register: Register) -> None:
    """Called once at start-up. Call ``register(name, factory, aliases=())`` for each training
    callback. A callback provides any of ``on_train_begin(trainer)``, ``on_iteration(step)``,
    ``on_epoch_end(summary)`` and ``on_train_end(history)``; it may stop training by setting
    ``trainer.stop_training = True``. One that keeps state across epochs exports it with
    ``state_dict()``/``load_state_dict(state)``, so a resumed run ends as the uninterrupted one.
    Return nothing."""
