"""Built-in weight initialisers, called as ``init((fan_out, fan_in), rng, dtype)``.

``rng`` is a ``numpy.random.Generator``; the network passes the same one layer after layer, so a
seed fixes every layer. Biases start at zero (none of these defines ``bias``).
"""

from __future__ import annotations

import numpy as np

from backproplab import hookimpl
from backproplab.validation import check_positive_float


def _fans(shape):
    fan_out, fan_in = shape
    return fan_in, fan_out


class Zeros:
    def __call__(self, shape, rng, dtype=np.float64):
        return np.zeros(shape, dtype=dtype)


class Constant:
    def __init__(self, value: float = 0.0):
        self.value = float(value)

    def __call__(self, shape, rng, dtype=np.float64):
        return np.full(shape, self.value, dtype=dtype)


class Normal:
    def __init__(self, mean: float = 0.0, std: float = 0.01):
        self.mean = float(mean)
        self.std = check_positive_float("std", std)

    def __call__(self, shape, rng, dtype=np.float64):
        return rng.normal(self.mean, self.std, size=shape).astype(dtype, copy=False)


class Uniform:
    def __init__(self, low: float = -0.05, high: float = 0.05):
        if not low < high:
            raise ValueError(f"uniform needs low < high, got low={low!r}, high={high!r}")
        # numpy draws low + (high - low) * u: a width beyond the largest float is an
        # OverflowError at the first draw, deep inside building the network.
        if not np.isfinite(float(high) - float(low)):
            raise ValueError(f"uniform needs high - low to be a finite number, got low={low!r}, high={high!r}")
        self.low, self.high = float(low), float(high)

    def __call__(self, shape, rng, dtype=np.float64):
        return rng.uniform(self.low, self.high, size=shape).astype(dtype, copy=False)


class XavierNormal:
    """Glorot & Bengio (2010): std = gain * sqrt(2 / (fan_in + fan_out))."""

    def __init__(self, gain: float = 1.0):
        self.gain = check_positive_float("gain", gain)

    def __call__(self, shape, rng, dtype=np.float64):
        fan_in, fan_out = _fans(shape)
        std = self.gain * np.sqrt(2.0 / (fan_in + fan_out))
        return (rng.standard_normal(shape) * std).astype(dtype, copy=False)


class XavierUniform:
    """Glorot & Bengio (2010): U(-l, l) with l = gain * sqrt(6 / (fan_in + fan_out))."""

    def __init__(self, gain: float = 1.0):
        self.gain = check_positive_float("gain", gain)

    def __call__(self, shape, rng, dtype=np.float64):
        fan_in, fan_out = _fans(shape)
        limit = self.gain * np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=shape).astype(dtype, copy=False)


class HeNormal:
    """He et al. (2015): std = sqrt(2 / fan_in), for ReLU layers."""

    def __call__(self, shape, rng, dtype=np.float64):
        fan_in, _ = _fans(shape)
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype, copy=False)


class HeUniform:
    """He et al. (2015): U(-l, l) with l = sqrt(6 / fan_in)."""

    def __call__(self, shape, rng, dtype=np.float64):
        fan_in, _ = _fans(shape)
        limit = np.sqrt(6.0 / fan_in)
        return rng.uniform(-limit, limit, size=shape).astype(dtype, copy=False)


class LecunNormal:
    """LeCun et al. (1998): std = sqrt(1 / fan_in)."""

    def __call__(self, shape, rng, dtype=np.float64):
        fan_in, _ = _fans(shape)
        return (rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)).astype(dtype, copy=False)


class LegacyRandn:
    """numpy's legacy ``RandomState(seed).randn(*shape) * scale``, drawn layer after layer.

    This is how the worked example's weights were made (``np.random.seed(3)``, scale 0.1, the
    default). With ``seed`` set, one legacy stream is created on the first call and continues
    across layers, so a network built with this initialiser reproduces the article exactly; build
    a new instance to start the stream again. With ``seed=None`` each call draws a fresh legacy
    seed from ``rng``, so the run seed decides. (The command line's ``legacy_randn`` option sets
    ``seed`` to ``trainer.seed``, so ``trainer.seed=3`` is the article's ``np.random.seed(3)``.)
    """

    def __init__(self, scale: float = 0.1, seed: int | None = None):
        self.scale = check_positive_float("scale", scale)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or null, got {seed!r}")
        self.seed = seed
        self._stream: np.random.RandomState | None = None

    def __call__(self, shape, rng, dtype=np.float64):
        if self.seed is None:
            stream = np.random.RandomState(int(rng.integers(2**32)))
        else:
            if self._stream is None:
                self._stream = np.random.RandomState(self.seed)
            stream = self._stream
        return (stream.randn(*shape) * self.scale).astype(dtype, copy=False)


@hookimpl
def register_initializers(register):
    register("zeros", Zeros)
    register("constant", Constant)
    register("normal", Normal)
    register("uniform", Uniform)
    register("xavier_normal", XavierNormal, aliases=("glorot_normal",))
    register("xavier_uniform", XavierUniform, aliases=("glorot_uniform",))
    register("he_normal", HeNormal)
    register("he_uniform", HeUniform)
    register("lecun_normal", LecunNormal)
    register("legacy_randn", LegacyRandn)
