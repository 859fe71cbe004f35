"""The training loop: the article's iteration and epoch, seeded shuffling, what callbacks see,
dtype, divergence, and batch sizes larger than the data set."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import backproplab as bp
from backproplab.errors import NonFiniteLossError, NonFiniteParametersError
from hypothesis import given, settings, strategies as st


class Recorder(bp.Callback):
    def __init__(self, keep_arrays: bool = True) -> None:
        self.keep_arrays = keep_arrays
        self.steps: list[dict] = []
        self.summaries: list[bp.EpochSummary] = []
        self.began = self.ended = None

    def on_train_begin(self, trainer):
        self.began = trainer

    def on_iteration(self, step):
        record = {"epoch": step.epoch, "iteration": step.iteration, "loss": step.loss, "m": step.inputs.shape[0]}
        if self.keep_arrays:
            record.update(
                inputs=step.inputs.copy(),
                targets=step.targets.copy(),
                outputs=step.outputs.copy(),
                params={k: v.copy() for k, v in step.params.items()},
                grads={k: v.copy() for k, v in step.grads.items()},
            )
        self.steps.append(record)

    def on_epoch_end(self, summary):
        self.summaries.append(summary)

    def on_train_end(self, history):
        self.ended = history


def linear_data(n: int, seed: int = 0):
    """Rows are distinguishable by their first feature, and y is a function of the row."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.arange(n) / n, rng.normal(size=n)])
    return X, X[:, 0] + X[:, 1]


def small_trainer(callbacks=(), **options):
    net = bp.build_network([2, 1], "identity", initializer="zeros")
    options.setdefault("optimizer", {"name": "sgd", "lr": 1e-4})
    optimizer = options.pop("optimizer")
    return bp.build_trainer(net, "mse", optimizer, callbacks=list(callbacks), **options)


@pytest.mark.parametrize("n,batch,per_epoch,last", [(2000, 20, 100, 20), (2001, 20, 101, 1), (7, 7, 1, 7), (10, 3, 4, 1)])
def test_an_epoch_is_ceil_n_over_batch_size_iterations(n, batch, per_epoch, last):
    X, y = linear_data(n)
    rec = Recorder(keep_arrays=False)
    trainer = small_trainer([rec], batch_size=batch, epochs=2)
    history = trainer.fit(X, y)
    assert trainer.iterations_per_epoch(n) == per_epoch
    assert history.iterations == len(history.losses) == 2 * per_epoch
    assert [s["iteration"] for s in rec.steps] == list(range(2 * per_epoch))
    assert [s["epoch"] for s in rec.steps] == [0] * per_epoch + [1] * per_epoch
    sizes = [s["m"] for s in rec.steps[:per_epoch]]
    assert sizes[-1] == last and sum(sizes) == n  # the last partial batch is used, not dropped
    assert [s.iterations for s in history.epochs] == [per_epoch, 2 * per_epoch]


def test_every_example_is_used_once_per_epoch_and_stays_paired_with_its_target():
    X, y = linear_data(50)
    rec = Recorder()
    small_trainer([rec], batch_size=8, epochs=3, seed=4).fit(X, y)
    for epoch in range(3):
        rows = np.concatenate([s["inputs"] for s in rec.steps if s["epoch"] == epoch])
        targets = np.concatenate([s["targets"] for s in rec.steps if s["epoch"] == epoch])
        np.testing.assert_array_equal(np.sort(rows[:, 0]), np.arange(50) / 50)
        np.testing.assert_allclose(targets[:, 0], rows[:, 0] + rows[:, 1], rtol=1e-15)


def epoch_orders(seed, shuffle=True):
    X, y = linear_data(40)
    rec = Recorder()
    small_trainer([rec], batch_size=8, epochs=2, seed=seed, shuffle=shuffle).fit(X, y)
    return [tuple(np.concatenate([s["inputs"][:, 0] for s in rec.steps if s["epoch"] == e])) for e in range(2)]


