"""The conformance kit can fail: each check rejects a component broken in exactly the way the
check is about, with a message that names the component and the property."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from backproplab.plugins.activations import ELU, LeakyReLU, ReLU, Sigmoid, Softmax
from backproplab.plugins.initializers import LegacyRandn, Normal, Zeros
from backproplab.plugins.losses import BinaryCrossEntropy, MeanSquaredError
from backproplab.plugins.optimizers import SGD, Adam
from backproplab.testing import (
    check_activation,
    check_initializer,
    check_loss,
    check_optimizer,
    checks_for,
    compare_gradient,
    detect_kind,
    parametrize_with_checks,
    with_options,
)


def rejects(check, component, *fragments, **options):
    """The full check rejects ``component`` with a message containing every fragment."""
    with pytest.raises(AssertionError) as info:
        check(component, **options)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def rejected_by(component, check_name, *fragments, **options):
    """The individual check named for the defect rejects it, and so does the full check."""
    full = {"activation": check_activation, "loss": check_loss, "initializer": check_initializer,
            "optimizer": check_optimizer}[detect_kind(component)]
    with pytest.raises(AssertionError):
        full(component, **options)
    by_name = {c.name: c for c in checks_for(component, **options)}
    return rejects(by_name[check_name], component, *fragments)


def only_rejected_by(component, check_name, *fragments, **options):
    """``check_name`` rejects ``component`` and every other check passes it: the defect is one
    that only this check catches."""
    for check in checks_for(component, **options):
        if check.name != check_name:
            check(component)
    return rejected_by(component, check_name, *fragments, **options)


# --- activations -------------------------------------------------------------------------


class WrongDerivative(Sigmoid):
    def backward(self, z, a, grad_a):
        return grad_a * a  # forgot the (1 - a)


class SlightlyOff(Sigmoid):
    """A 1e-4 relative error: small enough to train, large enough that the kit must notice."""

    def backward(self, z, a, grad_a):
        return grad_a * a * (1.0 - a) * (1.0 + 1e-4)


class ElementwiseSoftmaxBackward(Softmax):
    def backward(self, z, a, grad_a):
        return grad_a * a * (1 - a)  # the Jacobian's diagonal only: wrong for softmax


class MutatesZ:
    def forward(self, z):
        np.maximum(z, 0, out=z)
        return z.copy()

    def backward(self, z, a, grad_a):
        return grad_a * (z > 0)


class MutatesGradA:
    def forward(self, z):
        return np.tanh(z)

    def backward(self, z, a, grad_a):
        grad_a *= 1 - a * a
        return grad_a


class UpcastsToFloat64:
    def forward(self, z):
        return np.tanh(z).astype(np.float64)

    def backward(self, z, a, grad_a):
        return grad_a * (1 - a * a)


class NaiveSigmoid:
    """1 / (1 + exp(-z)) overflows for z << 0."""

    def forward(self, z):
        return 1.0 / (1.0 + np.exp(-z))

    def backward(self, z, a, grad_a):
        return grad_a * a * (1 - a)


class NaiveSoftplus:
    """log(1 + exp(z)) is inf at z = 1000."""

    def forward(self, z):
        with np.errstate(over="ignore"):
            return np.log1p(np.exp(z))

    def backward(self, z, a, grad_a):
        return grad_a * expit(z)


class ReluWrongAtKink(ReLU):
    def backward(self, z, a, grad_a):
        return grad_a * np.where(z > 0, 1.0, np.where(z == 0, 3.0, 0.0)).astype(z.dtype)


class NeedsAlpha:
    def __init__(self, alpha):
        self.alpha = alpha

    def forward(self, z):
        return z * self.alpha

    def backward(self, z, a, grad_a):
        return grad_a * self.alpha


class PositionalOnly:
    def __init__(self, alpha=1.0, /):
        self.alpha = alpha

    def forward(self, z):
        return z * self.alpha

    def backward(self, z, a, grad_a):
        return grad_a * self.alpha


class ObjectDefault:
    def __init__(self, table=object()):
        self.table = table

    def forward(self, z):
        return z.copy()

    def backward(self, z, a, grad_a):
        return grad_a.copy()


class ReturnsList:
    def forward(self, z):
        return z.tolist()

    def backward(self, z, a, grad_a):
        return grad_a


@pytest.mark.parametrize(
    "component, check_name, fragments",
    [
        (WrongDerivative, "check_activation_gradient", ["activation WrongDerivative", "backward disagrees with central differences", "random"]),
        (SlightlyOff, "check_activation_gradient", ["SlightlyOff", "relative error"]),
        (ElementwiseSoftmaxBackward, "check_activation_gradient", ["ElementwiseSoftmaxBackward", "backward disagrees"]),
        (ReluWrongAtKink, "check_activation_gradient_edge", ["ReluWrongAtKink", "at the kink z[", "= 0.0", "not between the one-sided slopes"]),
        (MutatesZ, "check_activation_does_not_mutate_inputs", ["MutatesZ", "forward modified its input z in place"]),
        (MutatesGradA, "check_activation_does_not_mutate_inputs", ["MutatesGradA", "backward modified its input grad_a in place"]),
        (UpcastsToFloat64, "check_activation_shape_and_dtype", ["UpcastsToFloat64", "forward changed the dtype: input float32, forward float64"]),
        (NaiveSigmoid, "check_activation_finite_for_large_inputs", ["NaiveSigmoid", "|z| = 1000", "overflow"]),
        (NaiveSoftplus, "check_activation_finite_for_large_inputs", ["NaiveSoftplus", "forward is not finite at z = 1000"]),
        (NeedsAlpha, "check_activation_builds_from_keywords", ["NeedsAlpha", "'alpha' has no default"]),
        (PositionalOnly, "check_activation_builds_from_keywords", ["PositionalOnly", "'alpha' is positional-only"]),
        (ObjectDefault, "check_activation_builds_from_keywords", ["ObjectDefault", "default of hyperparameter 'table'", "a config file cannot hold"]),
        (ReturnsList, "check_activation_shape_and_dtype", ["ReturnsList", "not a numpy array"]),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_check_activation_rejects(component, check_name, fragments):
    rejected_by(component, check_name, *fragments)


def test_each_activation_failure_comes_from_the_check_named_for_it():
    """The individual checks are precise: a mutation is not reported as a gradient error."""
    by_name = {c.name: c for c in checks_for(MutatesZ)}
    by_name["check_activation_gradient"](MutatesZ)  # its derivative is right
    with pytest.raises(AssertionError, match="modified its input z"):
        by_name["check_activation_does_not_mutate_inputs"](MutatesZ)


@pytest.mark.parametrize("component", [ReLU, LeakyReLU(alpha=0.2), ELU(alpha=0.5), ELU, Softmax])
def test_kinks_and_c1_points_accept_a_correct_derivative(component):
    """relu and leaky_relu at 0 (kinks) and elu at 0 (a jump in the second derivative) pass."""
    check_activation(component)


def test_custom_edge_inputs_are_used():
    """An author can move the edge inputs; the wrong kink value is then never sampled."""
    check_activation(ReluWrongAtKink, edge_inputs=[[0.5, -0.5], [2.0, -2.0]])


# --- losses ------------------------------------------------------------------------------


class WrongLossGradient(MeanSquaredError):
    def grad(self, y_hat, y):
        return (y_hat - y) / y_hat.size  # missing the factor 2


class SumNotMean(MeanSquaredError):
    def value(self, y_hat, y):
        return float(np.sum((y_hat - y) ** 2) / y_hat.shape[1])

    def grad(self, y_hat, y):
        return 2.0 * (y_hat - y) / y_hat.shape[1]


class UnclippedBCE(BinaryCrossEntropy):
    def value(self, y_hat, y):
        return float(-np.mean(y * np.log(y_hat) + (1 - y) * np.log(1 - y_hat)))

    def grad(self, y_hat, y):
        return (y_hat - y) / (y_hat * (1 - y_hat) * y_hat.size)


class LossMutates(MeanSquaredError):
    def grad(self, y_hat, y):
        y_hat -= y
        return (2.0 / y_hat.size) * y_hat


class LossUpcasts(MeanSquaredError):
    def grad(self, y_hat, y):
        return ((2.0 / y_hat.size) * (y_hat - y)).astype(np.float64)


class LossReturnsArray(MeanSquaredError):
    def value(self, y_hat, y):
        return np.mean((y_hat - y) ** 2, axis=0)


class BadAccuracy(BinaryCrossEntropy):
    def accuracy(self, y_hat, y):
        return float(np.mean((y_hat < 0.5) == (y >= 0.5)))


class StrictTargets(MeanSquaredError):
    """Accepts only targets in {-1, 1}: the default generators cannot feed it."""

    def prepare(self, y, n_outputs):
        y = np.asarray(y, dtype=float).reshape(-1, n_outputs)
        if not np.isin(y, (-1.0, 1.0)).all():
            raise ValueError("targets must be -1 or 1")
        return y


@pytest.mark.parametrize(
    "component, check_name, fragments",
    [
        (WrongLossGradient, "check_loss_gradient", ["loss WrongLossGradient", "grad disagrees with central differences of value"]),
        (SumNotMean, "check_loss_is_batch_mean", ["loss SumNotMean", "must be the batch mean"]),
        (UnclippedBCE, "check_loss_finite_at_extremes", ["loss UnclippedBCE", "y_hat = 0.0", "divide by zero"]),
        (LossMutates, "check_loss_does_not_mutate_inputs", ["loss LossMutates", "grad modified its input y_hat in place"]),
        (LossUpcasts, "check_loss_shape_and_dtype", ["loss LossUpcasts", "grad changed the dtype: predictions float32, grad float64"]),
        (LossReturnsArray, "check_loss_shape_and_dtype", ["loss LossReturnsArray", "value returned an array of shape (1,)"]),
        (BadAccuracy, "check_loss_accuracy", ["loss BadAccuracy", "accuracy(y, y) is 0.0"]),
        (StrictTargets, "check_loss_gradient", ["loss StrictTargets", "rejected every default target set", "pass targets="]),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_check_loss_rejects(component, check_name, fragments):
    rejected_by(component, check_name, *fragments)


def test_loss_with_its_own_domain_passes_with_custom_generators():
    def targets(rng, m, n):
        return rng.choice([-1.0, 1.0], size=(m, n))

    def predictions(rng, m, n):
        return rng.normal(0.0, 3.0, size=(m, n))

    check_loss(StrictTargets, targets=targets, predictions=predictions, edge_values=(-5.0, 0.1, 5.0),
               extreme_values=(-1e3, 1e3))
    # ... and the generator is really used: a wrong gradient is still caught on those inputs.
    rejects(check_loss, WrongLossGradient, "grad disagrees", predictions=predictions)


# --- initialisers ------------------------------------------------------------------------


class GlobalRandom:
    def __call__(self, shape, rng, dtype=np.float64):
        return np.random.randn(*shape).astype(dtype)


class FixedStream:
    """Keeps its own generator and ignores the rng it is given."""

    def __call__(self, shape, rng, dtype=np.float64):
        return np.random.default_rng(42).standard_normal(shape).astype(dtype)


class Transposed:
    def __call__(self, shape, rng, dtype=np.float64):
        return rng.standard_normal(shape[::-1]).astype(dtype)


class IgnoresDtype:
    def __call__(self, shape, rng, dtype=np.float64):
        return rng.standard_normal(shape)


class NoDefaultDtype:
    def __call__(self, shape, rng, dtype):
        return rng.standard_normal(shape).astype(dtype)


class CachedZeros:
    def __init__(self):
        self._cache = {}

    def __call__(self, shape, rng, dtype=np.float64):
        return self._cache.setdefault((shape, np.dtype(dtype)), np.zeros(shape, dtype=dtype))


class Identityish:
    """Deterministic but not constant: passes only when declared deterministic."""

    def __call__(self, shape, rng, dtype=np.float64):
        return np.arange(np.prod(shape), dtype=dtype).reshape(shape)


@pytest.mark.parametrize(
    "component, check_name, fragments",
    [
        (GlobalRandom, "check_initializer_seed", ["initializer GlobalRandom", "numpy's global random state"]),
        (FixedStream, "check_initializer_seed", ["initializer FixedStream", "seeds 0 and 1 gave the same", "ignores the rng"]),
        (Transposed, "check_initializer_shape_and_dtype", ["initializer Transposed", "asked for shape (3, 4) (fan_out, fan_in), returned shape (4, 3)"]),
        (IgnoresDtype, "check_initializer_shape_and_dtype", ["initializer IgnoresDtype", "asked for dtype float32, returned float64"]),
        (NoDefaultDtype, "check_initializer_shape_and_dtype", ["initializer NoDefaultDtype", "raised TypeError"]),
        (CachedZeros, "check_initializer_returns_new_arrays", ["initializer CachedZeros", "share memory"]),
        (Identityish, "check_initializer_seed", ["initializer Identityish", "pass deterministic=True"]),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_check_initializer_rejects(component, check_name, fragments):
    rejected_by(component, check_name, *fragments)


class CachedStream:
    """Seeds a stream of its own from rng on the first call and never again: the first network is
    reproducible, a second one built with the same instance and seed is not."""

    def __init__(self):
        self._stream = None

    def __call__(self, shape, rng, dtype=np.float64):
        if self._stream is None:
            self._stream = np.random.RandomState(int(rng.integers(2**32)))
        return (self._stream.randn(*shape) * 0.1).astype(dtype)


class CountingScale:
    """Draws from rng, but scales by its call count."""

    def __init__(self):
        self.calls = 0

    def __call__(self, shape, rng, dtype=np.float64):
        self.calls += 1
        return (rng.standard_normal(shape) / self.calls).astype(dtype)


class IgnoresItsSeed:
    """Takes a seed hyperparameter but seeds its stream with a constant."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def __call__(self, shape, rng, dtype=np.float64):
        return np.random.RandomState(0).randn(*shape).astype(dtype)


