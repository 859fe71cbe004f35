"""The component interfaces, one typing Protocol per kind.

A component is any class with these methods: nothing needs to inherit from anything. The
Protocols say what the core calls, with which shapes, so that a type checker can check a
plugin, the conformance kit (``backproplab.testing``) can tell a component's kind from its
methods, and the author's guide (docs/plugins.md) can quote one definition. The constructor's
keyword arguments are the component's hyperparameters; they are not part of the Protocol.

Shapes: a batch holds m examples; ``z`` and ``a`` are (m, n_l); ``y_hat`` and ``y`` are
(m, n_outputs); weights are (fan_out, fan_in).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from backproplab.numerics.trainer import EpochSummary, History, Step, Trainer


@runtime_checkable
class Activation(Protocol):
    def forward(self, z: np.ndarray) -> np.ndarray:
        """a = f(z), element-wise or per row (softmax). Must not modify ``z``."""
        ...

    def backward(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        """dE/dz from dE/da: the vector-Jacobian product, so softmax fits too."""
        ...


@runtime_checkable
class Loss(Protocol):
    def value(self, y_hat: np.ndarray, y: np.ndarray) -> float:
        """E = (1/m) sum over the batch of L(y_hat_i, y_i)."""
        ...

    def grad(self, y_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
        """dE/dy_hat, shape (m, n_outputs), already divided by m."""
        ...


@runtime_checkable
class Initializer(Protocol):
    def __call__(self, shape: tuple[int, int], rng: np.random.Generator, dtype: np.dtype = ...) -> np.ndarray:
        """A new array of ``shape`` (fan_out, fan_in), drawn from ``rng``."""
        ...


@runtime_checkable
class Optimizer(Protocol):
    def step(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """Update every array of ``params`` in place from ``grads`` (same keys: W1, b1, ...),
        keeping any state keyed by parameter name."""
        ...


@runtime_checkable
class OptimizerState(Protocol):
    """What an optimizer with state (moments, velocities, step counts) adds so that a run using
    it can be checkpointed and resumed bit for bit. Optional: an optimizer without these two
    methods must keep no state between steps (the conformance kit checks either way).

    The state is a flat mapping of string keys (the built-ins use ``"<field>/<parameter>"``,
    e.g. ``"m/W1"``) to numpy arrays, a step count as a 0-d integer array: a checkpoint stores
    it in an npz file, loaded without pickle."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of the whole state: later steps must not change what was returned."""
        ...

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Replace the state with ``state`` (as ``state_dict`` returned it, after a round trip
        through npz), so that the next steps are exactly those the exporting optimizer would
        have taken."""
        ...


class Schedule(Protocol):
    """A learning-rate schedule, stepped once per epoch. The trainer sets what it returns as the
    optimizer's ``lr`` attribute, which every optimizer reads at each step (docs/plugins.md)."""

    def initial_lr(self, base_lr: float) -> float:
        """The rate of the first epoch, from the optimizer's configured ``lr``."""
        ...

    def next_lr(self, epoch: int, lr: float, metrics: Mapping[str, float]) -> float:
        """The rate of epoch ``epoch + 1``, called when epoch ``epoch`` (0-based) has ended, with
        the rate it ran at and its numbers (``train/loss``, ``val/loss`` with a validation split,
        ``train/accuracy``, ...). A schedule whose rate never changes may set ``constant = True``:
        it then also runs with optimizers that have no ``lr``."""
        ...


@runtime_checkable
class Callback(Protocol):
    """Called by the training loop; implement any of the four hooks (the others may be absent).
    Everything it is given is for reading: the arrays of a ``Step`` are read-only views. It ends
    training after the current epoch with ``trainer.stop_training = True`` (and may say why in
    ``trainer.stop_reason``)."""

    def on_train_begin(self, trainer: "Trainer") -> None: ...

    def on_iteration(self, step: "Step") -> None: ...

    def on_epoch_end(self, summary: "EpochSummary") -> None: ...

    def on_train_end(self, history: "History") -> None: ...


# A callback needs only one of its hooks; a class with any of them is a callback.
CALLBACK_HOOKS = ("on_train_begin", "on_iteration", "on_epoch_end", "on_train_end")


def required_methods(protocol: type) -> tuple[str, ...]:
    """The methods a component of ``protocol``'s kind must have, read off the Protocol itself."""
    return tuple(
        name for name, value in vars(protocol).items() if callable(value) and (not name.startswith("_") or name == "__call__")
    )


PROTOCOLS: dict[str, type] = {
    "activation": Activation,
    "loss": Loss,
    "initializer": Initializer,
    "optimizer": Optimizer,
    "schedule": Schedule,
    "callback": Callback,
}

__all__ = [
    "Activation", "Loss", "Initializer", "Optimizer", "OptimizerState", "Schedule", "Callback",
    "CALLBACK_HOOKS", "PROTOCOLS", "required_methods",
]
