"""Built-in optimizers. ``step(params, grads)`` updates the arrays in place; state is keyed by
parameter name, so every parameter has its own moments. Equations follow the cited papers.

Each exports its state with ``state_dict()`` and takes it back with ``load_state_dict`` (the
``OptimizerState`` protocol), as flat ``"<field>/<parameter>"`` keys to arrays: a checkpoint
stores them in an npz file, and a resumed run continues bit for bit."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from backproplab import hookimpl
from backproplab.validation import check_fraction, check_nonnegative_float, check_positive_float


class _StateByName:
    """``state_dict``/``load_state_dict`` over the per-parameter dicts named in ``_state_fields``
    (a step count as a 0-d int64 array): copies both ways, so neither side shares memory."""

    _state_fields: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            f"{field}/{name}": np.array(value, copy=True)
            for field in self._state_fields
            for name, value in getattr(self, field).items()
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        restored: dict[str, dict[str, Any]] = {field: {} for field in self._state_fields}
        for key, value in state.items():
            field, sep, name = str(key).partition("/")
            if not sep or field not in restored:
                raise ValueError(f"{type(self).__name__} state has no key {key!r}; valid: <field>/<parameter> with field in {', '.join(self._state_fields)}")
            array = np.array(value, copy=True)
            restored[field][name] = int(array) if array.ndim == 0 and array.dtype.kind in "iu" else array
        for field, values in restored.items():
            setattr(self, field, values)


class SGD(_StateByName):
    """The article's rule θ ← θ − ε ∂E/∂θ, optionally with momentum μ (PyTorch's form):
    v ← μ v + g; θ ← θ − ε v, or with Nesterov θ ← θ − ε (g + μ v).

    ``lr`` defaults to the article's ε = 0.5, so ``sgd``, its alias ``gd``, the Python API and the
    config option (generated from this signature) all mean the same step."""

    _state_fields = ("velocity",)

    def __init__(self, lr: float = 0.5, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        self.lr = check_positive_float("lr", lr)
        self.momentum = check_fraction("momentum", momentum)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=true needs momentum > 0, got momentum=0")
        self.weight_decay = check_nonnegative_float("weight_decay", weight_decay)
        self.velocity: dict[str, np.ndarray] = {}

    def step(self, params, grads):
        lr, mu, wd = self.lr, self.momentum, self.weight_decay
        for name, g in grads.items():
            p = params[name]
            if wd:
                g = g + wd * p
            if mu:
                v = self.velocity.get(name)
                if v is None:
                    v = self.velocity[name] = np.array(g, copy=True)
                else:
                    v *= mu
                    v += g
                g = g + mu * v if self.nesterov else v
            p -= lr * g


class RMSprop(_StateByName):
    """Hinton (2012): s ← ρ s + (1 − ρ) g²; θ ← θ − ε g / (√s + δ)."""

    _state_fields = ("square_avg",)

    def __init__(self, lr: float = 0.001, rho: float = 0.9, eps: float = 1e-8):
        self.lr = check_positive_float("lr", lr)
        self.rho = check_fraction("rho", rho)
        self.eps = check_positive_float("eps", eps)
        self.square_avg: dict[str, np.ndarray] = {}

    def step(self, params, grads):
        for name, g in grads.items():
            s = self.square_avg.get(name)
            if s is None:
                s = self.square_avg[name] = np.zeros_like(g)
            s *= self.rho
            s += (1.0 - self.rho) * g * g
            params[name] -= self.lr * g / (np.sqrt(s) + self.eps)


class Adagrad(_StateByName):
    """Duchi et al. (2011): G ← G + g²; θ ← θ − ε g / (√G + δ)."""

    _state_fields = ("sum_squares",)

    def __init__(self, lr: float = 0.01, eps: float = 1e-10, initial_accumulator: float = 0.0):
        self.lr = check_positive_float("lr", lr)
        self.eps = check_positive_float("eps", eps)
        self.initial_accumulator = check_nonnegative_float("initial_accumulator", initial_accumulator)
        self.sum_squares: dict[str, np.ndarray] = {}

    def step(self, params, grads):
        for name, g in grads.items():
            G = self.sum_squares.get(name)
            if G is None:
                G = self.sum_squares[name] = np.full_like(g, self.initial_accumulator)
            G += g * g
            params[name] -= self.lr * g / (np.sqrt(G) + self.eps)


class Adam(_StateByName):
    """Kingma & Ba (2015), Algorithm 1: bias-corrected first and second moments, with a step
    count t per parameter."""

    decoupled_weight_decay = False
    _state_fields = ("m", "v", "t")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0):
        self.lr = check_positive_float("lr", lr)
        self.beta1 = check_fraction("beta1", beta1)
        self.beta2 = check_fraction("beta2", beta2)
        self.eps = check_positive_float("eps", eps)
        self.weight_decay = check_nonnegative_float("weight_decay", weight_decay)
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.t: dict[str, int] = {}

    def step(self, params, grads):
        b1, b2, lr, wd = self.beta1, self.beta2, self.lr, self.weight_decay
        for name, g in grads.items():
            p = params[name]
            if wd and not self.decoupled_weight_decay:
                g = g + wd * p  # L2 penalty folded into the gradient (Adam with L2)
            m = self.m.get(name)
            if m is None:
                m = self.m[name] = np.zeros_like(g)
                self.v[name] = np.zeros_like(g)
                self.t[name] = 0
            v = self.v[name]
            t = self.t[name] = self.t[name] + 1
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * g * g
            m_hat = m / (1.0 - b1**t)
            v_hat = v / (1.0 - b2**t)
            if wd and self.decoupled_weight_decay:
                p -= lr * wd * p
            p -= lr * m_hat / (np.sqrt(v_hat) + self.eps)


class AdamW(Adam):
    """Loshchilov & Hutter (2019): Adam with decoupled weight decay,
    θ ← θ − ε (m̂ / (√v̂ + δ) + λ θ)."""

    decoupled_weight_decay = True

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)


@hookimpl
def register_optimizers(register):
    register("sgd", SGD, aliases=("gd",))
    register("rmsprop", RMSprop)
    register("adagrad", Adagrad)
    register("adam", Adam)
    register("adamw", AdamW)