def test_shuffling_is_seeded():
    a, b, c = epoch_orders(1), epoch_orders(1), epoch_orders(2)
    assert a == b  # reproducible
    assert a != c  # and the seed matters
    assert a[0] != a[1]  # a new order every epoch
    in_order = tuple(np.arange(40) / 40)
    assert a[0] != in_order
    assert epoch_orders(1, shuffle=False) == [in_order] * 2


def test_callbacks_see_read_only_arrays():
    seen = {}

    class Writer(bp.Callback):
        def on_iteration(self, step):
            for field in ("inputs", "targets", "outputs"):
                with pytest.raises(ValueError, match="read-only"):
                    getattr(step, field)[...] = 0.0
            for group in ("params", "grads"):
                for name, arr in getattr(step, group).items():
                    with pytest.raises(ValueError, match="read-only"):
                        arr[...] = 0.0
                with pytest.raises(TypeError):
                    getattr(step, group)["W1"] = np.zeros(1)
            with pytest.raises(AttributeError):
                step.loss = 0.0
            seen["calls"] = seen.get("calls", 0) + 1

    X, y = linear_data(12)
    X0 = X.copy()
    trainer = small_trainer([Writer()], batch_size=4, epochs=1, shuffle=False)
    trainer.fit(X, y)
    assert seen["calls"] == 3
    np.testing.assert_array_equal(X, X0)
    # The network's own arrays are still writable afterwards: training went on.
    assert all(p.flags.writeable for p in trainer.network.params.values())


def test_step_params_are_the_values_used_before_the_update():
    X, y = linear_data(30)
    rec = Recorder()
    net = bp.build_network([2, 3, 1], "tanh", "identity", seed=0)
    initial = {k: v.copy() for k, v in net.params.items()}
    trainer = bp.build_trainer(net, "mse", {"name": "sgd", "lr": 0.01}, batch_size=10, epochs=2, callbacks=[rec])
    trainer.fit(X / 30, y)
    first = rec.steps[0]
    for k in initial:
        np.testing.assert_array_equal(first["params"][k], initial[k])
    # Each step's params are the previous step's params minus lr times its gradients ...
    for prev, cur in zip(rec.steps, rec.steps[1:]):
        for k in initial:
            np.testing.assert_allclose(cur["params"][k], prev["params"][k] - 0.01 * prev["grads"][k], rtol=1e-14, atol=1e-16)
    # ... and they produced that step's outputs and loss.
    probe = bp.build_network([2, 3, 1], "tanh", "identity", seed=0)
    for s in rec.steps:
        probe.set_params(s["params"])
        np.testing.assert_allclose(probe.forward(s["inputs"]), s["outputs"], rtol=1e-14)
        mse = float(np.mean((s["outputs"] - s["targets"]) ** 2))
        assert s["loss"] == pytest.approx(mse, rel=1e-14)


def test_hooks_are_called_in_order_and_history_is_complete():
    X, y = linear_data(10)
    rec = Recorder(keep_arrays=False)
    trainer = small_trainer([rec], batch_size=4, epochs=3)
    history = trainer.fit(X, y)
    assert rec.began is trainer and rec.ended is history
    assert history.epochs == rec.summaries
    assert [s.epoch for s in history.epochs] == [0, 1, 2]
    # The epoch's train loss is the example-weighted mean of its batch losses.
    for e, summary in enumerate(history.epochs):
        steps = [s for s in rec.steps if s["epoch"] == e]
        expected = sum(s["loss"] * s["m"] for s in steps) / 10
        assert summary.train_loss == pytest.approx(expected, rel=1e-14)
    assert history.losses == [s["loss"] for s in rec.steps]


def test_history_has_epoch_summaries_without_callbacks_too():
    X, y = linear_data(10)
    history = small_trainer(batch_size=5, epochs=2).fit(X, y, validation_data=(X[:4], y[:4]))
    assert [s.epoch for s in history.epochs] == [0, 1]
    assert all(s.val_loss is not None for s in history.epochs)


def test_duck_typed_callbacks_and_partial_hooks():
    calls = []

    class OnlyIteration:  # not a Callback subclass: duck typing is enough
        def on_iteration(self, step):
            calls.append(step.iteration)

    X, y = linear_data(6)
    small_trainer([OnlyIteration()], batch_size=2, epochs=1).fit(X, y)
    assert calls == [0, 1, 2]


