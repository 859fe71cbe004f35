"""Inverse-time decay: lr_t = lr_0 / (1 + decay * t) after t epochs (Keras's InverseTimeDecay
with decay_steps = 1 epoch, scikit-learn's ``learning_rate='invscaling'`` with power 1)."""

from __future__ import annotations

from backproplab.validation import is_finite_number


class InverseTimeDecay:
    def __init__(self, decay: float = 0.5):
        if not (is_finite_number(decay) and decay >= 0):
            raise ValueError(f"inverse_time decay must be a finite number >= 0, got {decay!r}")
        self.decay = float(decay)
        self.base_lr = 0.0

    def initial_lr(self, base_lr):
        self.base_lr = base_lr  # the optimizer's configured lr, kept for every later epoch
        return base_lr

    def next_lr(self, epoch, lr, metrics):
        # Called when epoch ``epoch`` (0-based) has ended: the rate of the next one.
        return self.base_lr / (1.0 + self.decay * (epoch + 1))
