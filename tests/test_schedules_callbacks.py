"""Schedules and callbacks through the Python API and the configured run: the trainer's side of
the interface (the optimizer's ``lr``, ``stop_training``), Keras's early-stopping semantics on
known sequences, and the conformance kit catching components that break the contract."""

from __future__ import annotations

import math

import numpy as np
import pytest

import backproplab as bp
from backproplab.errors import ConfigError
from backproplab.numerics.trainer import EpochSummary
from backproplab.plugins.callbacks import EarlyStopping
from backproplab.plugins.schedules import ReduceLROnPlateau
from backproplab.run.job import prepare, run
from backproplab.testing import check_callback, check_optimizer, check_schedule, detect_kind

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = np.array([0.0, 1.0, 1.0, 0.0])


def _trainer(**options):
    network = bp.build_network([2, 3, 1], activation="tanh", output_activation="sigmoid", seed=0)
    return bp.build_trainer(network, batch_size=2, **options)


def test_the_issues_python_api_example():
    trainer = _trainer(optimizer={"name": "sgd", "lr": 0.4}, schedule={"name": "step", "step_size": 2, "gamma": 0.5}, epochs=5)
    history = trainer.fit(X, Y)
    assert [e.lr for e in history.epochs] == [0.4, 0.4, 0.2, 0.2, 0.1]
    assert trainer.optimizer.lr == 0.1  # what a sixth epoch would run at, as torch's StepLR leaves it


def test_the_constant_schedule_changes_nothing():
    plain = _trainer(epochs=4).fit(X, Y)
    constant = _trainer(epochs=4, schedule="constant").fit(X, Y)
    assert plain.losses == constant.losses and [e.lr for e in constant.epochs] == [0.5] * 4


class NoLr:
    """An optimizer without an ``lr`` attribute: fixed steps of 0.1 times the gradient."""

    def step(self, params, grads):
        for name, g in grads.items():
            params[name] -= 0.1 * g


def test_an_optimizer_without_lr_runs_with_constant_and_is_refused_by_a_real_schedule():
    history = _trainer(optimizer=NoLr(), schedule="constant", epochs=2).fit(X, Y)
    assert [e.lr for e in history.epochs] == [None, None]
    with pytest.raises(ConfigError, match="optimizer NoLr has no numeric 'lr' attribute"):
        _trainer(optimizer=NoLr(), schedule="exponential")


class Broken:
    def initial_lr(self, base_lr):
        return base_lr

    def next_lr(self, epoch, lr, metrics):
        return math.nan if epoch == 1 else lr


def test_a_schedule_answering_nan_stops_the_run_naming_it():
    with pytest.raises(ConfigError, match=r"schedule Broken.next_lr returned the learning rate nan for epoch 3"):
        _trainer(schedule=Broken(), epochs=4).fit(X, Y)


def _summaries(values, key="val_loss"):
    return [EpochSummary(epoch=i, iterations=i + 1, train_loss=1.0, **{key: v}) for i, v in enumerate(values)]


class FakeTrainer:
    """What early stopping touches on the trainer: the stop flag, the reason and the network."""

    def __init__(self):
        self.stop_training, self.stop_reason = False, None
        self.network = bp.build_network([1, 1], seed=0)


def _watch(callback, values, key="val_loss"):
    trainer = FakeTrainer()
    callback.on_train_begin(trainer)
    ran = 0
    for summary in _summaries(values, key):
        trainer.network.params["b1"][...] = summary.epoch  # the parameters "of" each epoch
        callback.on_epoch_end(summary)
        ran += 1
        if trainer.stop_training:
            break
    return ran, trainer


@pytest.mark.parametrize("values, patience, min_delta, ran, reason", [
    # Keras: patience 0 stops at the first epoch that is no better.
    ([1.0, 0.9, 0.95, 0.8], 0, 0.0, 3, "stopped early at epoch 3; best epoch 2"),
    # patience 2: training stops after two epochs without improvement.
    ([1.0, 0.9, 0.95, 0.92, 0.91, 0.5], 2, 0.0, 4, "stopped early at epoch 4; best epoch 2"),
    # an improvement smaller than min_delta does not count.
    ([1.0, 0.99, 0.98, 0.5], 1, 0.05, 2, "stopped early at epoch 2; best epoch 1"),
    # never worse: runs to the end without a reason.
    ([1.0, 0.9, 0.8], 0, 0.0, 3, None),
])
def test_early_stopping_follows_keras(values, patience, min_delta, ran, reason):
    done, trainer = _watch(EarlyStopping(patience=patience, min_delta=min_delta), values)
    assert done == ran and trainer.stop_reason == reason


