"""Built-in learning-rate schedules, stepped once per epoch, with the semantics and parameter
names of ``torch.optim.lr_scheduler`` (``T_max`` is written ``t_max``).

Each computes the next rate from the rate in force as torch's schedulers do (their chainable
form), so a run matches torch's epoch for epoch. ``initial_lr(base_lr)`` is the first epoch's
rate; ``next_lr(epoch, lr, metrics)`` is called when epoch ``epoch`` (0-based) has ended, as
torch's ``scheduler.step()`` is, and returns the rate of the next one.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Mapping, Sequence

from backproplab import hookimpl
from backproplab.validation import check_fraction, check_nonnegative_float, check_positive_int

from .monitoring import check_monitor, monitored, resolve_mode

class Constant:
    """The rate the optimizer was configured with, every epoch: the default, which changes nothing."""

    constant = True

    def initial_lr(self, base_lr: float) -> float:
        return base_lr

    def next_lr(self, epoch: int, lr: float, metrics: Mapping[str, float]) -> float:
        return lr


class StepLR:
    """torch's StepLR: the rate times ``gamma`` every ``step_size`` epochs."""

    def __init__(self, step_size: int = 10, gamma: float = 0.1):
        self.step_size = check_positive_int("step_size", step_size)
        self.gamma = check_nonnegative_float("gamma", gamma)

    def initial_lr(self, base_lr: float) -> float:
        return base_lr

    def next_lr(self, epoch: int, lr: float, metrics: Mapping[str, float]) -> float:
        return lr * self.gamma if (epoch + 1) % self.step_size == 0 else lr


class MultiStepLR:
    """torch's MultiStepLR: the rate times ``gamma`` at each epoch listed in ``milestones``
    (counted as torch counts them: milestone 3 makes epoch 3, the fourth, the first slower one)."""

    def __init__(self, milestones: Sequence[int] = (30, 80), gamma: float = 0.1):
        if isinstance(milestones, (str, bytes)) or not all(
            isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in milestones
        ):
            raise ValueError(f"milestones must be a list of positive integers, got {milestones!r}")
        self.milestones = Counter(int(m) for m in milestones)
        self.gamma = check_nonnegative_float("gamma", gamma)

    def initial_lr(self, base_lr: float) -> float:
        return base_lr

    def next_lr(self, epoch: int, lr: float, metrics: Mapping[str, float]) -> float:
        times = self.milestones.get(epoch + 1, 0)
        return lr * self.gamma**times if times else lr


class ExponentialLR:
    """torch's ExponentialLR: the rate times ``gamma`` after every epoch."""

    def __init__(self, gamma: float = 0.9):
        self.gamma = check_nonnegative_float("gamma", gamma)

    def initial_lr(self, base_lr: float) -> float:
        return base_lr

    def next_lr(self, epoch: int, lr: float, metrics: Mapping[str, float]) -> float:
        return lr * self.gamma


class CosineAnnealingLR:
    """torch's CosineAnnealingLR: from the base rate down to ``eta_min`` along half a cosine over
    ``t_max`` epochs (and back up over the next ``t_max``, as torch's does)."""

    def __init__(self, t_max: int = 10, eta_min: float = 0.0):
        self.t_max = check_positive_int("t_max", t_max)
        self.eta_min = check_nonnegative_float("eta_min", eta_min)
        self.base_lr: float | None = None

    def initial_lr(self, base_lr: float) -> float:
        self.base_lr = base_lr
        return base_lr

    def next_lr(self, epoch: int, lr: float, metrics: Mapping[str, float]) -> float:
        t, t_max, eta_min = epoch + 1, self.t_max, self.eta_min
        base_lr = lr if self.base_lr is None else self.base_lr
        if (t - 1 - t_max) % (2 * t_max) == 0:
            return lr + (base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
        return (1 + math.cos(math.pi * t / t_max)) / (1 + math.cos(math.pi * (t - 1) / t_max)) * (lr - eta_min) + eta_min


class LinearLR:
    """torch's LinearLR (a warm-up): the base rate times a factor that goes linearly from
    ``start_factor`` to ``end_factor`` over ``total_iters`` epochs, then stays."""

    def __init__(self, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5):
        self.start_factor = check_fraction("start_factor", start_factor, low_open=True, high_open=False)
        self.end_factor = check_fraction("end_factor", end_factor, high_open=False)
        self.total_iters = check_positive_int("total_iters", total_iters)

    def initial_lr(self, base_lr: float) -> float:
        return base_lr * self.start_factor

    def next_lr(self, epoch: int, lr: float, metrics: Mapping[str, float]) -> float:
        t = epoch + 1
        if t > self.total_iters:
            return lr
        start, end = self.start_factor, self.end_factor
        return lr * (1.0 + (end - start) / (self.total_iters * start + (t - 1) * (end - start)))


class ReduceLROnPlateau:
    """torch's ReduceLROnPlateau: the rate times ``factor`` (not below ``min_lr``) once the
    monitored number has not improved for more than ``patience`` epochs, then ``cooldown`` epochs
    of rest. ``monitor`` is ``val/loss`` with a validation split, else ``train/loss`` (``auto``);
    ``mode`` ``auto`` minimises a loss and maximises an accuracy."""

    def __init__(
        self,
        mode: str = "auto",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
        monitor: str = "auto",
    ):
        self.monitor = check_monitor(monitor)
        resolve_mode(mode, "loss")  # checks the value; auto is settled per monitored name
        self.mode = mode
        self.factor = check_fraction("factor", factor, low_open=True)
        if not (isinstance(patience, int) and not isinstance(patience, bool) and patience >= 0):
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        self.patience = patience
        self.threshold = check_nonnegative_float("threshold", threshold)
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be rel or abs, got {threshold_mode!r}")
        self.threshold_mode = threshold_mode
        if not (isinstance(cooldown, int) and not isinstance(cooldown, bool) and cooldown >= 0):
            raise ValueError(f"cooldown must be an integer >= 0, got {cooldown!r}")
        self.cooldown = cooldown
        self.min_lr = check_nonnegative_float("min_lr", min_lr)
        self.eps = check_nonnegative_float("eps", eps)
        self.best: float | None = None
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def initial_lr(self, base_lr: float) -> float:
        self.best, self.num_bad_epochs, self.cooldown_counter = None, 0, 0
        return base_lr

    def _better(self, value: float, best: float, mode: str) -> bool:
        if self.threshold_mode == "rel":
            return value < best * (1 - self.threshold) if mode == "min" else value > best * (1 + self.threshold)
        return value < best - self.threshold if mode == "min" else value > best + self.threshold

    def next_lr(self, epoch: int, lr: float, metrics: Mapping[str, float]) -> float:
        name, value = monitored(self.monitor, metrics)
        mode = resolve_mode(self.mode, name)
        if self.best is None:
            self.best = math.inf if mode == "min" else -math.inf
        if self._better(value, self.best, mode):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
            reduced = max(lr * self.factor, self.min_lr)
            if lr - reduced > self.eps:
                return reduced
        return lr


@hookimpl
def register_schedules(register):
    register("constant", Constant)
    register("step", StepLR)
    register("multistep", MultiStepLR)
    register("exponential", ExponentialLR)
    register("cosine", CosineAnnealingLR)
    register("linear", LinearLR)
    register("plateau", ReduceLROnPlateau)
