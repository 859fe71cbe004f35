"""Conformance checks for learning-rate schedules: ``initial_lr(base_lr)`` and
``next_lr(epoch, lr, metrics)``, stepped once per epoch by the trainer, which sets each answer
as the optimizer's ``lr``.

A schedule's rates must be finite numbers >= 0, the same for the same inputs, independent of
the instance's history once ``initial_lr`` starts it again (a trainer's second ``fit`` starts
over), and the metrics it is shown are the trainer's, to read only.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numpy as np

from ._checks import register_check, run_checks
from ._subject import builds_from_keywords, call, fail, fresh

KIND = "schedule"
EPOCHS = 30
BASE_LR = 0.1


def _metrics(seed: int, epochs: int) -> list[MappingProxyType]:
    """Per-epoch numbers as a run produces them: losses that fall, then level off and wobble."""
    rng = np.random.default_rng(seed)
    losses = 1.0 / np.arange(1, epochs + 1) + 0.05 * rng.random(epochs)
    out = []
    for epoch in range(epochs):
        numbers = {
            "train/loss": float(losses[epoch]),
            "val/loss": float(losses[epoch] * 1.1),
            "train/accuracy": float(1 - losses[epoch] / 2),
            "val/accuracy": float(1 - losses[epoch] / 1.8),
        }
        out.append(MappingProxyType(numbers))  # read-only: the trainer's numbers
    return out


def rates(component: Any, schedule: Any, *, seed: int = 0, epochs: int = EPOCHS, base_lr: float = BASE_LR) -> list[float]:
    """The rate of every epoch, as the trainer would set them."""
    __tracebackhide__ = True
    lr = call(KIND, component, f"initial_lr({base_lr})", schedule.initial_lr, base_lr)
    out = [lr]
    for epoch, metrics in enumerate(_metrics(seed, epochs - 1)):
        lr = call(KIND, component, f"next_lr({epoch}, {lr!r}, metrics)", schedule.next_lr, epoch, lr, metrics)
        out.append(lr)
    return out


@register_check(KIND)
def check_schedule_builds_from_keywords(schedule: Any) -> None:
    """Every constructor parameter has a config-friendly default; building with them works."""
    __tracebackhide__ = True
    builds_from_keywords(KIND, schedule)


@register_check(KIND)
def check_schedule_rates_are_finite(schedule: Any, *, seed: int = 0, epochs: int = EPOCHS) -> None:
    """Every rate, from ``initial_lr`` and each ``next_lr``, is a real number, finite and >= 0,
    and ``next_lr`` only reads the metrics it is given."""
    __tracebackhide__ = True
    for epoch, lr in enumerate(rates(schedule, fresh(KIND, schedule), seed=seed, epochs=epochs)):
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
            fail(KIND, schedule, f"the rate of epoch {epoch + 1} is {lr!r} ({type(lr).__name__}), not a number")
        if not np.isfinite(lr) or lr < 0:
            fail(KIND, schedule, f"the rate of epoch {epoch + 1} is {lr!r}; a rate is a finite number >= 0")


@register_check(KIND)
def check_schedule_is_deterministic(schedule: Any, *, seed: int = 0, epochs: int = EPOCHS) -> None:
    """Two fresh schedules given the same numbers give the same rates."""
    __tracebackhide__ = True
    first = rates(schedule, fresh(KIND, schedule), seed=seed, epochs=epochs)
    second = rates(schedule, fresh(KIND, schedule), seed=seed, epochs=epochs)
    if first != second:
        epoch = next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)
        fail(KIND, schedule, f"two fresh instances disagree at epoch {epoch + 1}: {first[epoch]!r} and {second[epoch]!r}")


@register_check(KIND)
def check_schedule_restarts_at_initial_lr(schedule: Any, *, seed: int = 0, epochs: int = EPOCHS) -> None:
    """``initial_lr`` starts the schedule afresh: a second run of one instance (a trainer's second
    ``fit``) gets the rates of the first, whatever state the first left behind."""
    __tracebackhide__ = True
    instance = fresh(KIND, schedule)
    first = rates(schedule, instance, seed=seed, epochs=epochs)
    second = rates(schedule, instance, seed=seed, epochs=epochs)
    if first != second:
        epoch = next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)
        fail(KIND, schedule, f"a second run from initial_lr differs at epoch {epoch + 1} ({first[epoch]!r}, then "
             f"{second[epoch]!r}); reset the schedule's state in initial_lr")


@register_check(KIND)
def check_schedule_follows_base_lr(schedule: Any, *, seed: int = 0, epochs: int = EPOCHS) -> None:
    """The first rate comes from the configured one: twice the base rate, twice the first rate
    (a warm-up's factor, a constant's identity), so ``optimizer.lr`` keeps its meaning."""
    __tracebackhide__ = True
    one = rates(schedule, fresh(KIND, schedule), seed=seed, epochs=1, base_lr=BASE_LR)[0]
    two = rates(schedule, fresh(KIND, schedule), seed=seed, epochs=1, base_lr=2 * BASE_LR)[0]
    if not np.isclose(two, 2 * one, rtol=1e-12, atol=0):
        fail(KIND, schedule, f"initial_lr({BASE_LR}) is {one!r} but initial_lr({2 * BASE_LR}) is {two!r}; "
             "the first rate should scale with the optimizer's configured lr")


def check_schedule(schedule: Any, **options: Any) -> None:
    """Run every schedule check on a class (built with its defaults) or an instance.

    Options: ``seed``; ``epochs`` (default 30). Raises AssertionError naming the component and
    the violated property.
    """
    __tracebackhide__ = True
    run_checks(schedule, KIND, options)
