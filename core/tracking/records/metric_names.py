"""Metric names in the article's notation, and the column layout of one logged iteration.

Layer l has ``W<l>`` of shape (n_l, n_{l-1}); ``w<l>_<j>_<k>`` is ``W<l>[j-1, k-1]``, the weight
from input k into neuron j, numbered from 1. A parameter array raveled in C order therefore
lists its elements in exactly the order of ``element_names``, which is what lets the hot path
copy whole arrays into a row without naming anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from backproplab.numerics.trainer import EPOCH_METRIC_NAMES

# "batch/" rather than a bare "loss": MLflow's run page sorts chart sections by the key's prefix
# and puts unprefixed keys last, so a bare "loss" sat below every grad/* and param/* chart.
LOSS = "batch/loss"
EPOCH = "epoch"
# EpochSummary field -> the metric logged at the end of each epoch (``train/lr``: the rate in force).
EPOCH_METRICS = EPOCH_METRIC_NAMES
_PARAM = re.compile(r"^([Wb])(\d+)$")


def element_names(param: str, shape: tuple[int, ...]) -> list[str]:
    """``W2`` of shape (1, 4) -> ``w2_1_1 ... w2_1_4``; ``b1`` of shape (4,) -> ``b1_1 ... b1_4``."""
    match = _PARAM.match(param)
    if match is None:
        raise ValueError(f"parameter name {param!r} is not in the W<l>/b<l> notation")
    kind, layer = match.groups()
    if kind == "W":
        rows, cols = shape
        return [f"w{layer}_{j}_{k}" for j in range(1, rows + 1) for k in range(1, cols + 1)]
    (rows,) = shape
    return [f"b{layer}_{j}" for j in range(1, rows + 1)]


@dataclass(frozen=True)
class Slot:
    """Where one parameter's values land in a row: ``row[start:stop]`` (C-order elements)."""

    param: str
    start: int
    stop: int


@dataclass(frozen=True)
class MetricLayout:
    """The columns of one logged iteration.

    Column 0 is ``batch/loss``; then, per layer, ``grad_norm/W<l>``, ``grad_norm/b<l>`` and
    ``weight_norm/W<l>``; then, when ``elementwise``, every ``grad/*`` element followed by every
    ``param/*`` element; the last column is ``epoch`` (epochs completed, fractional). Norm
    columns hold squared norms until ``finish_rows`` takes the root.
    """

    keys: tuple[str, ...]
    norm_columns: tuple[tuple[int, str, str], ...]  # (column, "grad" | "weight", param)
    grad_slots: tuple[Slot, ...]
    param_slots: tuple[Slot, ...]

    @property
    def elementwise(self) -> bool:
        return bool(self.grad_slots)

    @property
    def n_columns(self) -> int:
        return len(self.keys)

    @property
    def epoch_column(self) -> int:
        return len(self.keys) - 1

    @property
    def n_summary(self) -> int:
        """Leading columns that are kept for the plots: loss and the norms."""
        return 1 + len(self.norm_columns)

    @classmethod
    def for_params(cls, params: Mapping[str, np.ndarray], elementwise_max_params: int) -> "MetricLayout":
        shapes = {name: tuple(np.shape(value)) for name, value in params.items()}
        n_params = sum(int(np.prod(s)) for s in shapes.values())
        layers = sorted({int(_PARAM.match(n).group(2)) for n in shapes if _PARAM.match(n)})
        keys = [LOSS]
        norms = []
        for l in layers:
            for prefix, param in (("grad_norm", f"W{l}"), ("grad_norm", f"b{l}"), ("weight_norm", f"W{l}")):
                norms.append((len(keys), "grad" if prefix == "grad_norm" else "weight", param))
                keys.append(f"{prefix}/{param}")
        grad_slots: list[Slot] = []
        param_slots: list[Slot] = []
        if n_params <= elementwise_max_params:
            for prefix, slots in (("grad", grad_slots), ("param", param_slots)):
                for name, shape in shapes.items():
                    names = element_names(name, shape)
                    slots.append(Slot(name, len(keys), len(keys) + len(names)))
                    keys.extend(f"{prefix}/{n}" for n in names)
        # Last, so the summary columns the plots keep (loss and norms) stay a leading slice.
        keys.append(EPOCH)
        return cls(tuple(keys), tuple(norms), tuple(grad_slots), tuple(param_slots))

    def finish_rows(self, values: np.ndarray) -> None:
        """Turn a block of recorded rows into logged values: norms from squares (in place).

        With elementwise columns the norms are computed here, vectorised over the block, so the
        per-iteration path only copies; otherwise the hot path stored squared norms.
        """
        if self.elementwise:
            by_param = {s.param: s for s in self.grad_slots}
            weights = {s.param: s for s in self.param_slots}
            for column, which, param in self.norm_columns:
                slot = (by_param if which == "grad" else weights)[param]
                block = values[:, slot.start : slot.stop]
                values[:, column] = np.einsum("ij,ij->i", block, block)
        cols = [c for c, _, _ in self.norm_columns]
        values[:, cols] = np.sqrt(values[:, cols])
