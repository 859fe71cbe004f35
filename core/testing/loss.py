"""Conformance checks for losses: ``value(y_hat, y) -> float`` and ``grad(y_hat, y) -> dE/dy_hat``,
with E the batch mean, E = (1/m) sum_i L_i.

Inputs must lie in the loss's domain. By default the kit makes them as follows:

* targets: if the loss has ``prepare(y, n_outputs)``, the first of these that ``prepare``
  accepts, passed through ``prepare`` exactly as the trainer does: a {0, 1} matrix, then one-hot
  rows. Without ``prepare``: a {0, 1} matrix.
* predictions: softmax-like rows (positive, summing to 1) when the targets are one-hot rows,
  otherwise uniform in (0.05, 0.95), i.e. probabilities away from the clipping zone.

A loss with another domain (regression on raw scores, targets in {-1, 1}, ...) passes its own
generators: ``targets=lambda rng, m, n: ...`` returns raw targets (``prepare`` is still applied
when present) and ``predictions=lambda rng, m, n: ...`` returns float64 predictions.
``edge_values`` (predictions checked for gradients near the domain's ends) and
``extreme_values`` (predictions at which value and grad must stay finite) can be replaced, or
set to None to skip, the same way.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._checks import register_check, run_checks
from ._numeric import compare_gradient
from ._subject import call, expect_array_like, fail, fresh, keyword_hyperparameters, strict_floats

KIND = "loss"

EDGE_VALUES = (1e-3, 0.5, 1.0 - 1e-3)
EXTREME_VALUES = (0.0, 1.0)
OUTPUT_WIDTHS = (1, 3)
BATCH = 6


def _binary(rng, m, n):
    return rng.integers(0, 2, size=(m, n)).astype(np.float64)


def _one_hot(rng, m, n):
    return np.eye(n)[rng.integers(0, n, size=m)]


def _probabilities(rng, m, n):
    return rng.uniform(0.05, 0.95, size=(m, n))


def _softmax_rows(rng, m, n):
    e = np.exp(rng.standard_normal((m, n)))
    return e / e.sum(axis=1, keepdims=True)


def _prepare(loss, component, y_raw, n):
    prepare = getattr(loss, "prepare", None)
    if prepare is None:
        return np.asarray(y_raw, dtype=np.float64)
    return np.asarray(call(KIND, component, f"prepare(y, n_outputs={n})", prepare, y_raw, n), dtype=np.float64)


def make_inputs(component: Any, rng: np.random.Generator, m: int, n: int,
                targets: Callable | None = None, predictions: Callable | None = None):
    """Predictions and prepared targets in the loss's domain, as the module docstring explains."""
    __tracebackhide__ = True
    loss = fresh(KIND, component)
    one_hot = False
    if targets is not None:
        y = _prepare(loss, component, targets(rng, m, n), n)
    elif getattr(loss, "prepare", None) is None:
        y = _binary(rng, m, n)
    else:
        y, reasons = None, []
        for maker in (_binary, _one_hot):
            raw = maker(rng, m, n)
            try:
                y = np.asarray(loss.prepare(raw, n), dtype=np.float64)
            except Exception as exc:  # this target format is outside the loss's domain
                reasons.append(f"{maker.__name__.strip('_')}: {exc}")
                continue
            one_hot = maker is _one_hot
            break
        if y is None:
            fail(KIND, component, f"prepare(y, {n}) rejected every default target set ({'; '.join(reasons)}); "
                 "pass targets=... to the check to generate targets in its domain")
    if predictions is not None:
        y_hat = np.asarray(predictions(rng, m, n), dtype=np.float64)
    else:
        y_hat = _softmax_rows(rng, m, n) if one_hot else _probabilities(rng, m, n)
    if y.shape != y_hat.shape:
        fail(KIND, component, f"prepared targets have shape {y.shape} but predictions have {y_hat.shape}; "
             "prepare(y, n_outputs) must return shape (m, n_outputs)")
    return y_hat, y


def _value(loss, component, y_hat, y, doing="value"):
    v = call(KIND, component, f"{doing} on predictions of shape {y_hat.shape}, dtype {y_hat.dtype}", loss.value, y_hat, y)
    if np.ndim(v) != 0:
        fail(KIND, component, f"value returned an array of shape {np.shape(v)}; it must return one number, the batch mean")
    return float(v)


def _grad(loss, component, y_hat, y):
    return call(KIND, component, f"grad on predictions of shape {y_hat.shape}, dtype {y_hat.dtype}", loss.grad, y_hat, y)