@pytest.mark.parametrize(
    "component, options, fragments",
    [
        (CachedStream, {}, ["initializer CachedStream", "same instance and seed", "gave different W1",
                            "depends on how many times it has been called"]),
        (CountingScale, {}, ["initializer CountingScale", "depends on how many times it has been called"]),
        # deterministic=True exempts a stream of its own only if the output really ignores rng.
        (CountingScale, {"deterministic": True}, ["declared deterministic=True", "default_rng(0) and default_rng(1)"]),
        (IgnoresItsSeed, {"deterministic": True}, ["initializer IgnoresItsSeed", "seed=0 and with seed=1",
                                                   "seed hyperparameter is ignored"]),
    ],
    ids=["CachedStream", "CountingScale", "CountingScale-deterministic", "IgnoresItsSeed"],
)
def test_check_initializer_repeatable_rejects(component, options, fragments):
    only_rejected_by(component, "check_initializer_repeatable", *fragments, **options)


def test_check_initializer_repeatable_is_fair_to_legacy_randn():
    """legacy_randn is deterministic given its seed at build time: with seed=None it draws its
    legacy seed from rng on every call, and with seed=3 (the worked example) a fresh instance
    always replays the same stream, which it declares with deterministic=True."""
    (repeatable,) = [c for c in checks_for(LegacyRandn) if c.name == "check_initializer_repeatable"]
    repeatable(LegacyRandn)
    repeatable(LegacyRandn(scale=0.1))
    check_initializer(LegacyRandn(seed=3, scale=0.1), deterministic=True)
    # The same instance continues its stream, so without the declaration it is reported.
    (strict,) = [c for c in checks_for(LegacyRandn(seed=3)) if c.name == "check_initializer_repeatable"]
    rejects(strict, LegacyRandn(seed=3), "depends on how many times it has been called")


