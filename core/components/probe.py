"""One dry iteration of a run's components, before anything is written.

A third-party component that breaks its interface would otherwise fail deep inside training,
with numpy's words and no name (``matmul: ... size 4 is different from 5``), after the output
folder and the MLflow run exist; or its NaN gradients would end the run as a "non-finite
parameter, try a smaller optimizer.lr". ``dry_iteration`` takes fresh instances of the run's
components and does what one iteration does, on the first rows of the training data and the
network's initial parameters (read, never written): every activation's forward and backward, the
loss's value and gradient, and the optimizer's step on copies of the parameters. Each call's
result is checked for its shape and, from finite inputs, for NaN. The first breach
is a ``ComponentError`` naming the component, its role and its plugin distribution.

Fresh instances, so a component that keeps state (a seeded random stream, a step counter)
trains exactly as it would have without the probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from backproplab.errors import BackproplabError, ComponentError, exception_line
from .protocols import PROTOCOLS, required_methods
from .registry import Source

# Rows of training data the dry iteration uses: enough for a batch axis that is not 1.
PROBE_ROWS = 4


@dataclass(frozen=True)
class Part:
    """A built component as the run names it: its kind, registered name, config key and source."""

    kind: str
    name: str
    key: str  # model.activation, model.output_activation, loss, optimizer
    source: Source | None

    def label(self) -> str:
        where = "" if self.source is None else f" from {self.source}"
        return f"{self.key}={self.name} ({self.kind} {self.name!r}{where})"


def check_methods(part: Part, component: Any) -> None:
    """The component has every method its kind's Protocol requires."""
    methods = required_methods(PROTOCOLS[part.kind])
    missing = [m for m in methods if not callable(getattr(component, m, None))]
    if missing:
        needs = ", ".join(f"{m}()" for m in methods)
        raise ComponentError(
            f"{part.label()} has no {missing[0]}() method; a {part.kind} needs {needs} (see docs/plugins.md); "
            "fix the plugin or choose another component"
        )


def _call(part: Part, what: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except BackproplabError:
        raise
    except Exception as exc:  # the plugin's own code failed on valid input
        raise ComponentError(f"{part.label()}: {what} raised {exception_line(exc, with_type=True)}; fix the plugin or choose another component") from exc


def _array(part: Part, what: str, value: Any, shape: tuple[int, ...], finite_inputs: bool) -> np.ndarray:
    arr = np.asarray(value) if value is not None else None
    if arr is None or arr.shape != shape:
        got = "None" if arr is None else f"shape {arr.shape}"
        raise ComponentError(f"{part.label()}: {what} returned {got}, expected shape {shape}; fix the plugin or choose another component")
    # NaN only: from finite inputs it is a bug (0/0, inf - inf, log of a negative), where an
    # infinity may be an honest overflow, which training reports as such.
    if finite_inputs and arr.dtype.kind in "fc" and np.isnan(arr).any():
        raise ComponentError(
            f"{part.label()}: {what} returned NaN for finite inputs; the component is at fault, "
            "not the learning rate: fix the plugin or choose another component"
        )
    return arr


def dry_iteration(
    params: Mapping[str, np.ndarray],
    layers: Sequence[tuple[Part, Any]],
    loss: tuple[Part, Any],
    optimizer: tuple[Part, Any],
    X: np.ndarray,
    y: np.ndarray,
) -> None:
    """One forward and backward pass and one optimizer step with fresh components (see the
    module docstring); ``layers`` holds each layer's activation, layer 1 first."""
    for part, component in (*layers, loss, optimizer):
        check_methods(part, component)
    X, y = X[:PROBE_ROWS], y[:PROBE_ROWS]
    a = X
    zs, as_ = [], [X]
    for l, (part, act) in enumerate(layers, start=1):
        z = a @ params[f"W{l}"].T + params[f"b{l}"]
        a = _array(part, f"forward(z) of layer {l}", _call(part, f"forward(z) of layer {l}", act.forward, z.copy()), z.shape, bool(np.isfinite(z).all()))
        zs.append(z)
        as_.append(a)
    loss_part, loss_obj = loss
    finite = bool(np.isfinite(a).all())
    value = _call(loss_part, "value(y_hat, y)", loss_obj.value, a, y)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ComponentError(f"{loss_part.label()}: value(y_hat, y) returned {type(value).__name__}, not a number; fix the plugin or choose another component") from None
    _array(loss_part, "value(y_hat, y)", number, (), finite)
    grad_a = _array(loss_part, "grad(y_hat, y)", _call(loss_part, "grad(y_hat, y)", loss_obj.grad, a, y), a.shape, finite)
    grads: dict[str, np.ndarray] = {}
    for l in range(len(layers), 0, -1):
        part, act = layers[l - 1]
        z, out = zs[l - 1], as_[l]
        finite = bool(np.isfinite(z).all() and np.isfinite(out).all() and np.isfinite(grad_a).all())
        what = f"backward(z, a, grad_a) of layer {l}"
        delta = _array(part, what, _call(part, what, act.backward, z, out, grad_a), z.shape, finite)
        grads[f"W{l}"] = delta.T @ as_[l - 1]
        grads[f"b{l}"] = delta.sum(axis=0)
        grad_a = delta @ params[f"W{l}"]
    opt_part, opt = optimizer
    copies = {name: np.array(value) for name, value in params.items()}
    ordered = {name: grads[name] for name in params}
    _call(opt_part, "step(params, grads)", opt.step, copies, ordered)
    finite = all(np.isfinite(g).all() for g in ordered.values()) and all(np.isfinite(p).all() for p in params.values())
    for name, value in copies.items():
        _array(opt_part, f"step(params, grads), which left {name}", value, params[name].shape, finite)