def test_validation_and_accuracy_in_the_epoch_summary():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(float)
    net = bp.build_network([2, 1], "sigmoid", initializer="zeros")
    trainer = bp.build_trainer(net, "bce", {"name": "sgd", "lr": 0.5}, batch_size=16, epochs=5)
    history = trainer.fit(X[:60], y[:60], validation_data=(X[60:], y[60:]))
    last = history.epochs[-1]
    assert (last.val_loss, last.val_accuracy) == pytest.approx(trainer.evaluate(X[60:], y[60:]))
    assert last.train_accuracy > 0.9 and last.val_accuracy > 0.9
    # Plain Python floats, ready for MLflow and JSON, whatever numpy scalar a loss returns.
    for summary in history.epochs:
        assert all(type(getattr(summary, f)) is float for f in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"))


def test_float32_stays_float32_end_to_end():
    rng = np.random.default_rng(0)
    X, labels = rng.normal(size=(40, 4)), rng.integers(0, 3, 40)
    rec = Recorder()
    net = bp.build_network([4, 5, 3], "relu", "softmax", "he_normal", dtype="float32")
    trainer = bp.build_trainer(net, "cross_entropy", "adam", batch_size=16, epochs=2, callbacks=[rec])
    history = trainer.fit(X, labels, validation_data=(X[:8], labels[:8]))
    assert all(p.dtype == np.float32 for p in net.params.values())
    for s in rec.steps:
        for field in ("inputs", "targets", "outputs"):
            assert s[field].dtype == np.float32, field
        assert all(g.dtype == np.float32 for g in s["grads"].values())
        assert all(p.dtype == np.float32 for p in s["params"].values())
    assert all(type(loss) is float for loss in history.losses)
    assert all(opt.dtype == np.float32 for opt in trainer.optimizer.m.values())


def test_a_diverging_run_stops_at_the_first_non_finite_loss():
    X, y = linear_data(20)
    rec = Recorder(keep_arrays=False)
    trainer = small_trainer([rec], batch_size=5, epochs=50, optimizer={"name": "sgd", "lr": 5.0})
    with warnings.catch_warnings():
        # The divergence is reported once, as the error below, not as numpy overflow warnings.
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(NonFiniteLossError, match=r"non-finite loss (inf|nan) at epoch \d+, iteration \d+; try a smaller optimizer.lr") as info:
            trainer.fit(X, y)
    err = info.value
    assert not math.isfinite(err.loss)
    assert err.iteration == len(rec.steps) > 0  # every iteration before it was finite and reported
    assert all(math.isfinite(s["loss"]) for s in rec.steps)
    assert err.epoch == err.iteration // 4  # 20 examples in batches of 5
    # The attributes are 0-based indices (as Step's); the message counts from 1, as the progress
    # lines do: the k-th iteration is "iteration k", whatever its index.
    assert f"at epoch {err.epoch + 1}, iteration {err.iteration + 1};" in str(err)
    assert isinstance(err, FloatingPointError)


def test_batch_size_larger_than_the_data_is_clamped_with_a_warning():
    X, y = linear_data(10)
    rec = Recorder(keep_arrays=False)
    trainer = small_trainer([rec], batch_size=50, epochs=2)
    with pytest.warns(UserWarning, match="batch_size 50 exceeds the 10 training examples; using 10"):
        history = trainer.fit(X, y)
    assert history.iterations == 2 and [s["m"] for s in rec.steps] == [10, 10]
    assert trainer.batch_size == 50  # the setting itself is left alone
    assert trainer.iterations_per_epoch(10) == 1
    assert trainer.iterations_per_epoch(0) == 0


def test_fit_continues_counting_iterations_across_calls():
    X, y = linear_data(10)
    rec = Recorder(keep_arrays=False)
    trainer = small_trainer([rec], batch_size=5, epochs=1)
    trainer.fit(X, y)
    trainer.fit(X, y)
    assert [s["iteration"] for s in rec.steps] == [0, 1, 2, 3]


def test_evaluate_does_not_change_the_parameters():
    X, y = linear_data(10)
    trainer = small_trainer(batch_size=5, epochs=1)
    trainer.fit(X, y)
    before = {k: v.copy() for k, v in trainer.network.params.items()}
    loss, acc = trainer.evaluate(X, y)
    assert acc is None  # mse has no accuracy
    assert loss == pytest.approx(float(np.mean((trainer.network.predict(X)[:, 0] - y) ** 2)))
    for k in before:
        np.testing.assert_array_equal(trainer.network.params[k], before[k])


def test_a_non_finite_loss_is_reported_with_the_numbers_the_progress_lines_use():
    """The 5th iteration (the 2nd of epoch 2, with 3 per epoch) is "epoch 2, iteration 5", as
    the console counts; the attributes keep the 0-based indices of Step and MLflow's step."""

    class NanOnFifthCall:
        def __init__(self):
            self.calls = 0

        def value(self, y_hat, y):
            self.calls += 1
            return math.nan if self.calls == 5 else float(np.mean((y_hat - y) ** 2))

        def grad(self, y_hat, y):
            return 2.0 * (y_hat - y) / y_hat.size

    X, y = linear_data(6)
    rec = Recorder(keep_arrays=False)
    net = bp.build_network([2, 1], "identity", initializer="zeros")
    trainer = bp.build_trainer(net, NanOnFifthCall(), {"name": "sgd", "lr": 0.01}, batch_size=2, epochs=3,
                               callbacks=[rec])
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(X, y)
    assert str(info.value).startswith("non-finite loss nan at epoch 2, iteration 5; ")
    assert (info.value.epoch, info.value.iteration) == (1, 4)
    assert [s["iteration"] for s in rec.steps] == [0, 1, 2, 3]


# --- parameters that an update made non-finite ---------------------------------------------------


def test_an_update_to_infinite_weights_fails_even_when_the_loss_stays_finite():
    # rmsprop with lr 1e308 sends W1 to +-inf in the first update; sigmoid(inf) = 1, so the
    # clipped bce loss of the next pass would still be finite.
    net = bp.build_network([3, 4, 1], "sigmoid", initializer={"name": "legacy_randn", "seed": 3})
    trainer = bp.build_trainer(net, "bce", {"name": "rmsprop", "lr": 1e308}, batch_size=1, epochs=3, shuffle=False)
    with pytest.raises(NonFiniteParametersError) as info:
        trainer.fit([[7, 8, 10]], [1])
    assert (info.value.name, info.value.epoch, info.value.iteration) == ("W1", 0, 0)
    assert str(info.value).startswith("non-finite parameter W1 after the update of epoch 1, iteration 1; ")


def test_a_large_network_is_checked_at_the_end_of_each_epoch():
    X, y = linear_data(40)
    net = bp.build_network([X.shape[1], 200, 60, 1], "tanh", "identity", initializer="he_normal", seed=0)
    assert net.n_parameters > 10_000  # above the per-update threshold
    trainer = bp.build_trainer(net, "mse", {"name": "rmsprop", "lr": 1e308}, batch_size=40, epochs=2, shuffle=False)
    with pytest.raises((NonFiniteParametersError, NonFiniteLossError)) as info:
        trainer.fit(X, y)
    assert info.value.epoch == 0


@settings(max_examples=40, deadline=None)
@given(
    optimizer=st.sampled_from(["sgd", "rmsprop", "adagrad", "adam", "adamw"]),
    exponent=st.integers(min_value=-3, max_value=308),
)
def test_no_fit_ends_with_non_finite_parameters(optimizer, exponent):
    net = bp.build_network([3, 4, 1], "sigmoid", initializer={"name": "legacy_randn", "seed": 3})
    trainer = bp.build_trainer(net, "bce", {"name": optimizer, "lr": 10.0**exponent}, batch_size=1, epochs=3, shuffle=False)
    try:
        trainer.fit([[7, 8, 10]], [1])
    except (NonFiniteParametersError, NonFiniteLossError):
        return
    assert all(np.isfinite(p).all() for p in net.params.values())
