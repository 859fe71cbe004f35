"""Mish (Misra 2019): a = z * tanh(softplus(z)).

softplus is computed as ``logaddexp(0, z)`` so that it neither overflows for z >> 0 nor loses
precision for z << 0; the naive ``log1p(exp(z))`` is inf at z = 1000.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(z):
    # exp of a non-positive number only, so nothing overflows for any |z|.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


class Mish:
    """Smooth and non-monotonic; used like relu or silu in hidden layers. No hyperparameters."""

    def forward(self, z):
        return z * np.tanh(np.logaddexp(0.0, z))

    def backward(self, z, a, grad_a):
        # d/dz [z tanh(sp(z))] = tanh(sp) + z * (1 - tanh(sp)^2) * sigmoid(z), as sp' = sigmoid.
        t = np.tanh(np.logaddexp(0.0, z))
        return grad_a * (t + z * (1.0 - t * t) * _sigmoid(z))
