"""Checkpoints and exact resumption, in process: every built-in optimizer, shuffling on, a stop
at any iteration (hypothesis picks it), then the run continued from its checkpoint ends with
the uninterrupted run's parameters and losses, bit for bit. The optimizer state interface and
its conformance check. (The real command, kill -9 and MLflow: test_resume_cli.py.)"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backproplab.errors import ConfigError
from backproplab.numerics.trainer import Trainer
from backproplab.run import checkpoint as files
from backproplab.run import job
from backproplab.run.stopping import Terminated
from backproplab.testing import check_optimizer

EPOCHS, PER_EPOCH = 3, 5  # moons: 160 training examples in batches of 32
OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
    "rmsprop": {"name": "rmsprop"},
    "adagrad": {"name": "adagrad"},
    "adam": {"name": "adam", "weight_decay": 0.01},
    "adamw": {"name": "adamw"},
}


def config(optimizer: dict, **trainer) -> dict:
    return {
        "model": {"hidden": [5], "activation": "tanh", "output_activation": "sigmoid", "output_width": None, "dtype": "float64"},
        "data": {"name": "moons", "n_samples": 200, "noise": 0.1, "batch_size": 32, "shuffle": True, "val_fraction": 0.2, "standardize": True, "seed": 0},
        "loss": {"name": "bce"},
        "optimizer": dict(optimizer),
        "initializer": {"name": "xavier_uniform"},
        "trainer": {"epochs": EPOCHS, "seed": 7, "checkpoint_every_s": 0, **trainer},
        "logger": {"name": "none"},
    }


_uninterrupted: dict[str, tuple] = {}


def uninterrupted(name: str):
    if name not in _uninterrupted:  # without a checkpoint: writing them must not change a bit
        cfg = config(OPTIMIZERS[name])
        prepared = job.prepare(cfg)
        result, _ = job.run(cfg, prepared=prepared)
        _uninterrupted[name] = (result, {k: v.copy() for k, v in prepared.network.params.items()})
    return _uninterrupted[name]


def stop_at(monkeypatch, iteration: int, signum: int = signal.SIGTERM) -> None:
    """A real signal to this process as iteration ``iteration`` begins."""
    train_step = Trainer.train_step

    def stepping(self, *args, **kwargs):
        if self.iteration == iteration:
            os.kill(os.getpid(), signum)
        return train_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_step", stepping)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@settings(max_examples=3, deadline=None)
@given(at=st.integers(0, EPOCHS * PER_EPOCH - 1))
def test_a_run_stopped_at_any_iteration_resumes_bit_for_bit(name, at):
    expected, expected_params = uninterrupted(name)
    with pytest.MonkeyPatch.context() as monkeypatch, tempfile.TemporaryDirectory() as tmp:
        stop_at(monkeypatch, at)
        with pytest.raises(Terminated):
            job.run(config(OPTIMIZERS[name]), output_dir=tmp)
        monkeypatch.undo()
        saved = files.read_record(Path(tmp) / files.DIRECTORY)
        assert (saved["iteration"], saved["reason"], saved["finished"]) == (at, "SIGTERM", False)
        # the same command in the same folder continues the run (a requeued job)
        result, _ = job.run(config(OPTIMIZERS[name]), output_dir=tmp)
        final = files.read(Path(tmp) / files.DIRECTORY)
    assert final.finished and final.resumed_from == [at]
    assert result.losses == expected.losses  # float lists: equal means bit for bit
    assert result.epochs == expected.epochs
    for key, value in expected_params.items():
        assert np.array_equal(final.params[key], value) and final.params[key].dtype == value.dtype


def test_a_checkpoint_is_written_at_the_start_and_every_epoch_after_its_interval(tmp_path):
    writes = []
    original = files.write

    def recording(directory, checkpoint, **options):
        writes.append((checkpoint.reason, checkpoint.iteration, checkpoint.finished))
        original(directory, checkpoint, **options)

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(files, "write", recording)
        job.run(config(OPTIMIZERS["adam"]), output_dir=tmp_path)
        assert writes == [("start", 0, False), ("interval", 5, False), ("interval", 10, False), ("end", 15, False), ("finished", 15, True)]
        writes.clear()
        job.run(config(OPTIMIZERS["adam"], checkpoint_every_s=3600), output_dir=tmp_path / "hourly")
        assert writes == [("start", 0, False), ("end", 15, False), ("finished", 15, True)]
    record = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert {"format", "run_id", "epoch", "iteration", "finished", "rng_state"} <= set(record)
    assert record["run_id"] is None and record["finished"] is True
    with np.load(tmp_path / "checkpoint" / "state.npz", allow_pickle=False) as arrays:
        assert {"param/W1", "optimizer/m/W1", "optimizer/t/W1", "losses"} <= set(arrays.files)


def test_an_npz_newer_than_its_json_is_read_as_one_checkpoint(tmp_path):
    # killed between the two renames: the npz's own record is the one that matches its arrays
    job.run(config(OPTIMIZERS["adam"]), output_dir=tmp_path)
    directory = tmp_path / files.DIRECTORY
    stale = json.loads((directory / "state.json").read_text())
    stale.update(iteration=5, epoch=1, finished=False)
    (directory / "state.json").write_text(json.dumps(stale))
    assert files.read(directory).iteration == 15


def test_a_checkpoint_of_another_config_in_the_folder_is_refused(tmp_path):
    with pytest.MonkeyPatch.context() as monkeypatch:
        stop_at(monkeypatch, 3)
        with pytest.raises(Terminated):
            job.run(config(OPTIMIZERS["adam"]), output_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"holds the checkpoint of an unfinished run whose optimizer.lr differs"):
        job.run(config({"name": "adam", "lr": 0.5}), output_dir=tmp_path)


def test_checkpoint_every_s_is_checked():
    with pytest.raises(ConfigError, match=r"trainer.checkpoint_every_s"):
        job.prepare(config(OPTIMIZERS["sgd"], checkpoint_every_s=-1))


# -- the optimizer state interface and its conformance check -----------------------------------
class Momentum:
    """Keeps a velocity but cannot export it."""

    def __init__(self, lr: float = 0.1):
        self.lr = lr
        self.v: dict = {}

    def step(self, params, grads):
        for name, g in grads.items():
            v = self.v[name] = self.v.get(name, 0) * 0.9 + g
            params[name] -= self.lr * v


class ForgetsStepCount(Momentum):
    def __init__(self, lr: float = 0.1):
        super().__init__(lr)
        self.t: dict = {}

    def step(self, params, grads):
        for name, g in grads.items():
            self.t[name] = self.t.get(name, 0) + 1
            params[name] -= self.lr * g / self.t[name]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class Exported(Momentum):
    def state_dict(self):
        return {f"v/{k}": v.copy() for k, v in self.v.items()}

    def load_state_dict(self, state):
        self.v = {k.removeprefix("v/"): np.array(v) for k, v in state.items()}


def test_the_kit_refuses_an_optimizer_whose_state_cannot_be_checkpointed():
    with pytest.raises(AssertionError, match="keeps state between steps .* but has no state_dict"):
        check_optimizer(Momentum)
    with pytest.raises(AssertionError, match="steps differently from the optimizer that exported the state"):
        check_optimizer(ForgetsStepCount)
    check_optimizer(Exported)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_built_in_optimizer_passes_the_state_check(name):
    from backproplab.components.loading import get_registry

    spec = dict(OPTIMIZERS[name])
    check_optimizer(get_registry().resolve("optimizer", spec))


def test_a_run_that_failed_with_an_error_is_not_continued_but_started_afresh(tmp_path):
    from backproplab.errors import NonFiniteLossError

    diverging = config({"name": "sgd", "lr": 1000.0}, epochs=20)
    diverging["model"].update(activation="identity", output_activation="identity")
    diverging["loss"] = {"name": "mse"}
    with pytest.raises(NonFiniteLossError):
        job.run(diverging, output_dir=tmp_path)
    record = files.read_record(tmp_path / files.DIRECTORY)
    assert record["failed"].startswith("NonFiniteLossError") and not record["finished"]
    assert job.unfinished_checkpoint(tmp_path, job.prepare(diverging).config.resolved) is None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2], ids=["SIGINT", "SIGUSR1", "SIGUSR2"])
def test_every_stop_signal_checkpoints_at_the_next_iteration_and_resumes(signum, tmp_path):
    expected, expected_params = uninterrupted("rmsprop")
    with pytest.MonkeyPatch.context() as monkeypatch:
        stop_at(monkeypatch, 6, signum)
        with pytest.raises(KeyboardInterrupt) as stopped:
            job.run(config(OPTIMIZERS["rmsprop"]), output_dir=tmp_path)
    assert getattr(stopped.value, "signum", signal.SIGINT) == signum
    from backproplab.run.checkpointing import Checkpointer

    # the handler the signal had before training is back
    assert not isinstance(getattr(signal.getsignal(signum), "__self__", None), Checkpointer)
    record = files.read_record(tmp_path / files.DIRECTORY)
    assert (record["iteration"], record["reason"]) == (6, signal.Signals(signum).name)
    result, _ = job.run(config(OPTIMIZERS["rmsprop"]), output_dir=tmp_path)
    assert result.losses == expected.losses
    final = files.read(tmp_path / files.DIRECTORY).params
    assert all(np.array_equal(final[k], v) for k, v in expected_params.items())


def test_runs_resume_judges_a_run_as_runs_reap_does():
    from types import SimpleNamespace

    from backproplab.tracking.lifecycle.resume import judge

    def run(status, **tags):
        return SimpleNamespace(info=SimpleNamespace(run_id="r1", status=status), data=SimpleNamespace(tags=tags))

    here = os.uname().nodename
    judge(run("KILLED"), lambda pid, start: "gone")
    judge(run("FAILED", failure_reason="interrupted by SIGUSR2 at epoch 1, iteration 3"), lambda pid, start: "gone")
    judge(run("RUNNING", **{"backproplab.host": here, "backproplab.pid": "42"}), lambda pid, start: "gone")
    refusals = [
        (run("RUNNING", **{"backproplab.host": "elsewhere", "backproplab.pid": "42"}), "it is RUNNING on elsewhere, another host"),
        (run("RUNNING", **{"backproplab.host": here, "backproplab.pid": "42"}), "its process 42 on"),
        (run("RUNNING"), "without backproplab.pid/backproplab.host tags"),
        (run("SCHEDULED"), "it is SCHEDULED"),
    ]
    for stopped, why in refusals:
        with pytest.raises(ConfigError, match=why):
            judge(stopped, lambda pid, start: "alive")


SCHEDULES = {
    "step": {"name": "step", "step_size": 1, "gamma": 0.5},
    # threshold 0.5: no epoch counts as an improvement, so the rate falls after every epoch and
    # the plateau's counters matter for the rate a continued run resumes at.
    "plateau": {"name": "plateau", "factor": 0.5, "patience": 0, "threshold": 0.5},
}


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@settings(max_examples=3, deadline=None)
@given(at=st.integers(0, EPOCHS * PER_EPOCH - 1))
def test_a_scheduled_run_resumes_at_the_rate_and_state_of_the_uninterrupted_one(schedule, at):
    cfg = {**config(OPTIMIZERS["adam"]), "schedule": SCHEDULES[schedule]}
    prepared = job.prepare(cfg)
    expected, _ = job.run(cfg, prepared=prepared)
    expected_params = {k: v.copy() for k, v in prepared.network.params.items()}
    assert len({e["lr"] for e in expected.epochs}) > 1  # the schedule changes the rate during the run
    with pytest.MonkeyPatch.context() as monkeypatch, tempfile.TemporaryDirectory() as tmp:
        stop_at(monkeypatch, at)
        with pytest.raises(Terminated):
            job.run(cfg, output_dir=tmp)
        monkeypatch.undo()
        result, _ = job.run(cfg, output_dir=tmp)
        final = files.read(Path(tmp) / files.DIRECTORY)
    assert final.finished and final.resumed_from == [at]
    assert result.losses == expected.losses and result.epochs == expected.epochs
    for key, value in expected_params.items():
        assert np.array_equal(final.params[key], value)


# Stops after epoch 5 of 12, best epoch 2: a kill at any of its 25 iterations falls before the
# best epoch, between it and the stop, or in the epoch the stop comes at.
EARLY_STOPPING = {"early_stopping": {"patience": 3, "min_delta": 0.01, "restore_best": True}}


def early_stopping_config() -> dict:
    cfg = {**config(OPTIMIZERS["sgd"]), "callbacks": EARLY_STOPPING}
    cfg["trainer"] = {**cfg["trainer"], "epochs": 12}
    return cfg


_early: list = []


def early_stopped():
    if not _early:
        prepared = job.prepare(early_stopping_config())
        result, history = job.run(early_stopping_config(), prepared=prepared)
        _early.append((result, history.stop_reason, {k: v.copy() for k, v in prepared.network.params.items()}))
    return _early[0]


@settings(max_examples=6, deadline=None)
@given(at=st.integers(0, 5 * PER_EPOCH - 1))
def test_an_early_stopped_run_resumes_to_the_same_stop_and_best_parameters(at):
    expected, reason, expected_params = early_stopped()
    assert len(expected.epochs) == 5 and reason == "stopped early at epoch 5; best epoch 2; parameters of epoch 2 restored"
    with pytest.MonkeyPatch.context() as monkeypatch, tempfile.TemporaryDirectory() as tmp:
        stop_at(monkeypatch, at)
        with pytest.raises(Terminated):
            job.run(early_stopping_config(), output_dir=tmp)
        monkeypatch.undo()
        saved = files.read(Path(tmp) / files.DIRECTORY)
        (state,) = saved.callback_state.values()
        assert int(state["wait"]) >= 0 and ("best_params/W1" in state) == (at >= PER_EPOCH)
        result, history = job.run(early_stopping_config(), output_dir=tmp)
        final = files.read(Path(tmp) / files.DIRECTORY)
    assert final.finished and final.resumed_from == [at] and history.stop_reason == reason
    assert result.losses == expected.losses and result.epochs == expected.epochs
    for key, value in expected_params.items():
        assert np.array_equal(final.params[key], value)


def test_a_run_killed_after_its_early_stop_was_saved_trains_no_further(tmp_path):
    """The end's checkpoint is written before the run is marked finished: a kill between the two
    leaves an unfinished checkpoint of a run that had stopped early; continuing it stops there."""
    expected, reason, expected_params = early_stopped()
    job.run(early_stopping_config(), output_dir=tmp_path)
    saved = files.read(tmp_path / files.DIRECTORY)
    saved.finished = False
    files.write(tmp_path / files.DIRECTORY, saved, record_only=True)
    result, history = job.run(early_stopping_config(), output_dir=tmp_path)
    final = files.read(tmp_path / files.DIRECTORY)
    assert final.finished and history.stop_reason == reason
    assert result.losses == expected.losses and result.epochs == expected.epochs
    for key, value in expected_params.items():
        assert np.array_equal(final.params[key], value)
