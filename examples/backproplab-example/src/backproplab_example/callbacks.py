"""A callback that ends training once the loss is low enough: no epochs spent past a target."""

from __future__ import annotations

from backproplab.validation import is_finite_number


class StopAtLoss:
    """Stops after the first epoch whose monitored loss is at or below ``target``.
    ``monitor``: ``train/loss`` or ``val/loss`` (which needs a validation split)."""

    def __init__(self, target: float = 0.1, monitor: str = "train/loss"):
        if not (is_finite_number(target) and target >= 0):
            raise ValueError(f"stop_at_loss target must be a finite number >= 0, got {target!r}")
        if monitor not in ("train/loss", "val/loss"):
            raise ValueError(f"stop_at_loss monitor must be train/loss or val/loss, got {monitor!r}")
        self.target = float(target)
        self.monitor = monitor
        self.trainer = None

    def on_train_begin(self, trainer):
        self.trainer = trainer

    def on_epoch_end(self, summary):
        value = summary.metrics().get(self.monitor)
        if value is not None and value <= self.target:
            self.trainer.stop_training = True
            self.trainer.stop_reason = f"stopped at epoch {summary.epoch + 1}: {self.monitor} {value:.4g} <= {self.target:g}"
