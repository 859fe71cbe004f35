"""A dense feed-forward network with a hand-written backward pass.

Notation (the article's): layer l has weights ``W<l>`` of shape (n_l, n_{l-1}) and bias
``b<l>`` of shape (n_l,). A batch X has shape (m, n_0), so ``z = X @ W.T + b`` and
``a = f(z)``. Parameters and gradients are dicts keyed ``W1, b1, W2, b2, ...``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from backproplab.errors import ConfigError
from backproplab.validation import as_float_matrix, check_positive_int

SUPPORTED_DTYPES = ("float64", "float32")


def parse_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in SUPPORTED_DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; valid: {', '.join(SUPPORTED_DTYPES)}")
    return dt


def param_names(n_layers: int) -> list[str]:
    return [name for l in range(1, n_layers + 1) for name in (f"W{l}", f"b{l}")]


class Network:
    """Dense layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``, one activation object per layer.

    ``initializer`` is called as ``initializer((n_l, n_{l-1}), rng, dtype)`` layer after layer;
    biases start at zero unless it has a ``bias(shape, rng, dtype)`` method.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activations: Sequence[Any],
        initializer: Any,
        *,
        rng: np.random.Generator | int | None = None,
        dtype: Any = "float64",
    ) -> None:
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ConfigError(f"a network needs at least an input and an output layer, got sizes {sizes!r}")
        self.sizes = [check_positive_int(f"layer width (layer {i}, sizes {sizes!r})", s) for i, s in enumerate(sizes)]
        if len(activations) != len(sizes) - 1:
            raise ConfigError(f"{len(sizes) - 1} layers need {len(sizes) - 1} activations, got {len(activations)}")
        self.activations = list(activations)
        self.dtype = parse_dtype(dtype)
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        self.params: dict[str, np.ndarray] = {}
        for l in range(1, len(sizes)):
            shape = (self.sizes[l], self.sizes[l - 1])
            W = np.asarray(initializer(shape, rng, self.dtype), dtype=self.dtype)
            if W.shape != shape:
                raise ConfigError(f"initializer {type(initializer).__name__} returned shape {W.shape} for W{l}, expected {shape}")
            bias = getattr(initializer, "bias", None)
            b = np.zeros(shape[0], dtype=self.dtype) if bias is None else np.asarray(bias((shape[0],), rng, self.dtype), dtype=self.dtype)
            self.params[f"W{l}"] = np.ascontiguousarray(W)
            self.params[f"b{l}"] = b
        # Names, not arrays: the forward pass looks the arrays up each time, so replacing an entry
        # of ``params`` (rather than updating it in place) cannot leave the network on stale weights.
        self._layers = [(f"W{l}", f"b{l}", self.activations[l - 1]) for l in range(1, len(sizes))]
        self._zs: list[np.ndarray] = []
        self._as: list[np.ndarray] = []

    @property
    def n_inputs(self) -> int:
        return self.sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def n_parameters(self) -> int:
        return sum(p.size for p in self.params.values())

    def set_params(self, values: dict[str, Any]) -> None:
        """Copy values into the existing arrays, so references held by optimizers stay valid."""
        for name, value in values.items():
            if name not in self.params:
                raise ConfigError(f"unknown parameter {name!r}; valid: {', '.join(self.params)}")
            arr = np.asarray(value, dtype=self.dtype)
            if arr.shape != self.params[name].shape:
                raise ConfigError(f"parameter {name} needs shape {self.params[name].shape}, got {arr.shape}")
            self.params[name][...] = arr

    def check_input(self, X: Any, name: str = "X") -> np.ndarray:
        return as_float_matrix(name, X, self.dtype, self.n_inputs)

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Forward pass on a checked batch; caches every z and a for ``backward``."""
        params = self.params
        zs = self._zs = []
        as_ = self._as = [X]
        a = X
        for w_name, b_name, act in self._layers:
            z = a @ params[w_name].T
            z += params[b_name]
            a = act.forward(z)
            zs.append(z)
            as_.append(a)
        return a

    def backward(self, grad_output: np.ndarray) -> dict[str, np.ndarray]:
        """Chain rule from dE/da_L back to every parameter, for the last ``forward`` batch."""
        if not self._zs:
            raise RuntimeError("backward() needs a forward() first")
        params = self.params
        grads: dict[str, Any] = dict.fromkeys(params)  # keys in the order W1, b1, W2, b2, ...
        grad_a = grad_output  # dE/da^L
        zs, as_ = self._zs, self._as  # z^l is zs[l - 1]; a^l is as_[l], with a^0 = X
        # Layers numbered as in the article, from the output layer L down to layer 1.
        for l in range(self.n_layers, 0, -1):
            w_name, b_name, f = self._layers[l - 1]
            delta = f.backward(zs[l - 1], as_[l], grad_a)  # dE/dz^l = f'(z^l) * dE/da^l
            grads[w_name] = delta.T @ as_[l - 1]  # dE/dw^l_jk = sum over the batch of dE/dz^l_j a^(l-1)_k
            grads[b_name] = delta.sum(axis=0)  # dE/db^l_j
            if l > 1:
                grad_a = delta @ params[w_name]  # dE/da^(l-1) = (W^l)^T dE/dz^l
        return grads

    def predict(self, X: Any) -> np.ndarray:
        return self.forward(self.check_input(X))

    @property
    def cache(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(z per layer, a per layer with a[0] = X) of the last forward pass."""
        return self._zs, self._as

    def __repr__(self) -> str:
        acts = ", ".join(type(a).__name__ for a in self.activations)
        return f"Network(sizes={self.sizes}, activations=[{acts}], dtype={self.dtype.name})"
