"""Built-in activations. ``backward`` is a vector-Jacobian product, which also covers softmax.

Every function is written to stay finite for |z| in the thousands (sigmoid and softplus via
scipy's stable ``expit`` and numpy's ``logaddexp``).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf, expit

from backproplab import hookimpl
from backproplab.validation import check_nonnegative_float, check_positive_float

_SQRT2 = np.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


class Sigmoid:
    def forward(self, z):
        return expit(z)

    def backward(self, z, a, grad_a):
        return grad_a * a * (1.0 - a)


class Tanh:
    def forward(self, z):
        return np.tanh(z)

    def backward(self, z, a, grad_a):
        return grad_a * (1.0 - a * a)


class ReLU:
    def forward(self, z):
        return np.maximum(z, 0.0)

    def backward(self, z, a, grad_a):
        return grad_a * (z > 0)


class LeakyReLU:
    def __init__(self, alpha: float = 0.01):
        self.alpha = check_nonnegative_float("alpha", alpha)

    def forward(self, z):
        return np.where(z > 0, z, self.alpha * z)

    def backward(self, z, a, grad_a):
        return grad_a * np.where(z > 0, 1.0, self.alpha).astype(z.dtype, copy=False)


class ELU:
    def __init__(self, alpha: float = 1.0):
        self.alpha = check_positive_float("alpha", alpha)

    def forward(self, z):
        return np.where(z > 0, z, self.alpha * np.expm1(np.minimum(z, 0.0)))

    def backward(self, z, a, grad_a):
        # For z <= 0, d/dz alpha*(e^z - 1) = a + alpha.
        return grad_a * np.where(z > 0, 1.0, a + self.alpha).astype(z.dtype, copy=False)


class Softplus:
    def forward(self, z):
        return np.logaddexp(0.0, z).astype(z.dtype, copy=False)

    def backward(self, z, a, grad_a):
        return grad_a * expit(z)


class Identity:
    def forward(self, z):
        return z.copy()

    def backward(self, z, a, grad_a):
        return grad_a.copy()


class Softmax:
    """Softmax over the last axis; shifting by the row max keeps exp finite."""

    def forward(self, z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        e /= e.sum(axis=-1, keepdims=True)
        return e

    def backward(self, z, a, grad_a):
        return a * (grad_a - (grad_a * a).sum(axis=-1, keepdims=True))


class SiLU:
    """z * sigmoid(z), also known as swish-1."""

    def forward(self, z):
        return z * expit(z)

    def backward(self, z, a, grad_a):
        s = expit(z)
        return grad_a * (s * (1.0 + z * (1.0 - s)))


class GELU:
    """Exact GELU, z * Phi(z), with the Gaussian CDF from ``scipy.special.erf``."""

    def forward(self, z):
        return (0.5 * z * (1.0 + erf(z / _SQRT2))).astype(z.dtype, copy=False)

    def backward(self, z, a, grad_a):
        cdf = 0.5 * (1.0 + erf(z / _SQRT2))
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * np.minimum(z * z, 1e4))
        return (grad_a * (cdf + z * pdf)).astype(z.dtype, copy=False)


@hookimpl
def register_activations(register):
    register("sigmoid", Sigmoid, aliases=("logistic",))
    register("tanh", Tanh)
    register("relu", ReLU)
    register("leaky_relu", LeakyReLU)
    register("elu", ELU)
    register("softplus", Softplus)
    register("identity", Identity, aliases=("linear",))
    register("softmax", Softmax)
    register("silu", SiLU)
    register("gelu", GELU)