def test_early_stopping_on_accuracy_maximises_and_restores_the_best_epoch():
    done, trainer = _watch(EarlyStopping(monitor="val/accuracy", patience=1, restore_best=True), [0.5, 0.8, 0.7, 0.75], "val_accuracy")
    assert done == 3 and trainer.stop_reason == "stopped early at epoch 3; best epoch 2; parameters of epoch 2 restored"
    assert trainer.network.params["b1"][0] == 1  # epoch index 1 = the second epoch


def test_early_stopping_watches_train_loss_without_a_split():
    callback = EarlyStopping(patience=0)
    trainer = FakeTrainer()
    callback.on_train_begin(trainer)
    callback.on_epoch_end(EpochSummary(epoch=0, iterations=1, train_loss=1.0))
    callback.on_epoch_end(EpochSummary(epoch=1, iterations=2, train_loss=1.5))
    assert trainer.stop_reason == "stopped early at epoch 2; best epoch 1"


def test_a_callback_that_stops_without_a_reason_gets_one():
    history = _trainer(callbacks=[StopsAtOnce()], epochs=5).fit(X, Y)
    assert len(history.epochs) == 1 and history.stop_reason == "stopped by a callback after epoch 1"


def test_a_stopped_fit_ends_with_the_reason_and_the_epochs_it_ran():
    trainer = _trainer(optimizer={"name": "sgd", "lr": 8.0}, epochs=40,
                       callbacks=[{"name": "early_stopping", "patience": 1, "restore_best": True}])
    history = trainer.fit(X, Y, validation_data=(X, Y))
    assert history.stop_reason.startswith(f"stopped early at epoch {len(history.epochs)}; best epoch ")
    assert len(history.epochs) < 40 and trainer.stop_training


@pytest.mark.parametrize("patience, threshold_mode, rates", [
    # 9.85 is not 2 % below 10, and 9.6 not 2 % below 9.7: each is a bad epoch, and reduces.
    (0, "rel", [0.1, 0.1, 0.05, 0.05, 0.025]),
    # ... but each is more than 0.02 below the best so far.
    (0, "abs", [0.1, 0.1, 0.1, 0.1, 0.1]),
    # patience 1: one bad epoch in a row is tolerated.
    (1, "rel", [0.1, 0.1, 0.1, 0.1, 0.1]),
])
def test_plateau_counts_bad_epochs_as_torch_does(patience, threshold_mode, rates):
    values = [10.0, 9.85, 9.7, 9.6]
    schedule = ReduceLROnPlateau(factor=0.5, patience=patience, threshold=0.02, threshold_mode=threshold_mode)
    got = [schedule.initial_lr(0.1)]
    for epoch, value in enumerate(values):
        got.append(schedule.next_lr(epoch, got[-1], {"train/loss": value}))
    assert got == pytest.approx(rates)


def _config(**groups):
    cfg = {
        "model": {"hidden": [3], "activation": "tanh", "output_activation": "sigmoid"},
        "data": {"name": "xor", "batch_size": 4},
        "loss": {"name": "bce"},
        "optimizer": {"name": "sgd", "lr": 0.5},
        "initializer": {"name": "xavier_normal"},
        "trainer": {"epochs": 3, "seed": 0},
        "logger": {"name": "none"},
    }
    cfg.update(groups)
    return cfg


def test_a_configured_run_without_a_schedule_key_is_constant_and_callbacks_are_keyed():
    prepared = prepare(_config())
    assert prepared.config.schedule.name == "constant" and prepared.callbacks == []
    prepared = prepare(_config(schedule={"name": "exponential", "gamma": 0.5},
                               callbacks={"early_stopping": {"patience": 5}, "es_acc": {"name": "early_stopping", "monitor": "train/accuracy"}}))
    assert [type(c).__name__ for c in prepared.callbacks] == ["EarlyStopping", "EarlyStopping"]
    assert prepared.callbacks[0].patience == 5 and prepared.callbacks[1].monitor == "train/accuracy"
    result, history = run(prepared.config.resolved)
    assert [e["lr"] for e in result.to_json()["epochs"]] == [0.5, 0.25, 0.125]


