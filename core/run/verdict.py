"""Whether a run learned anything, said where the run's numbers are read: its console and its
MLflow description.

Two signs, each checked on its own:

- **chance-level accuracy**: the final accuracy (validation when the data have a split, else
  training) is no more than ``CHANCE_MARGIN`` above the share of the most frequent class in that
  split, which a network that always answers that class reaches. Only where accuracy means
  something: a classification run whose split holds more than one class (the worked example's
  single row is always "right").
- **a loss that did not fall**: the last epoch's mean training loss is less than
  ``MIN_LOSS_FALL`` below where training started: the first iteration's loss, or the first
  epoch's mean when that is higher and not the last (one example's loss is a noisy start); not
  judged for a run of a single iteration.

A flagged run gets a hint: the worked example's network and optimizer, which a ``data=`` choice
alone keeps, are made for its single row, so the hint names a preset for the data set when one
exists (``experiment=moons``) and settings that train the bundled sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from backproplab.numerics.trainer import EpochSummary
from .data import Dataset

CHANCE_MARGIN = 0.05
MIN_LOSS_FALL = 0.10
# Single-run presets (experiments/*.yaml) by the data set they train well.
PRESETS = {"moons": "moons", "marks": "marks"}
SETTINGS_THAT_TRAIN = "model.hidden=[8,8] model.activation=tanh initializer=xavier_normal trainer.epochs=50"


@dataclass(frozen=True)
class Verdict:
    """What a run that learned little or nothing shows: its signs, and what to try instead."""

    signs: tuple[str, ...]
    hint: str

    def text(self) -> str:
        return f"the run learned little or nothing: {'; '.join(self.signs)}. {self.hint}"


def _majority_share(labels: np.ndarray | None) -> float | None:
    """The most frequent class's share of ``labels``; None for one class or none."""
    if labels is None or labels.ndim != 1 or labels.size == 0:
        return None
    _, counts = np.unique(labels, return_counts=True)
    if counts.size < 2:
        return None
    return float(counts.max() / labels.size)


def chance_sign(last: EpochSummary, dataset: Dataset | None) -> str | None:
    if dataset is None or dataset.task == "regression":
        return None
    validation = last.val_accuracy is not None
    accuracy = last.val_accuracy if validation else last.train_accuracy
    if accuracy is None:
        return None
    share = _majority_share(dataset.y_val if validation else dataset.y_train)
    if share is None or accuracy > share + CHANCE_MARGIN:
        return None
    split = "val" if validation else "train"
    return (
        f"{split} accuracy {accuracy:.4g} is chance level "
        f"(always answering the most frequent class scores {share:.4g})"
    )


def loss_sign(first_loss: float | None, epochs: Sequence[EpochSummary]) -> str | None:
    # One iteration has no "after" to compare with.
    if first_loss is None or not epochs or epochs[-1].iterations < 2:
        return None
    # With one epoch, its mean is the end itself: the start is the first iteration's loss.
    start = first_loss if len(epochs) == 1 else max(first_loss, epochs[0].train_loss)
    end = epochs[-1].train_loss
    if not (np.isfinite(start) and np.isfinite(end)) or start <= 0:
        return None
    fall = (start - end) / start
    if fall >= MIN_LOSS_FALL:
        return None
    how = "rose" if fall < 0 else "did not fall" if fall < 0.005 else f"fell only {fall:.0%}"
    return f"the loss {how} ({start:.4g} at the start, {end:.4g} in the last epoch)"


def _name(spec: Any) -> Any:
    return spec.get("name") if isinstance(spec, Mapping) else spec


def worked_example_settings(config: Mapping[str, Any]) -> bool:
    """Whether the network, optimizer and initializer are the worked example's defaults."""
    model = config.get("model") or {}
    return (
        list(model.get("hidden") or []) == [4]
        and _name(model.get("activation")) == "sigmoid"
        and _name(config.get("optimizer")) in ("sgd", "gd")
        and (config.get("optimizer") or {}).get("lr", 0.5) == 0.5
        and _name(config.get("initializer")) == "legacy_randn"
    )


def hint(config: Mapping[str, Any]) -> str:
    data = (config.get("data") or {}).get("name")
    preset = PRESETS.get(str(data))
    tries = f"experiment={preset}, or " if preset else ""
    if worked_example_settings(config):
        why = (
            "A data= choice alone keeps the worked example's small sigmoid network, tiny legacy_randn weights "
            "and sgd lr 0.5, made for its one row"
        )
    else:
        why = "Check optimizer.lr, trainer.epochs and the initializer"
    return f"{why}; try {tries}{SETTINGS_THAT_TRAIN} (a tiny set such as xor needs more epochs)"


def judge(
    first_loss: float | None, epochs: Sequence[EpochSummary], dataset: Dataset | None, config: Mapping[str, Any]
) -> Verdict | None:
    """The run's verdict, or None when it learned (or completed no epoch to tell)."""
    if not epochs:
        return None
    signs = tuple(s for s in (chance_sign(epochs[-1], dataset), loss_sign(first_loss, epochs)) if s is not None)
    return Verdict(signs, hint(config)) if signs else None
