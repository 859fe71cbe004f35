"""Conformance checks for training callbacks: any of ``on_train_begin(trainer)``,
``on_iteration(step)``, ``on_epoch_end(summary)`` and ``on_train_end(history)``.

A callback watches a real (small) training run. It must run with and without validation data,
must not write what it is shown (a ``Step``'s arrays are read-only views; writing one raises),
and must not change the training it watches: every iteration's loss is the one a run without it
has, for as many iterations as it lets the run go. It may stop training early, and on a stop it
may restore parameters (early stopping's ``restore_best``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backproplab.components.build import build_network, build_trainer

from ._checks import register_check, run_checks
from ._subject import builds_from_keywords, call, fail, fresh

KIND = "callback"
EPOCHS = 6


def _data(seed: int):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)
    return X[:30], y[:30], X[30:], y[30:]


def _fit(component: Any, callbacks: list[Any], *, seed: int, validation: bool, epochs: int):
    __tracebackhide__ = True
    X, y, X_val, y_val = _data(seed)
    net = build_network([2, 6, 1], activation="tanh", output_activation="sigmoid", seed=seed)
    trainer = build_trainer(net, loss="bce", optimizer={"name": "sgd", "lr": 0.5}, callbacks=callbacks,
                            batch_size=8, epochs=epochs, seed=seed)
    data = "with validation data" if validation else "without validation data"
    history = call(KIND, component, f"watching a {epochs}-epoch run {data}", trainer.fit, X, y,
                   validation_data=(X_val, y_val) if validation else None)
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


def check_callback(callback: Any, **options: Any) -> None:
    """Run every callback check on a class (built with its defaults) or an instance.

    Options: ``seed``; ``epochs`` (default 6). Raises AssertionError naming the component and
    the violated property.
    """
    __tracebackhide__ = True
    run_checks(callback, KIND, options)
