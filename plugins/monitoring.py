"""What the built-in ``plateau`` schedule and ``early_stopping`` callback watch: one of an epoch's
numbers by its metric name, and which way is better."""

from __future__ import annotations

from typing import Mapping

# What ``plateau`` and ``early_stopping`` may watch: the epoch's numbers by their metric names.
MONITORS = ("auto", "train/loss", "val/loss", "train/accuracy", "val/accuracy")


def check_monitor(value: str) -> str:
    if value not in MONITORS:
        raise ValueError(f"monitor must be one of {', '.join(MONITORS)}, got {value!r}")
    return value


def monitored(monitor: str, metrics: Mapping[str, float]) -> tuple[str, float]:
    """(name, value) of the watched number: ``auto`` is ``val/loss`` with a validation split,
    else ``train/loss``."""
    name = monitor
    if monitor == "auto":
        name = "val/loss" if "val/loss" in metrics else "train/loss"
    if name not in metrics:
        raise ValueError(f"monitor={name} has no value in this run (it has {', '.join(sorted(metrics))}); "
                         f"{'a validation split (data.val_fraction) is needed' if name.startswith('val/') else 'an accuracy needs a classification loss'}")
    return name, metrics[name]


def resolve_mode(mode: str, monitor: str) -> str:
    """``min`` or ``max``; ``auto`` is ``max`` for an accuracy and ``min`` otherwise (Keras)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be one of auto, min, max, got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if monitor.endswith("accuracy") else "min"