@register_check(KIND)
def check_loss_builds_from_keywords(loss: Any) -> None:
    """Every constructor parameter has a config-friendly default; building with them works."""
    __tracebackhide__ = True
    params = keyword_hyperparameters(KIND, loss)
    cls = loss if isinstance(loss, type) else type(loss)
    call(KIND, loss, f"building from keyword hyperparameters {params}", cls, **params)


@register_check(KIND)
def check_loss_shape_and_dtype(loss: Any, *, seed: int = 0, targets: Callable | None = None,
                               predictions: Callable | None = None) -> None:
    """value returns one finite number; grad has the predictions' shape and dtype (float32, float64)."""
    __tracebackhide__ = True
    rng = np.random.default_rng(seed)
    for dtype in (np.float32, np.float64):
        for n in OUTPUT_WIDTHS:
            y_hat, y = make_inputs(loss, rng, BATCH, n, targets, predictions)
            y_hat, y = y_hat.astype(dtype), y.astype(dtype)
            obj = fresh(KIND, loss)
            v = _value(obj, loss, y_hat, y)
            if not np.isfinite(v):
                fail(KIND, loss, f"value is {v!r} on valid {np.dtype(dtype).name} inputs")
            g = _grad(obj, loss, y_hat, y)
            expect_array_like(KIND, loss, "grad", g, y_hat, "predictions")


@register_check(KIND)
def check_loss_does_not_mutate_inputs(loss: Any, *, seed: int = 0, targets: Callable | None = None,
                                      predictions: Callable | None = None) -> None:
    """value and grad leave y_hat and y alone."""
    __tracebackhide__ = True
    rng = np.random.default_rng(seed)
    y_hat, y = make_inputs(loss, rng, BATCH, 3, targets, predictions)
    obj = fresh(KIND, loss)
    for method in ("value", "grad"):
        p, t = y_hat.copy(), y.copy()
        call(KIND, loss, method, getattr(obj, method), p, t)
        for name, now, before in (("y_hat", p, y_hat), ("y", t, y)):
            if not np.array_equal(now, before):
                fail(KIND, loss, f"{method} modified its input {name} in place")


@register_check(KIND)
def check_loss_finite_at_extremes(loss: Any, *, seed: int = 0, targets: Callable | None = None,
                                  extreme_values: Any = EXTREME_VALUES) -> None:
    """value and grad stay finite, without numpy overflow or division by zero, when predictions
    sit exactly at the ends of the domain (default 0 and 1: probabilities must be clipped)."""
    __tracebackhide__ = True
    if extreme_values is None:
        return
    rng = np.random.default_rng(seed)
    for dtype in (np.float32, np.float64):
        for n in OUTPUT_WIDTHS:
            _, y = make_inputs(loss, rng, BATCH, n, targets, None)
            for fill in list(extreme_values) + [None]:
                y_hat = (np.resize(np.asarray(extreme_values, dtype=np.float64), y.shape) if fill is None
                         else np.full(y.shape, fill)).astype(dtype)
                obj = fresh(KIND, loss)
                shown = "mixed extremes" if fill is None else f"y_hat = {fill!r}"
                with strict_floats(KIND, loss, f"value/grad at {shown} ({np.dtype(dtype).name})"):
                    v = _value(obj, loss, y_hat, y.astype(dtype))
                    g = np.asarray(_grad(obj, loss, y_hat, y.astype(dtype)))
                if not np.isfinite(v) or not np.isfinite(g).all():
                    fail(KIND, loss, f"not finite at {shown} ({np.dtype(dtype).name}): value {v!r}, grad {g.ravel()[:4].tolist()}...; "
                         "clip predictions away from the ends of the domain")


def _gradient(component, y_hat, y, where):
    __tracebackhide__ = True
    loss = fresh(KIND, component)
    analytic = _grad(loss, component, y_hat.copy(), y.copy())
    if np.shape(analytic) != y_hat.shape:
        fail(KIND, component, f"grad returned shape {np.shape(analytic)} for predictions of shape {y_hat.shape}")
    mismatch = compare_gradient(lambda p: _value(loss, component, p, y.copy()), y_hat, analytic)
    if mismatch is not None:
        fail(KIND, component, f"grad disagrees with central differences of value on {where} predictions "
             f"(targets {y.tolist()}), " + mismatch.describe("y_hat"))


