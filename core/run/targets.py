"""Fitting the network's output layer to the data: its width and the target encoding.

The width comes from the data unless ``model.output_width`` sets it: the number of target
columns for regression, the number of classes for multiclass, and for two classes one output
(0/1 targets) unless the loss only accepts one-hot rows (e.g. ``cross_entropy``), then two.
Class labels are one-hot encoded whenever the width equals the number of classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import Dataset
from backproplab.errors import ConfigError


def encode(dataset: Dataset, y: np.ndarray, width: int) -> np.ndarray:
    if dataset.task == "regression":
        return y
    if width == 1:
        return y.reshape(-1, 1)
    return np.eye(width)[y.astype(np.intp)]


def valid_widths(dataset: Dataset) -> list[int]:
    if dataset.task == "regression":
        return [dataset.n_targets]
    k = dataset.n_classes or 2
    return [1, 2] if k == 2 else [k]


def _describe(dataset: Dataset) -> str:
    if dataset.task == "regression":
        return f"data={dataset.name} with {dataset.n_targets} regression target(s)"
    return f"data={dataset.name} with {dataset.n_classes} classes"


def _accepts(loss: Any, y: np.ndarray, width: int) -> str | None:
    """None if the loss accepts these targets at this width, else its one-line complaint."""
    prepare = getattr(loss, "prepare", None)
    if prepare is None:
        return None
    try:
        prepare(y, width)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def output_width(dataset: Dataset, loss: Any, loss_name: str, requested: int | None) -> int:
    """The output layer's width, or a one-line ConfigError naming the key that does not fit."""
    widths = valid_widths(dataset)
    if requested is not None:
        if requested not in widths:
            raise ConfigError(
                f"model.output_width={requested} does not fit {_describe(dataset)}; "
                f"valid: {' or '.join(map(str, widths))} (or null to derive it from the data)"
            )
        candidates = [requested]
    else:
        candidates = widths
    y = dataset.y_train
    if dataset.task != "regression":
        # Every class, not only those in the training split: the worked example's single label 1
        # would otherwise pass as a one-hot row of width 1, and a softmax over one output is 1.
        y = np.concatenate([y, np.arange(dataset.n_classes or 2, dtype=y.dtype)])
    complaints = []
    for width in candidates:
        problem = _accepts(loss, encode(dataset, y, width), width)
        if problem is None:
            return width
        complaints.append(problem)
    raise ConfigError(f"loss={loss_name} does not fit {_describe(dataset)}: {complaints[0]}")