def test_initializer_options_and_instances():
    check_initializer(Identityish, deterministic=True)
    check_initializer(Zeros)  # constant output needs no declaration
    check_initializer(Normal(std=0.5))
    # A seeded legacy_randn ignores the run seed by design, and says so.
    rejects(check_initializer, LegacyRandn(seed=3), "seeds 0 and 1 gave the same")
    check_initializer(LegacyRandn(seed=3), deterministic=True)


# --- optimizers --------------------------------------------------------------------------


class Rebinds(SGD):
    def step(self, params, grads):
        for name, g in grads.items():
            params[name] = params[name] - self.lr * g


class UpdatesACopy(SGD):
    def step(self, params, grads):
        for name, g in grads.items():
            p = params[name].copy()
            p -= self.lr * g


class SharedMomentum:
    """One velocity buffer for every parameter: the classic bug the state check exists for."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def step(self, params, grads):
        for name, g in grads.items():
            self.v = g.copy() if self.v is None else self.momentum * self.v + g
            params[name] -= self.lr * self.v


class GlobalStepCount(Adam):
    """Bias correction from one step counter for all parameters: wrong when they are stepped in
    separate calls."""

    def step(self, params, grads):
        self._t = getattr(self, "_t", 0) + 1
        for name, g in grads.items():
            m = self.m.setdefault(name, np.zeros_like(g))
            v = self.v.setdefault(name, np.zeros_like(g))
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            m_hat = m / (1 - self.beta1**self._t)
            v_hat = v / (1 - self.beta2**self._t)
            params[name] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class Noisy(SGD):
    def step(self, params, grads):
        for name, g in grads.items():
            params[name] -= self.lr * (g + np.random.default_rng().normal(0, 1e-3, g.shape))


class Ascends(SGD):
    def step(self, params, grads):
        for name, g in grads.items():
            params[name] += self.lr * g


class ClipsGradsInPlace(SGD):
    def step(self, params, grads):
        for name, g in grads.items():
            np.clip(g, -0.5, 0.5, out=g)
            params[name] -= self.lr * g


class NeedsLr:
    def __init__(self, lr):
        self.lr = lr

    def step(self, params, grads):
        for name, g in grads.items():
            params[name] -= self.lr * g


class Float16Update(SGD):
    """Rounds each update to float16 before applying it: in place, same dtype, but 11 bits."""

    def step(self, params, grads):
        for name, g in grads.items():
            params[name] -= (self.lr * g).astype(np.float16)


class Float32Update(SGD):
    def step(self, params, grads):
        for name, g in grads.items():
            params[name] -= (self.lr * g).astype(np.float32)


class Float16Result(SGD):
    """Stores the stepped parameters rounded to float16 (in place, still a float64 array)."""

    def step(self, params, grads):
        for name, g in grads.items():
            params[name][...] = (params[name] - self.lr * g).astype(np.float16)


class SignSGD:
    """Updates by lr * sign(g): with lr a power of two every change is a float16 number, legitimately."""

    def __init__(self, lr: float = 0.5):
        self.lr = lr

    def step(self, params, grads):
        for name, g in grads.items():
            params[name] -= self.lr * np.sign(g)


@pytest.mark.parametrize(
    "component, fragments",
    [
        (Float16Update, ["optimizer Float16Update", "all 180 changes over 5 steps are float16 numbers",
                         "the update is rounded to float16"]),
        (Float32Update, ["optimizer Float32Update", "are float32 numbers", "the update is rounded to float32"]),
        (Float16Result, ["optimizer Float16Result", "every float64 parameter is a float16 number"]),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_check_optimizer_float64_precision_rejects(component, fragments):
    only_rejected_by(component, "check_optimizer_float64_precision", *fragments)


def test_check_optimizer_float64_precision_accepts_exact_coarse_updates():
    check_optimizer(SignSGD)  # changes of exactly ±0.5 lose nothing
    check_optimizer(SignSGD(lr=2.0**-10))
    check_optimizer(SGD(lr=0.5))


@pytest.mark.parametrize(
    "component, check_name, fragments",
    [
        (Rebinds, "check_optimizer_updates_in_place", ["optimizer Rebinds", "replaced params['W1'] with a new array"]),
        (UpdatesACopy, "check_optimizer_updates_in_place", ["optimizer UpdatesACopy", "left params['W1'] unchanged"]),
        (SharedMomentum, "check_optimizer_state_per_parameter", ["optimizer SharedMomentum", "state is shared between parameters"]),
        (GlobalStepCount, "check_optimizer_state_per_parameter", ["optimizer GlobalStepCount", "interleaved calls"]),
        (Noisy, "check_optimizer_deterministic", ["optimizer Noisy", "not deterministic"]),
        (Ascends, "check_optimizer_lowers_quadratic", ["optimizer Ascends", "did not lower a convex quadratic"]),
        (ClipsGradsInPlace, "check_optimizer_updates_in_place", ["optimizer ClipsGradsInPlace", "modified grads['W1'] in place"]),
        (NeedsLr, "check_optimizer_builds_from_keywords", ["optimizer NeedsLr", "'lr' has no default"]),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_check_optimizer_rejects(component, check_name, fragments):
    rejected_by(component, check_name, *fragments)


def test_optimizer_instance_is_copied_not_consumed():
    opt = Adam(lr=0.05)
    check_optimizer(opt)
    assert opt.m == {} and opt.t == {}, "the kit must check copies, never step the author's instance"


# --- the kit's own plumbing --------------------------------------------------------------


def test_compare_gradient_finds_the_worst_coordinate():
    x = np.array([[0.5, 1.5, -2.0]])
    analytic = 2 * x
    analytic[0, 1] += 0.1
    mismatch = compare_gradient(lambda v: v**2, x, analytic)
    assert mismatch is not None and mismatch.index == (0, 1)
    assert mismatch.numeric == pytest.approx(3.0, rel=1e-8)
    assert compare_gradient(lambda v: v**2, x, 2 * x) is None


def test_detect_kind_and_unknown_options():
    assert [detect_kind(c) for c in (ReLU, MeanSquaredError(), Zeros, SGD)] == [
        "activation", "loss", "initializer", "optimizer"]
    with pytest.raises(TypeError, match="matches none of the component interfaces"):
        detect_kind(object)
    with pytest.raises(TypeError, match="'target' is not an option of the loss checks; valid: .*targets"):
        checks_for(MeanSquaredError, target=None)
    with pytest.raises(ValueError, match="unknown component kind 'activations'"):
        checks_for(ReLU, kind="activations")


def test_parametrize_with_checks_ids_options_and_expected_failures():
    mark = parametrize_with_checks(
        {"relu": ReLU, "strict": with_options(StrictTargets, targets=lambda rng, m, n: np.ones((m, n)))},
        expected_failures={"relu-check_activation_gradient": "demonstration"},
    )
    argnames, params = mark.args
    assert argnames == "component, check"
    ids = [p.id for p in params]
    assert "relu-check_activation_gradient" in ids and "strict-check_loss_gradient" in ids
    assert len(ids) == len(checks_for(ReLU)) + len(checks_for(MeanSquaredError))
    xfailed = [p.id for p in params if p.marks]
    assert xfailed == ["relu-check_activation_gradient"]
    assert next(p for p in params if p.marks).marks[0].kwargs["strict"] is True
    with pytest.raises(ValueError, match="expected_failures names no generated test: 'relu-nope'"):
        parametrize_with_checks([ReLU], expected_failures={"relu-nope": "x"})


@parametrize_with_checks([Sigmoid, MeanSquaredError(), Normal, SGD(lr=0.1, momentum=0.5)])
def test_the_helper_runs_real_checks(component, check):
    check(component)


def test_two_components_with_one_label_must_be_named():
    from backproplab.plugins.optimizers import SGD

    with pytest.raises(ValueError, match=r"two components share the test-id label 'SGD'; pass a mapping"):
        parametrize_with_checks([SGD, SGD(lr=0.1)])
    mark = parametrize_with_checks({"SGD": SGD, "SGD_slow": SGD(lr=0.1)})
    ids = [p.id for p in mark.args[1]]
    assert len(ids) == len(set(ids)) and any(i.startswith("SGD_slow-") for i in ids)
