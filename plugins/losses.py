"""Built-in losses. E is the mean over the batch, E = (1/m) sum_i L_i, and ``grad`` is dE/dy_hat.

For the element-wise losses (bce, mse, mae, huber, hinge) L_i is the mean over the output units,
so with one output it is exactly the per-example loss; for cross_entropy L_i sums over classes.

Clipping: bce clips predicted probabilities to [eps, 1 - eps] and cross_entropy clips them from
below at eps (log p <= 0 needs no upper bound), with eps = finfo(dtype).eps (2.2e-16 in
float64, 1.2e-7 in float32), so that log(0) and division by zero cannot happen. The value and
the gradient are both taken at the clipped probability, so a prediction of exactly 0 or 1 gives
a large but finite loss (-log eps: 36.0 in float64, 15.9 in float32) and a finite gradient.
Away from 0 and 1 clipping changes nothing.

``prepare(y, n_outputs)`` checks the targets against the loss's domain once, before training,
and returns them as shape (m, n_outputs); ``accuracy`` exists for classification losses.

``output_activations`` names the output activations a loss is meant to follow: bce needs
probabilities (sigmoid, or softmax), cross_entropy a distribution over classes (softmax), hinge
raw scores (identity, or tanh's signed ones). A run that pairs such a loss with another output
activation is refused before training. The regression losses fit any output and declare nothing.
"""

from __future__ import annotations

import numpy as np

from backproplab import hookimpl
from backproplab.errors import ConfigError
from backproplab.validation import check_positive_float


def _as_targets(name, y, n_outputs):
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} targets must be numeric ({exc})") from None
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        raise ConfigError(f"{name} targets have shape {np.shape(y)} but the network has {n_outputs} outputs")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} targets contain non-finite values; targets must be finite")
    return arr


_EPS = {np.dtype(t): np.finfo(t).eps for t in (np.float16, np.float32, np.float64)}
_EPS_DEFAULT = _EPS[np.dtype(np.float64)]


def _exact_match(correct):
    """Fraction of examples with every output right (scikit-learn's accuracy_score on
    multi-label data); with one output, the plain fraction of correct predictions. A per-element
    mean would credit an all-zero guess with 90% on ten one-hot classes."""
    if correct.shape[1] == 1:
        return np.count_nonzero(correct) / correct.shape[0]
    return np.count_nonzero(correct.all(axis=1)) / correct.shape[0]


def _eps(dtype):
    # A table lookup: the losses run every iteration, and finfo() is not free.
    return _EPS.get(dtype, _EPS_DEFAULT)


class BinaryCrossEntropy:
    """L = -[y log p + (1 - y) log(1 - p)]; targets in [0, 1], outputs are probabilities."""

    output_activations = ("sigmoid", "softmax")

    def prepare(self, y, n_outputs):
        arr = _as_targets("bce", y, n_outputs)
        bad = (arr < 0) | (arr > 1)
        if bad.any():
            raise ConfigError(f"bce targets must lie in [0, 1], got {arr[bad][0].item()!r}")
        return arr

    @staticmethod
    def _clip(y_hat):
        eps = _eps(y_hat.dtype)
        # maximum/minimum rather than np.clip: same result, a fraction of the call overhead,
        # which matters when a batch is one example.
        return np.minimum(np.maximum(y_hat, eps), 1.0 - eps)

    def value(self, y_hat, y):
        p = self._clip(y_hat)
        return -float((y * np.log(p) + (1.0 - y) * np.log1p(-p)).sum()) / y_hat.size

    def grad(self, y_hat, y):
        p = self._clip(y_hat)
        return (p - y) / (p * (1.0 - p) * y_hat.size)

    def accuracy(self, y_hat, y):
        return _exact_match((y_hat >= 0.5) == (y >= 0.5))