@register_check(KIND)
def check_loss_gradient(loss: Any, *, seed: int = 0, targets: Callable | None = None,
                        predictions: Callable | None = None) -> None:
    """grad is dE/dy_hat of value (central differences in float64) on random valid inputs,
    with one and with several outputs."""
    __tracebackhide__ = True
    rng = np.random.default_rng(seed)
    for n in OUTPUT_WIDTHS:
        for m in (1, BATCH):
            y_hat, y = make_inputs(loss, rng, m, n, targets, predictions)
            _gradient(loss, y_hat, y, f"random (m={m}, n={n})")


@register_check(KIND)
def check_loss_gradient_edge(loss: Any, *, seed: int = 0, targets: Callable | None = None,
                             edge_values: Any = EDGE_VALUES) -> None:
    """grad matches central differences for predictions near the ends of the domain
    (default 1e-3, 0.5, 1 - 1e-3)."""
    __tracebackhide__ = True
    if edge_values is None:
        return
    rng = np.random.default_rng(seed)
    values = np.asarray(edge_values, dtype=np.float64)
    for n in OUTPUT_WIDTHS:
        y_hat, y = make_inputs(loss, rng, BATCH, n, targets, None)
        y_hat = np.resize(values, y_hat.shape).astype(np.float64)
        _gradient(loss, y_hat, y, f"edge (n={n})")


@register_check(KIND)
def check_loss_is_batch_mean(loss: Any, *, seed: int = 0, targets: Callable | None = None,
                             predictions: Callable | None = None) -> None:
    """Repeating the batch leaves value unchanged and halves grad: E is the mean over examples,
    not the sum, so the learning rate means the same for every batch size."""
    __tracebackhide__ = True
    rng = np.random.default_rng(seed)
    obj = fresh(KIND, loss)
    for n in OUTPUT_WIDTHS:
        y_hat, y = make_inputs(loss, rng, BATCH, n, targets, predictions)
        v1 = _value(obj, loss, y_hat, y)
        g1 = np.asarray(_grad(obj, loss, y_hat, y), dtype=np.float64)
        v2 = _value(obj, loss, np.vstack([y_hat, y_hat]), np.vstack([y, y]))
        g2 = np.asarray(_grad(obj, loss, np.vstack([y_hat, y_hat]), np.vstack([y, y])), dtype=np.float64)
        if not np.isclose(v2, v1, rtol=1e-9, atol=1e-12):
            fail(KIND, loss, f"value is {v1!r} on a batch and {v2!r} on the same batch repeated twice; the loss must be "
                 "the batch mean E = (1/m) sum L, not the sum")
        if g2.shape != (2 * BATCH, n) or not np.allclose(g2[:BATCH], g1 / 2, rtol=1e-9, atol=1e-15):
            fail(KIND, loss, "grad does not halve when the batch is repeated twice; grad must be dE/dy_hat of the "
                 "batch mean E = (1/m) sum L")


@register_check(KIND)
def check_loss_accuracy(loss: Any, *, seed: int = 0, targets: Callable | None = None,
                        predictions: Callable | None = None) -> None:
    """accuracy, when defined, is a number in [0, 1] and is 1 when the predictions are the targets."""
    __tracebackhide__ = True
    obj = fresh(KIND, loss)
    if getattr(obj, "accuracy", None) is None:
        return
    rng = np.random.default_rng(seed)
    for n in OUTPUT_WIDTHS:
        y_hat, y = make_inputs(loss, rng, BATCH, n, targets, predictions)
        acc = call(KIND, loss, "accuracy", obj.accuracy, y_hat, y)
        if np.ndim(acc) != 0 or not 0.0 <= float(acc) <= 1.0:
            fail(KIND, loss, f"accuracy returned {acc!r}; it must be one number in [0, 1]")
        perfect = call(KIND, loss, "accuracy", obj.accuracy, y.copy(), y)
        if float(perfect) != 1.0:
            fail(KIND, loss, f"accuracy(y, y) is {perfect!r}; predictions equal to the targets must score 1")


def check_loss(loss: Any, **options: Any) -> None:
    """Run every loss check on a class (built with its defaults) or an instance.

    Options: ``seed``; ``targets(rng, m, n)`` and ``predictions(rng, m, n)`` to generate inputs in
    the loss's domain; ``edge_values`` and ``extreme_values`` (or None to skip those checks).
    Raises AssertionError naming the component and the violated property.
    """
    __tracebackhide__ = True
    run_checks(loss, KIND, options)
