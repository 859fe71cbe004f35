"""Conformance checks for optimizers: ``step(params, grads)`` updates the arrays of ``params`` in
place and keeps its state keyed by parameter name.

The contract is in-place updates: callers and callbacks hold references to the parameter arrays
(``network.params["W1"]`` in the Python API, the read-only Step view), and an update that
allocates a new array per step costs time in the hot loop. An optimizer that shares state
between names couples parameters that should be independent. Both are checked, together with
determinism, float64 precision and progress on a quadratic, all with the component's default
hyperparameters. A checkpointed run is resumed from the optimizer's exported state, so that
state must round-trip exactly through an npz file (``state_dict``/``load_state_dict``), or the
optimizer must keep no state between steps at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import register_check, run_checks
from ._subject import call, fail, fresh, keyword_hyperparameters, through_npz

KIND = "optimizer"
STEPS = 5
QUADRATIC_STEPS = 200


def _grad_sequence(seed, shapes, steps=STEPS):
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(shape) for name, shape in shapes.items()} for _ in range(steps)]


def _params(seed, shapes):
    rng = np.random.default_rng(seed + 1000)
    return {name: rng.standard_normal(shape) for name, shape in shapes.items()}


def _step(component, opt, params, grads, t):
    call(KIND, component, f"step {t} with parameters {sorted(grads)}", opt.step, params, grads)


@register_check(KIND)
def check_optimizer_builds_from_keywords(optimizer: Any) -> None:
    """Every constructor parameter has a config-friendly default; building with them works."""
    __tracebackhide__ = True
    params = keyword_hyperparameters(KIND, optimizer)
    cls = optimizer if isinstance(optimizer, type) else type(optimizer)
    call(KIND, optimizer, f"building from keyword hyperparameters {params}", cls, **params)


@register_check(KIND)
def check_optimizer_updates_in_place(optimizer: Any, *, seed: int = 0) -> None:
    """Every parameter with a non-zero gradient changes, in the same array object (and so keeps
    its dtype, float32 or float64); the gradients are left alone."""
    __tracebackhide__ = True
    shapes = {"W1": (3, 2), "b1": (3,)}
    for dtype in (np.float32, np.float64):
        opt = fresh(KIND, optimizer)
        params = {k: v.astype(dtype) for k, v in _params(seed, shapes).items()}
        for t, grads in enumerate(_grad_sequence(seed, shapes)):
            grads = {k: v.astype(dtype) for k, v in grads.items()}
            originals = dict(params)
            before = {k: v.copy() for k, v in params.items()}
            grads_before = {k: v.copy() for k, v in grads.items()}
            _step(optimizer, opt, params, grads, t)
            for name in shapes:
                if params[name] is not originals[name]:
                    fail(KIND, optimizer, f"step replaced params[{name!r}] with a new array; update it in place "
                         f"(params[{name!r}] -= ...): callers hold references to the parameter arrays")
                if np.array_equal(params[name], before[name]):
                    fail(KIND, optimizer, f"step {t} left params[{name!r}] unchanged despite a non-zero gradient "
                         f"({np.dtype(dtype).name})")
                if not np.isfinite(params[name]).all():
                    fail(KIND, optimizer, f"step {t} made params[{name!r}] non-finite ({np.dtype(dtype).name})")
                if not np.array_equal(grads[name], grads_before[name]):
                    fail(KIND, optimizer, f"step modified grads[{name!r}] in place; the gradients belong to the caller")


def _low_precision_update(deltas, bounds, low):
    """Whether every informative change lies on ``low``'s grid, to within float64 round-off.

    A change d of a parameter is recovered as ``after - before``; it differs from the update the
    optimizer computed by at most ``bound`` (a float64 ulp of the result). An element is
    informative when ``low``'s spacing at |d| dwarfs that bound, so that a genuine float64 update
    lands within it only by a 1-in-32 chance or less. Changes of one magnitude only (a sign-based
    update with lr a power of two) are inconclusive: rounding them loses nothing.
    """
    rounded = deltas.astype(low).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        spacing = np.spacing(np.abs(deltas).astype(low)).astype(np.float64)
    informative = (deltas != 0) & np.isfinite(rounded) & np.isfinite(spacing) & (spacing > 64 * bounds)
    if informative.sum() < 8 or np.unique(np.abs(rounded[informative])).size < 3:
        return None
    on_grid = np.abs(deltas - rounded) <= bounds
    if not on_grid[informative].all():
        return None
    first = int(np.flatnonzero(informative)[0])
    return int(informative.sum()), float(deltas[first]), float(rounded[first])


@register_check(KIND)
def check_optimizer_float64_precision(optimizer: Any, *, seed: int = 0) -> None:
    """On float64 parameters the update keeps float64 precision: the parameters do not become
    float16 or float32 numbers, and neither do their changes (an update rounded to a lower
    precision, e.g. ``p -= (lr * g).astype(np.float16)``, still passes the in-place checks)."""
    __tracebackhide__ = True
    shapes = {"W1": (6, 5), "b1": (6,)}
    opt = fresh(KIND, optimizer)
    params = _params(seed, shapes)
    deltas, bounds, stored = [], [], {np.float16: True, np.float32: True}
    for t, grads in enumerate(_grad_sequence(seed, shapes)):
        before = {k: v.copy() for k, v in params.items()}
        _step(optimizer, opt, params, grads, t)
        for name in shapes:
            after = params[name]
            if after.dtype != np.float64:
                fail(KIND, optimizer, f"step {t} turned float64 params[{name!r}] into {after.dtype.name}")
            delta = after - before[name]
            deltas.append(delta.ravel())
            bounds.append((np.spacing(np.abs(after)) + np.spacing(np.abs(delta))).ravel())
            for low in stored:
                stored[low] = stored[low] and bool(np.array_equal(after, after.astype(low).astype(np.float64)))
    for low, all_low in stored.items():
        if all_low:
            fail(KIND, optimizer, f"after each step every float64 parameter is a {np.dtype(low).name} number: step "
                 f"rounds its result to {np.dtype(low).name}; compute and store it in the parameters' dtype")
    d, b = np.concatenate(deltas), np.concatenate(bounds)
    for low in (np.float16, np.float32):
        found = _low_precision_update(d, b, low)
        if found:
            n, delta, rounded = found
            name = np.dtype(low).name
            fail(KIND, optimizer, f"on float64 parameters all {n} changes over {STEPS} steps are {name} numbers "
                 f"(e.g. {delta!r} == {name}({rounded!r})): the update is rounded to {name}; "
                 "compute it in the parameters' dtype")


@register_check(KIND)
def check_optimizer_deterministic(optimizer: Any, *, seed: int = 0) -> None:
    """Two fresh optimizers given the same parameters and gradients produce identical parameters."""
    __tracebackhide__ = True
    plan = [(0, ("a", "b", "c"))] * STEPS
    first, second = _run(optimizer, plan, seed), _run(optimizer, plan, seed)
    for name in first:
        if not np.array_equal(first[name], second[name]):
            fail(KIND, optimizer, f"two runs on identical inputs gave different params[{name!r}]: step is not "
                 "deterministic (hidden randomness or state shared between instances)")


def _run(component, plan, seed):
    """Apply ``plan``: a list of (optimizer index, names) steps, over fresh optimizers."""
    shapes = {"a": (3, 2), "b": (3, 2), "c": (3, 2)}
    params = _params(seed, shapes)
    seq = _grad_sequence(seed, shapes)
    opts: dict[int, Any] = {}
    counters: dict[str, int] = {name: 0 for name in shapes}
    for which, names in plan:
        opt = opts.setdefault(which, fresh(KIND, component))
        grads = {}
        for name in names:
            grads[name] = seq[counters[name]][name]
            counters[name] += 1
        _step(component, opt, {n: params[n] for n in names}, grads, min(counters.values()))
    return params


@register_check(KIND)
def check_optimizer_state_per_parameter(optimizer: Any, *, seed: int = 0) -> None:
    """Stepping parameters together, each with its own optimizer, or one at a time in
    interleaved calls gives the same result: state is keyed by parameter name."""
    __tracebackhide__ = True
    together = _run(optimizer, [(0, ("a", "b", "c"))] * STEPS, seed)
    separate = _run(optimizer, [(i, (n,)) for _ in range(STEPS) for i, n in enumerate("abc")], seed)
    interleaved = _run(optimizer, [(0, (n,)) for _ in range(STEPS) for n in "abc"], seed)
    for name in "abc":
        if not np.allclose(together[name], separate[name], rtol=1e-12, atol=0):
            fail(KIND, optimizer, f"params[{name!r}] ends differently when stepped together with other parameters "
                 "than with an optimizer of its own: state is shared between parameters; key it by parameter name")
        if not np.allclose(interleaved[name], separate[name], rtol=1e-12, atol=0):
            fail(KIND, optimizer, f"params[{name!r}] ends differently when parameters are stepped one at a time in "
                 "interleaved calls: some state (e.g. a step counter) is shared between parameters; key it by name")


@register_check(KIND)
def check_optimizer_lowers_quadratic(optimizer: Any, *, seed: int = 0, steps: int = QUADRATIC_STEPS) -> None:
    """With its default hyperparameters it lowers f(θ) = ½ Σ d (θ − c)² over a few hundred steps."""
    __tracebackhide__ = True
    rng = np.random.default_rng(seed)
    shapes = {"W1": (4, 3), "b1": (4,)}
    centre = {k: rng.standard_normal(s) for k, s in shapes.items()}
    curvature = {k: rng.uniform(0.5, 2.0, s) for k, s in shapes.items()}
    params = {k: centre[k] + rng.choice([-1.0, 1.0], s) * rng.uniform(0.5, 1.5, s) for k, s in shapes.items()}

    def f():
        return sum(0.5 * float(np.sum(curvature[k] * (params[k] - centre[k]) ** 2)) for k in shapes)

    start = f()
    opt = fresh(KIND, optimizer)
    for t in range(steps):
        grads = {k: curvature[k] * (params[k] - centre[k]) for k in shapes}
        _step(optimizer, opt, params, grads, t)
    end = f()
    if not np.isfinite(end) or not end < start:
        fail(KIND, optimizer, f"did not lower a convex quadratic with its default hyperparameters: "
             f"f = {start:.6g} before and {end:.6g} after {steps} steps")


def _stateful(component: Any) -> bool:
    __tracebackhide__ = True
    has = [callable(getattr(component, m, None)) for m in ("state_dict", "load_state_dict")]
    if any(has) and not all(has):
        missing = "load_state_dict" if has[0] else "state_dict"
        fail(KIND, component, f"has {'state_dict' if has[0] else 'load_state_dict'} but no {missing}: a checkpoint needs both, "
             "to export the state and to take it back")
    return all(has)


@register_check(KIND)
def check_optimizer_state_round_trips(optimizer: Any, *, seed: int = 0) -> None:
    """A run resumed from a checkpoint continues bit for bit: ``state_dict()`` exported after a
    few steps and loaded (through npz) into a fresh optimizer gives exactly the next steps of
    the original, and is a copy that later steps leave alone. An optimizer without these two
    methods must be stateless: a fresh instance per step gives the same result as one."""
    __tracebackhide__ = True
    shapes = {"W1": (3, 2), "b1": (3,)}
    grads = _grad_sequence(seed, shapes, 2 * STEPS)
    if not _stateful(optimizer):
        kept, fresh_each = _params(seed, shapes), _params(seed, shapes)
        opt = fresh(KIND, optimizer)
        for t, g in enumerate(grads):
            _step(optimizer, opt, kept, g, t)
            _step(optimizer, fresh(KIND, optimizer), fresh_each, g, t)
        for name in shapes:
            if not np.array_equal(kept[name], fresh_each[name]):
                fail(KIND, optimizer, f"keeps state between steps (params[{name!r}] differs from stepping a fresh instance "
                     "each time) but has no state_dict()/load_state_dict(): a run using it cannot be resumed exactly "
                     "from a checkpoint; add both (see backproplab.components.protocols.OptimizerState)")
        return
    original, params = fresh(KIND, optimizer), _params(seed, shapes)
    for t in range(STEPS):
        _step(optimizer, original, params, grads[t], t)
    exported = call(KIND, optimizer, "state_dict()", original.state_dict)
    snapshot = {k: np.array(v, copy=True) for k, v in exported.items()} if isinstance(exported, dict) else exported
    state = through_npz(KIND, optimizer, exported)
    resumed, resumed_params = fresh(KIND, optimizer), {k: v.copy() for k, v in params.items()}
    call(KIND, optimizer, "load_state_dict(state) on a fresh instance", resumed.load_state_dict, state)
    for t in range(STEPS, 2 * STEPS):
        _step(optimizer, original, params, grads[t], t)
        _step(optimizer, resumed, resumed_params, grads[t], t)
    for name in shapes:
        if not np.array_equal(params[name], resumed_params[name]):
            fail(KIND, optimizer, f"after load_state_dict(state_dict()) params[{name!r}] steps differently from the "
                 f"optimizer that exported the state: the state is incomplete or not restored exactly")
    for key, value in snapshot.items():
        if not np.array_equal(exported[key], value):
            fail(KIND, optimizer, f"state_dict()[{key!r}] changed when the optimizer stepped on: return copies, "
                 "not the live arrays, or a checkpoint is overwritten while it is being written")


@register_check(KIND)
def check_optimizer_reads_lr(optimizer: Any, *, seed: int = 0) -> None:
    """An optimizer with an ``lr`` attribute reads it at every step, which is how a schedule
    sets the rate: after ``opt.lr = 0`` a step changes nothing, and restoring the rate (or
    halving it) takes effect from the next step. Without an ``lr`` it passes, and only the
    ``constant`` schedule runs with it."""
    __tracebackhide__ = True
    opt = fresh(KIND, optimizer)
    lr = getattr(opt, "lr", None)
    if lr is None:
        return
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)):
        fail(KIND, optimizer, f"its lr attribute is {lr!r} ({type(lr).__name__}); a schedule sets lr to a float")
    shapes = {"W1": (3, 2), "b1": (3,)}
    params = _params(seed, shapes)
    sequence = _grad_sequence(seed, shapes, steps=3)
    _step(optimizer, opt, params, sequence[0], 0)
    opt.lr = 0.0
    before = {k: v.copy() for k, v in params.items()}
    _step(optimizer, opt, params, sequence[1], 1)
    for name in shapes:
        if not np.array_equal(params[name], before[name]):
            fail(KIND, optimizer, f"with opt.lr = 0 a step still changed params[{name!r}]; read self.lr at every step "
                 "(a schedule sets it between epochs), not a copy taken in __init__")
    opt.lr = float(lr)
    _step(optimizer, opt, params, sequence[2], 2)
    if all(np.array_equal(params[name], before[name]) for name in shapes):
        fail(KIND, optimizer, "after opt.lr was set back to its value, a step changed nothing")


def check_optimizer(optimizer: Any, **options: Any) -> None:
    """Run every optimizer check on a class (built with its defaults) or an instance.

    Options: ``seed``; ``steps`` for the quadratic (default 200). Raises AssertionError naming
    the component and the violated property.
    """
    __tracebackhide__ = True
    run_checks(optimizer, KIND, options)