class CrossEntropy:
    """Categorical cross-entropy, L = -sum_k y_k log p_k. Targets: one-hot rows or integer labels."""

    output_activations = ("softmax",)

    def prepare(self, y, n_outputs):
        arr = np.asarray(y)
        if arr.ndim == 2 and arr.shape[1] == 1 and n_outputs > 1:
            arr = arr[:, 0]
        if arr.ndim == 1:
            if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
                raise ConfigError("cross_entropy integer labels must be finite numbers")
            if np.any(arr != np.round(arr)) or arr.min() < 0 or arr.max() >= n_outputs:
                bad = arr[(arr != np.round(arr)) | (arr < 0) | (arr >= n_outputs)][0].item()
                if isinstance(bad, float) and bad.is_integer():
                    bad = int(bad)
                raise ConfigError(
                    f"cross_entropy label {bad!r} is outside the classes 0..{n_outputs - 1} of a {n_outputs}-output network"
                )
            return np.eye(n_outputs)[arr.astype(np.intp)]
        arr = _as_targets("cross_entropy", arr, n_outputs)
        if (arr < 0).any() or (arr > 1).any() or not np.allclose(arr.sum(axis=1), 1.0):
            raise ConfigError("cross_entropy one-hot targets must be rows of probabilities in [0, 1] summing to 1")
        return arr

    def value(self, y_hat, y):
        p = np.maximum(y_hat, _eps(y_hat.dtype))
        return float(-np.sum(y * np.log(p)) / y_hat.shape[0])

    def grad(self, y_hat, y):
        p = np.maximum(y_hat, _eps(y_hat.dtype))
        return -y / (p * y_hat.shape[0])

    def accuracy(self, y_hat, y):
        return np.count_nonzero(y_hat.argmax(axis=1) == y.argmax(axis=1)) / y.shape[0]


class MeanSquaredError:
    """L = mean_k (y_hat_k - y_k)^2 (no factor 1/2)."""

    def prepare(self, y, n_outputs):
        return _as_targets("mse", y, n_outputs)

    def value(self, y_hat, y):
        d = y_hat - y
        return float(np.mean(d * d))

    def grad(self, y_hat, y):
        return (2.0 / y_hat.size) * (y_hat - y)


class MeanAbsoluteError:
    """L = mean_k |y_hat_k - y_k|; the subgradient at 0 is 0."""

    def prepare(self, y, n_outputs):
        return _as_targets("mae", y, n_outputs)

    def value(self, y_hat, y):
        return float(np.mean(np.abs(y_hat - y)))

    def grad(self, y_hat, y):
        return np.sign(y_hat - y) / y_hat.size


class Huber:
    """Quadratic within ``delta`` of the target, linear outside: 0.5 d^2 or delta (|d| - delta/2)."""

    def __init__(self, delta: float = 1.0):
        self.delta = check_positive_float("delta", delta)

    def prepare(self, y, n_outputs):
        return _as_targets("huber", y, n_outputs)

    def value(self, y_hat, y):
        d = np.abs(y_hat - y)
        quad = np.minimum(d, self.delta)
        return float(np.mean(0.5 * quad * quad + self.delta * (d - quad)))

    def grad(self, y_hat, y):
        return np.clip(y_hat - y, -self.delta, self.delta) / y_hat.size


class Hinge:
    """L = mean_k max(0, 1 - y_k * y_hat_k) on raw scores. Targets in {-1, +1}; {0, 1} is
    accepted and mapped to {-1, +1}, so the same binary data sets work with bce and hinge."""

    output_activations = ("identity", "tanh")

    def prepare(self, y, n_outputs):
        arr = _as_targets("hinge", y, n_outputs)
        values = set(np.unique(arr).tolist())
        if values <= {-1.0, 1.0}:
            return arr
        if values <= {0.0, 1.0}:
            return 2.0 * arr - 1.0
        bad = sorted(values - {-1.0, 0.0, 1.0})
        raise ConfigError(f"hinge targets must be -1/+1 (or 0/1), got {bad[0]!r}")

    def value(self, y_hat, y):
        return float(np.mean(np.maximum(0.0, 1.0 - y * y_hat)))

    def grad(self, y_hat, y):
        return np.where(y * y_hat < 1.0, -y, 0.0).astype(y_hat.dtype, copy=False) / y_hat.size

    def accuracy(self, y_hat, y):
        return _exact_match((y_hat >= 0) == (y > 0))


@hookimpl
def register_losses(register):
    register("bce", BinaryCrossEntropy, aliases=("binary_cross_entropy",))
    register("cross_entropy", CrossEntropy)
    register("mse", MeanSquaredError)
    register("mae", MeanAbsoluteError)
    register("huber", Huber)
    register("hinge", Hinge)
