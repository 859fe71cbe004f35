"""Conformance checks for training callbacks: any of ``on_train_begin(trainer)``,
``on_iteration(step)``, ``on_epoch_end(summary)`` and ``on_train_end(history)``.

A callback watches a real (small) training run. It must run with and without validation data,
must not write what it is shown (a ``Step``'s arrays are read-only views; writing one raises),
and must not change the training it watches: every iteration's loss is the one a run without it
has, for as many iterations as it lets the run go. It may stop training early, and on a stop it
may restore parameters (early stopping's ``restore_best``). A callback that keeps state across
epochs (a best value, a count of epochs without improvement) exports it with ``state_dict()``
and takes it back with ``load_state_dict(state)``, as an optimizer does, so that a run resumed
from a checkpoint ends as the uninterrupted one does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backproplab.components.build import build_network, build_trainer
from backproplab.numerics.trainer import stateful_callbacks

from ._checks import register_check, run_checks
from ._subject import builds_from_keywords, call, fail, fresh, through_npz

KIND = "callback"
EPOCHS = 6


def _data(seed: int):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)
    return X[:30], y[:30], X[30:], y[30:]


def _fit(component: Any, callbacks: list[Any], *, seed: int, validation: bool, epochs: int, resume: Any = None):
    """A small run watched by ``callbacks``; ``resume``: (position, parameters, history, callback
    state) of a checkpoint to continue from."""
    __tracebackhide__ = True
    X, y, X_val, y_val = _data(seed)
    net = build_network([2, 6, 1], activation="tanh", output_activation="sigmoid", seed=seed)
    trainer = build_trainer(net, loss="bce", optimizer={"name": "sgd", "lr": 0.5}, callbacks=callbacks,
                            batch_size=8, epochs=epochs, seed=seed)
    data = "with validation data" if validation else "without validation data"
    continued = {}
    if resume is not None:
        position, params, history, state = resume
        net.set_params(params)
        continued = {"start": position, "history": history, "callback_state": state}
        data += f", continued from the end of epoch {position.epoch}"
    history = call(KIND, component, f"watching a {epochs}-epoch run {data}", trainer.fit, X, y,
                   validation_data=(X_val, y_val) if validation else None, **continued)
    return trainer, history


@register_check(KIND)
def check_callback_builds_from_keywords(callback: Any) -> None:
    """Every constructor parameter has a config-friendly default; building with them works."""
    __tracebackhide__ = True
    builds_from_keywords(KIND, callback)


@register_check(KIND)
def check_callback_only_watches(callback: Any, *, seed: int = 0, epochs: int = EPOCHS) -> None:
    """With and without validation data, the run it watches has the losses of a run without it,
    iteration for iteration, and ends after at most the epochs asked for."""
    __tracebackhide__ = True
    for validation in (False, True):
        _, reference = _fit(callback, [], seed=seed, validation=validation, epochs=epochs)
        trainer, history = _fit(callback, [fresh(KIND, callback)], seed=seed, validation=validation, epochs=epochs)
        ran = history.iterations
        if not 0 < len(history.epochs) <= epochs:
            fail(KIND, callback, f"the run ended after {len(history.epochs)} epochs of {epochs}")
        if history.losses != reference.losses[:ran]:
            first = next(i for i, (a, b) in enumerate(zip(history.losses, reference.losses)) if a != b)
            fail(KIND, callback, f"the run it watched differs from one without it at iteration {first + 1} "
                 f"(loss {history.losses[first]!r} against {reference.losses[first]!r}); a callback reads, it does not train")


@register_check(KIND)
def check_callback_is_deterministic(callback: Any, *, seed: int = 0, epochs: int = EPOCHS) -> None:
    """Two fresh copies watching the same run stop it at the same epoch, with the same parameters."""
    __tracebackhide__ = True
    first, one = _fit(callback, [fresh(KIND, callback)], seed=seed, validation=True, epochs=epochs)
    second, two = _fit(callback, [fresh(KIND, callback)], seed=seed, validation=True, epochs=epochs)
    if len(one.epochs) != len(two.epochs) or one.stop_reason != two.stop_reason:
        fail(KIND, callback, f"two fresh copies ended the same run differently: after {len(one.epochs)} epochs "
             f"({one.stop_reason!r}) and after {len(two.epochs)} ({two.stop_reason!r})")
    for name, value in first.network.params.items():
        if not np.array_equal(value, second.network.params[name]):
            fail(KIND, callback, f"two fresh copies left different values of {name} behind")


class _Checkpoints:
    """What a checkpoint holds at the end of each epoch the run goes on from: the position, the
    parameters, the history and the watched callback's state (through npz, as a checkpoint
    stores it). Placed after the callback, so its ``on_epoch_end`` has run."""

    def __init__(self, component: Any) -> None:
        self.component = component
        self.taken: list[tuple[Any, ...]] = []
        self._trainer: Any = None

    def on_train_begin(self, trainer: Any) -> None:
        self._trainer = trainer

    def on_epoch_end(self, summary: Any) -> None:
        __tracebackhide__ = True
        trainer = self._trainer
        if trainer.stop_training:
            return
        state = {}
        for key, watched in stateful_callbacks(trainer.callbacks[:1]).items():
            exported = call(KIND, self.component, "state_dict()", watched.state_dict)
            state[key] = through_npz(KIND, self.component, exported)
        params = {name: value.copy() for name, value in trainer.network.params.items()}
        self.taken.append((trainer.position(), params, trainer.history.copy(), state))


@register_check(KIND)
def check_callback_state_round_trips(callback: Any, *, seed: int = 0, epochs: int = EPOCHS) -> None:
    """A run resumed from a checkpoint ends as the uninterrupted one: continued from the end of
    any epoch, with the state ``state_dict()`` exported there loaded into a fresh callback, it
    stops at the same epoch with the same losses and parameters. A callback with one of the two
    methods and not the other cannot be checkpointed; one with neither must keep no state across
    epochs: a fresh instance watching the continued run ends it as the uninterrupted run ends."""
    __tracebackhide__ = True
    has = [callable(getattr(callback, m, None)) for m in ("state_dict", "load_state_dict")]
    if any(has) and not all(has):
        present, missing = ("state_dict", "load_state_dict") if has[0] else ("load_state_dict", "state_dict")
        fail(KIND, callback, f"has {present} but no {missing}: a checkpoint needs both, to export the state and to take it back")
    how = "with its state_dict()" if all(has) else "by a fresh instance (it has no state_dict())"
    checkpoints = _Checkpoints(callback)
    whole, expected = _fit(callback, [fresh(KIND, callback), checkpoints], seed=seed, validation=True, epochs=epochs)
    for resume in checkpoints.taken:
        trainer, history = _fit(callback, [fresh(KIND, callback)], seed=seed, validation=True, epochs=epochs, resume=resume)
        where = f"watched {how} from the end of epoch {resume[0].epoch}"
        if (len(history.epochs), history.stop_reason) != (len(expected.epochs), expected.stop_reason):
            fault = ("the state is incomplete or not restored" if all(has) else
                     "it keeps state across epochs; add state_dict()/load_state_dict() (docs/plugins.md) so a resumed run keeps it")
            fail(KIND, callback, f"{where}, the run ended after {len(history.epochs)} epochs ({history.stop_reason!r}); "
                 f"uninterrupted, after {len(expected.epochs)} ({expected.stop_reason!r}): {fault}")
        if history.losses != expected.losses:
            fail(KIND, callback, f"{where}, the run's losses differ from the uninterrupted run's")
        for name, value in whole.network.params.items():
            if not np.array_equal(value, trainer.network.params[name]):
                fail(KIND, callback, f"{where}, the run ended with other values of {name} than the uninterrupted run")


def check_callback(callback: Any, **options: Any) -> None:
    """Run every callback check on a class (built with its defaults) or an instance.

    Options: ``seed``; ``epochs`` (default 6). Raises AssertionError naming the component and
    the violated property.
    """
    __tracebackhide__ = True
    run_checks(callback, KIND, options)