@pytest.mark.parametrize("groups, message", [
    ({"schedule": {"name": "plateau", "monitor": "val/loss"}},
     "schedule.monitor='val/loss' needs a validation split, which this run's data has none of"),
    ({"callbacks": {"early_stopping": {"monitor": "val/accuracy"}}},
     "callbacks.early_stopping.monitor='val/accuracy' needs a validation split"),
    ({"loss": {"name": "mse"}, "callbacks": {"early_stopping": {"monitor": "train/accuracy"}}},
     "callbacks.early_stopping.monitor='train/accuracy' needs an accuracy, which this run's loss does not compute"),
    ({"callbacks": {"early_stopping": {"patience": "x"}}},
     "callbacks.early_stopping.patience='x' is invalid for callback=early_stopping; valid: an integer (default 0)"),
    ({"callbacks": {"early_stoping": {}}}, "callbacks.early_stoping=early_stoping: unknown callback 'early_stoping'"),
    ({"callbacks": ["early_stopping"]}, "callbacks=['early_stopping'] is not a selection of callbacks"),
    ({"schedule": {"name": "step", "step_size": 0}}, "schedule.step_size=0 is invalid for schedule=step; valid: a positive integer"),
])
def test_bad_schedule_and_callback_configs_are_one_line_before_anything_runs(groups, message):
    with pytest.raises(ConfigError) as info:
        prepare(_config(**groups))
    assert message in str(info.value) and "\n" not in str(info.value)


# -- the kit catches what breaks the contract ----------------------------------------------------

class Grows:
    """A schedule whose rate grows without bound: inf after a few hundred epochs."""

    def initial_lr(self, base_lr):
        return base_lr

    def next_lr(self, epoch, lr, metrics):
        return lr * 1e30


class Forgets:
    """Keeps its state across runs: a second fit starts where the first ended."""

    def __init__(self):
        self.epochs = 0

    def initial_lr(self, base_lr):
        return base_lr / (1 + self.epochs)

    def next_lr(self, epoch, lr, metrics):
        self.epochs += 1
        return lr


class WritesSteps:
    def on_iteration(self, step):
        step.params["W1"][0, 0] = 0.0


class Meddles:
    """Changes the optimizer's rate: the run it watches is no longer the run without it."""

    def on_train_begin(self, trainer):
        trainer.optimizer.lr = 0.01


class StopsAtOnce:
    def on_train_begin(self, trainer):
        self.trainer = trainer

    def on_epoch_end(self, summary):
        self.trainer.stop_training = True


class Patient:
    """Stops once the training loss has not fallen by 0.05 for two epochs, counting in its own
    fields: a run resumed with a fresh copy counts afresh."""

    def on_train_begin(self, trainer):
        self.trainer, self.best, self.wait = trainer, None, 0

    def on_epoch_end(self, summary):
        if self.best is None or summary.train_loss < self.best - 0.05:
            self.best, self.wait = summary.train_loss, 0
            return
        self.wait += 1
        if self.wait > 1:
            self.trainer.stop_training = True


class ExportsOnly(Patient):
    def state_dict(self):
        return {"wait": np.asarray(self.wait)}


class ForgetsItsBest(Patient):
    """Exports its count but not its best value."""

    def state_dict(self):
        return {"wait": np.asarray(self.wait)}

    def load_state_dict(self, state):
        self.wait = int(state["wait"])


class CopiesLr:
    """Reads a copy of its rate taken in __init__: a schedule cannot reach it."""

    def __init__(self, lr: float = 0.1):
        self.lr = lr
        self._lr = lr

    def step(self, params, grads):
        for name, g in grads.items():
            params[name] -= self._lr * g


@pytest.mark.parametrize("component, check, message", [
    (Grows, check_schedule, "a rate is a finite number >= 0"),
    (Forgets, check_schedule, "reset the schedule's state in initial_lr"),
    (WritesSteps, check_callback, "read-only"),
    (Meddles, check_callback, "a callback reads, it does not train"),
    (Patient, check_callback, r"keeps state across epochs; add state_dict\(\)/load_state_dict\(\)"),
    (ExportsOnly, check_callback, "has state_dict but no load_state_dict"),
    (ForgetsItsBest, check_callback, "the state is incomplete or not restored"),
    (CopiesLr, check_optimizer, "read self.lr at every step"),
])
def test_the_kit_catches_a_broken_schedule_callback_or_optimizer(component, check, message):
    with pytest.raises(AssertionError, match=message):
        check(component)


def test_kinds_are_detected_from_their_methods():
    assert detect_kind(Grows) == "schedule" and detect_kind(StopsAtOnce) == "callback" and detect_kind(EarlyStopping) == "callback"


def test_a_configured_run_refuses_a_schedule_for_an_optimizer_without_lr_before_it_starts():
    import types

    from backproplab.components.registry import Source

    plugin = types.ModuleType("nolr_plugin")
    plugin.register_optimizers = bp.hookimpl(lambda register: register("nolr", NoLr))
    registry = bp.load_plugins(extra=[(plugin, Source("nolr", "backproplab-nolr", "1.0"))]).registry
    assert prepare(_config(optimizer={"name": "nolr"}), registry).schedule is not None  # constant: fine
    with pytest.raises(ConfigError, match=r"^schedule=step: schedule StepLR sets the optimizer's learning rate, but optimizer NoLr"):
        prepare(_config(optimizer={"name": "nolr"}, schedule={"name": "step"}), registry)
