"""Conformance checks for initialisers: ``init(shape, rng, dtype=np.float64) -> ndarray`` with
shape ``(fan_out, fan_in)`` and ``rng`` a ``numpy.random.Generator``.

Reproducibility rests on the initialiser drawing only from ``rng``: the same seed must give the
same array, another seed another array. An initialiser whose output is meant not to depend on
the seed at all passes ``deterministic=True``; arrays whose elements are all equal (zeros,
constant) are recognised as deterministic without it.

A network calls its initialiser layer after layer with one generator, so reproducibility also
means that building the same network twice with the same seed gives the same weights, whether
from two instances built alike or from one instance used twice: the output may not depend on
how many times the initialiser has been called. The exception is an initialiser that declares
``deterministic=True`` because it ignores ``rng`` and keeps a seeded stream of its own (the
built-in ``legacy_randn`` with ``seed`` set, which continues one legacy stream across layers to
reproduce the worked example): it must give the same weights whenever it is built afresh with the
same hyperparameters, and must really ignore ``rng``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import register_check, run_checks
from ._subject import call, fail, fresh, keyword_hyperparameters

KIND = "initializer"
SHAPES = ((3, 4), (1, 1), (5, 2))
# (fan_out, fan_in) of each layer of a 3-4-4-2 network, in the order Network asks for them.
NETWORK = ((4, 3), (4, 4), (2, 4))


def _draw(component, init, shape, seed, *dtype):
    rng = np.random.default_rng(seed)
    shown = f"init({shape}, default_rng({seed}){', ' + np.dtype(dtype[0]).name if dtype else ''})"
    return call(KIND, component, shown, init, shape, rng, *dtype)


@register_check(KIND)
def check_initializer_builds_from_keywords(initializer: Any) -> None:
    """Every constructor parameter has a config-friendly default; building with them works."""
    __tracebackhide__ = True
    params = keyword_hyperparameters(KIND, initializer)
    cls = initializer if isinstance(initializer, type) else type(initializer)
    call(KIND, initializer, f"building from keyword hyperparameters {params}", cls, **params)


@register_check(KIND)
def check_initializer_shape_and_dtype(initializer: Any) -> None:
    """Returns a finite array of exactly the requested (fan_out, fan_in) shape and dtype; the
    dtype defaults to float64 when not given."""
    __tracebackhide__ = True
    for shape in SHAPES:
        for dtype in ((np.float32,), (np.float64,), ()):
            out = _draw(initializer, fresh(KIND, initializer), shape, 0, *dtype)
            want = np.dtype(dtype[0] if dtype else np.float64)
            if not isinstance(out, np.ndarray):
                fail(KIND, initializer, f"returned {type(out).__name__} for shape {shape}, not a numpy array")
            if out.shape != shape:
                fail(KIND, initializer, f"asked for shape {shape} (fan_out, fan_in), returned shape {out.shape}")
            if out.dtype != want:
                fail(KIND, initializer, f"asked for dtype {want.name}{'' if dtype else ' (the default)'}, "
                     f"returned {out.dtype.name}")
            if not np.isfinite(out).all():
                fail(KIND, initializer, f"returned non-finite values for shape {shape}")


@register_check(KIND)
def check_initializer_seed(initializer: Any, *, deterministic: bool = False) -> None:
    """The same seed gives the same array, another seed a different one, and numpy's global
    random state is left alone."""
    __tracebackhide__ = True
    shape = (4, 3)
    state = np.random.get_state()
    try:
        first = _draw(initializer, fresh(KIND, initializer), shape, 0)
        after = np.random.get_state()
        if not (after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]):
            fail(KIND, initializer, "draws from numpy's global random state (np.random.*); draw from the rng argument "
                 "so that the run seed decides")
        again = _draw(initializer, fresh(KIND, initializer), shape, 0)
        if not np.array_equal(first, again):
            fail(KIND, initializer, "the same seed gave different arrays: it ignores the rng it is given "
                 "(or keeps hidden random state); draw every random number from rng")
        other = _draw(initializer, fresh(KIND, initializer), shape, 1)
        constant = np.unique(first).size <= 1
        if not deterministic and not constant and np.array_equal(first, other):
            fail(KIND, initializer, "seeds 0 and 1 gave the same random-looking array: it ignores the rng it is given; "
                 "draw from rng, or pass deterministic=True if the output is meant not to depend on the seed")
    finally:
        np.random.set_state(state)


def _build(component, init, seed):
    """The weights of one network build: one generator, every layer in turn, as Network does."""
    rng = np.random.default_rng(seed)
    return [
        np.array(call(KIND, component, f"init({shape}, rng) for W{l} of a network built with default_rng({seed})",
                      init, shape, rng, np.float64), copy=True)
        for l, shape in enumerate(NETWORK, start=1)
    ]


def _first_difference(a, b):
    """The name of the first weight matrix that differs between two builds, or None."""
    for l, (x, y) in enumerate(zip(a, b), start=1):
        if x.shape != y.shape or not np.array_equal(x, y):
            return f"W{l}"
    return None


def _constant(weights):
    return all(np.unique(w).size <= 1 for w in weights)


@register_check(KIND)
def check_initializer_repeatable(initializer: Any, *, deterministic: bool = False) -> None:
    """Building the same network twice with the same seed gives the same weights: from two
    instances built alike, and from one instance used twice (the output does not depend on the
    call count). With ``deterministic=True`` the one-instance case is exempt (a seeded stream of
    its own, like legacy_randn's), but the output must then not depend on ``rng`` at all. A
    ``seed`` hyperparameter, if the constructor has one, must change the weights."""
    __tracebackhide__ = True
    init = fresh(KIND, initializer)
    first = _build(initializer, init, 0)
    where = _first_difference(first, _build(initializer, fresh(KIND, initializer), 0))
    if where:
        fail(KIND, initializer, f"two instances built alike gave different {where} for the same network and seed "
             "(default_rng(0)): it keeps random state outside the instance; draw every random number from rng")
    if deterministic:
        where = _first_difference(first, _build(initializer, fresh(KIND, initializer), 1))
        if where:
            fail(KIND, initializer, f"declared deterministic=True, but default_rng(0) and default_rng(1) gave different "
                 f"{where}: its output depends on rng; drop deterministic=True, which is only for output that ignores the seed")
    else:
        where = _first_difference(first, _build(initializer, init, 0))
        if where:
            fail(KIND, initializer, f"building the same network again with the same instance and seed (default_rng(0)) "
                 f"gave different {where}: its output depends on how many times it has been called (e.g. a random "
                 "stream of its own, seeded once and never again); draw every random number from the rng argument")
    params = keyword_hyperparameters(KIND, initializer)
    if "seed" in params:
        cls = initializer if isinstance(initializer, type) else type(initializer)
        built = {}
        for seed in (0, 1):
            hyper = {**params, "seed": seed}
            made = call(KIND, initializer, f"building with hyperparameters {hyper}", cls, **hyper)
            built[seed] = _build(initializer, made, 0)
            where = _first_difference(built[seed], _build(initializer, call(KIND, initializer, "building again", cls, **hyper), 0))
            if where:
                fail(KIND, initializer, f"two instances built with seed={seed} gave different {where} for the same network "
                     "and rng: it must be deterministic given its seed")
        if not _constant(built[0]) and _first_difference(built[0], built[1]) is None:
            fail(KIND, initializer, "built with seed=0 and with seed=1 it gave the same weights: "
                 "its seed hyperparameter is ignored; use it to seed what it draws from")


@register_check(KIND)
def check_initializer_returns_new_arrays(initializer: Any) -> None:
    """Two calls return independent arrays, so that layers never share their weights."""
    __tracebackhide__ = True
    init = fresh(KIND, initializer)
    rng = np.random.default_rng(0)
    a = call(KIND, initializer, "init((3, 2), rng)", init, (3, 2), rng, np.float64)
    b = call(KIND, initializer, "init((3, 2), rng)", init, (3, 2), rng, np.float64)
    if np.shares_memory(a, b):
        fail(KIND, initializer, "two calls returned arrays that share memory; layers would share their weights")


def check_initializer(initializer: Any, **options: Any) -> None:
    """Run every initialiser check on a class (built with its defaults) or an instance.

    Options: ``deterministic=True`` for an initialiser whose output is meant not to depend on
    the seed (it may then keep a seeded stream of its own across calls). Raises AssertionError naming the component and the violated property.
    """
    __tracebackhide__ = True
    run_checks(initializer, KIND, options)
