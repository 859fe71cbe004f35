"""Two interleaved spirals, the classic data set that a straight line cannot split.

A data set is a function: its keyword parameters become ``data.KEY=`` options (``data=spirals
data.turns=2``) with no YAML, and it returns the examples. Splitting, standardising, batching and
the MLflow dataset record are backproplab's. ``@data_defaults`` sets this set's defaults for
those common options; ``seed`` is one of them, and a factory that declares it receives
``data.seed``, so one seed decides both the points and the split.
"""

import numpy as np

import backproplab

# A million points per arm is far more than a spiral needs, and still fits in memory.
MAX_POINTS = 1_000_000


@backproplab.data_defaults(val_fraction=0.2, standardize=True, batch_size=16)
def spirals(n_points: int = 100, turns: float = 1.5, noise: float = 0.05, seed: int = 0) -> backproplab.Examples:
    """``n_points`` per arm, ``turns`` revolutions, Gaussian ``noise`` on both coordinates."""
    if not 2 <= n_points <= MAX_POINTS:  # checked before numpy allocates the points
        raise ValueError(f"data.n_points={n_points} is invalid; valid: an integer in [2, {MAX_POINTS}]")
    if not 0 < turns <= 10:
        raise ValueError(f"data.turns={turns} is invalid; valid: a number in (0, 10]")
    if not 0 <= noise <= 1:
        raise ValueError(f"data.noise={noise} is invalid; valid: a number in [0, 1]")
    rng = np.random.default_rng(seed)
    angle = np.linspace(0.25, 2 * np.pi * turns, n_points)
    radius = angle / (2 * np.pi * turns)
    arm = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    X = np.vstack([arm, -arm]) + rng.normal(scale=noise, size=(2 * n_points, 2))
    y = np.repeat([0, 1], n_points)
    return backproplab.Examples(X, y, feature_names=["u", "v"], class_names=["arm_a", "arm_b"], task="binary")
