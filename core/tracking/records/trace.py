"""Full-fidelity trace (``logger.trace=true``): every iteration's loss, gradients and parameters.

Metrics can be thinned (``every_n_iterations``) and MLflow stores them as float rows; the trace
keeps every iteration at full precision in one ``.npz`` artifact, for exact offline analysis.
Arrays grow by doubling, preallocated from the expected iteration count when it is known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np


class TraceRecorder:
    def __init__(self, params: Mapping[str, np.ndarray], expected_iterations: int = 0) -> None:
        self._shapes = {name: np.shape(v) for name, v in params.items()}
        self._capacity = max(16, int(expected_iterations))
        self.n = 0
        self._alloc(self._capacity)

    def _alloc(self, capacity: int) -> None:
        old = getattr(self, "_arrays", None)
        arrays = {
            "iteration": np.zeros(capacity, dtype=np.int64),
            "epoch": np.zeros(capacity, dtype=np.int64),
            "loss": np.zeros(capacity, dtype=np.float64),
        }
        for name, shape in self._shapes.items():
            arrays[f"grad_{name}"] = np.zeros((capacity, *shape), dtype=np.float64)
            arrays[f"param_{name}"] = np.zeros((capacity, *shape), dtype=np.float64)
        if old is not None:
            for key, value in old.items():
                arrays[key][: self.n] = value[: self.n]
        self._arrays = arrays
        self._capacity = capacity

    def record(self, step) -> None:
        n = self.n
        if n == self._capacity:
            self._alloc(2 * self._capacity)
        a = self._arrays
        a["iteration"][n] = step.iteration
        a["epoch"][n] = step.epoch
        a["loss"][n] = step.loss
        grads, params = step.grads, step.params
        for name in self._shapes:
            a[f"grad_{name}"][n] = grads[name]
            a[f"param_{name}"][n] = params[name]
        self.n = n + 1

    def save(self, path: Path) -> None:
        """Keys: iteration, epoch, loss, grad_<param>, param_<param> (param = values used in the forward pass)."""
        np.savez_compressed(path, **{k: v[: self.n] for k, v in self._arrays.items()})
