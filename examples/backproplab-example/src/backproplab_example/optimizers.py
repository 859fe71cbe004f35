"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2).

For each parameter θ with gradient g and momentum m (state kept per parameter name):

    c  = β1 m + (1 − β1) g
    θ ← θ − lr (sign(c) + λ θ)
    m ← β2 m + (1 − β2) g

Every update has the same magnitude per element, so lr is typically 3-10x smaller than Adam's.
"""

from __future__ import annotations

import numpy as np
from backproplab.validation import is_finite_number


def _check(name, value, low, high, low_open=False):
    # is_finite_number, not np.isfinite: an int beyond int64 (-9259400833873739776) makes numpy
    # raise TypeError, which would reach the user as numpy's words instead of this line.
    ok = is_finite_number(value)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value < high)
    if not ok:
        rng = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"lion {name} must be a number in {rng}, got {value!r}")
    return float(value)


class Lion:
    def __init__(self, lr: float = 1e-4, beta1: float = 0.9, beta2: float = 0.99, weight_decay: float = 0.0):
        self.lr = _check("lr", lr, 0.0, None, low_open=True)
        self.beta1 = _check("beta1", beta1, 0.0, 1.0)
        self.beta2 = _check("beta2", beta2, 0.0, 1.0)
        self.weight_decay = _check("weight_decay", weight_decay, 0.0, None)
        self.m: dict[str, np.ndarray] = {}

    def step(self, params, grads):
        b1, b2, lr, wd = self.beta1, self.beta2, self.lr, self.weight_decay
        for name, g in grads.items():
            p = params[name]
            m = self.m.get(name)
            if m is None:
                m = self.m[name] = np.zeros_like(g)
            update = np.sign(b1 * m + (1.0 - b1) * g)
            if wd:
                update += wd * p
            p -= lr * update
            m *= b2
            m += (1.0 - b2) * g

    # The momenta as "m/<parameter>" arrays, so that a checkpointed run resumes bit for bit
    # (backproplab.components.protocols.OptimizerState); copies both ways.
    def state_dict(self):
        return {f"m/{name}": m.copy() for name, m in self.m.items()}

    def load_state_dict(self, state):
        self.m = {key.removeprefix("m/"): np.array(value, copy=True) for key, value in state.items()}
