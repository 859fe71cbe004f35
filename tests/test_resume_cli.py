"""Resuming through the real command: ``kill -9`` or SIGTERM at a chosen iteration, then
``backproplab runs resume RUN_ID`` or the same command in the same folder, and the result is
the uninterrupted run's, bit for bit (``params.npz``, every stored metric, no step twice).

The run stops itself with SIGSTOP as the chosen iteration begins (a wrapper around the CLI);
the test sees it stopped (``waitpid``) and sends the real signal to its process group, so the
kill point is exact without any wait for time. Metrics are flushed at every iteration, so some
steps after the last checkpoint are in the store when the run dies, and the resumed run must
skip them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

from conftest import cli_env

pytestmark = pytest.mark.slow

ITERATIONS = 20  # moons: 5 iterations per epoch, 4 epochs
OPTIMIZERS = {"adam": ["optimizer=adam"], "momentum": ["optimizer=sgd", "optimizer.lr=0.1", "optimizer.momentum=0.9"]}
COMMON = ["data=moons", "trainer.epochs=4", "trainer.checkpoint_every_s=0", "logger.buffer.flush_interval_s=0.000001"]
STOP_AT = """
import os, signal, sys
from backproplab.numerics.trainer import Trainer
at = int(sys.argv.pop(1))
train_step = Trainer.train_step
def stopping(self, *args, **kwargs):
    if self.iteration == at:
        os.kill(os.getpid(), signal.SIGSTOP)
    return train_step(self, *args, **kwargs)
Trainer.train_step = stopping
from backproplab.cli import main
main(sys.argv[1:])
"""


def command(folder: Path, optimizer: str) -> list[str]:
    return [*COMMON, *OPTIMIZERS[optimizer], f"logger.tracking_uri=sqlite:///{folder}/mlflow.db", f"hydra.run.dir={folder}/run"]


def run_cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backproplab", *args], cwd=folder, env=cli_env(), capture_output=True, text=True, timeout=300
    )


def stopped_at(folder: Path, iteration: int, args: list[str]) -> subprocess.Popen:
    """The command, stopped as ``iteration`` begins (its own process group)."""
    with open(folder / "stdout.txt", "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", STOP_AT, str(iteration), *args], cwd=folder, env=cli_env(), stdout=out, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"the run ended before iteration {iteration}: {proc.stderr.read()}"
    return proc


def the_run(folder: Path):
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    return client, run


def recorded(folder: Path) -> tuple[str, dict[str, list[tuple[int, float]]], dict[str, np.ndarray]]:
    """(status, every metric's (step, value) history, params.npz) of the folder's one run."""
    client, run = the_run(folder)
    history = {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)] for key in run.data.metrics}
    with tempfile.TemporaryDirectory() as tmp:
        with np.load(client.download_artifacts(run.info.run_id, "params.npz", tmp), allow_pickle=False) as npz:
            params = {k: npz[k] for k in npz.files}
    return run.info.status, history, params


_uninterrupted: dict[str, tuple] = {}


def uninterrupted(optimizer: str):
    if optimizer not in _uninterrupted:
        folder = Path(tempfile.mkdtemp(prefix="uninterrupted-"))
        done = run_cli(folder, *command(folder, optimizer))
        assert done.returncode == 0, done.stderr
        _uninterrupted[optimizer] = (folder, recorded(folder))
    return _uninterrupted[optimizer][1]


def assert_as_uninterrupted(folder: Path, optimizer: str) -> None:
    status, history, params = recorded(folder)
    _, expected_history, expected_params = uninterrupted(optimizer)
    assert status == "FINISHED"
    assert [s for s, _ in history["batch/loss"]] == list(range(ITERATIONS))
    for key, points in expected_history.items():
        steps = [s for s, _ in history[key]]
        assert len(steps) == len(set(steps)), f"{key}: a step stored twice"
        if not key.startswith(("grad/", "param/", "grad_norm/", "param_norm/", "batch/", "train/", "val/")):
            continue  # timing-free metrics only: final/* and the epoch counter are compared by key below
        assert history[key] == points, key  # steps and values, bit for bit
    assert set(history) == set(expected_history)
    assert params.keys() == expected_params.keys()
    for key, value in expected_params.items():
        assert np.array_equal(params[key], value) and params[key].dtype == value.dtype, key


# Each example costs two CLI processes: adam's kill points and momentum's, drawn anew each run.
@pytest.mark.parametrize("optimizer, examples", [("adam", 2), ("momentum", 1)])
def test_kill_9_at_any_iteration_then_runs_resume_is_bit_for_bit(optimizer, examples):
    checked_alive = []

    @settings(max_examples=examples, deadline=None, database=None)
    @given(at=st.integers(1, ITERATIONS - 1))
    def killed_at(at):
        folder = Path(tempfile.mkdtemp(prefix=f"kill9-{optimizer}-{at}-"))
        proc = stopped_at(folder, at, command(folder, optimizer))
        _, run = the_run(folder)
        run_id = run.info.run_id
        uri = f"sqlite:///{folder}/mlflow.db"
        if not checked_alive:  # once: a run whose process lives is refused
            refused = run_cli(folder, "runs", "resume", run_id, "--tracking-uri", uri)
            assert refused.returncode == 2
            assert refused.stderr.strip() == (
                f"error: run {run_id} cannot be resumed: it is RUNNING and its process {proc.pid} on {os.uname().nodename} is "
                f"still alive; stop it first (kill -TERM {proc.pid} writes a checkpoint)"
            )
            checked_alive.append(True)
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        assert the_run(folder)[1].info.status == "RUNNING"  # nothing could end it

        resumed = run_cli(folder, "runs", "resume", run_id, "--tracking-uri", uri)
        assert resumed.returncode == 0, resumed.stderr
        assert f"resumed run {run_id} to its end" in resumed.stdout
        assert_as_uninterrupted(folder, optimizer)
        _, run = the_run(folder)
        assert run.info.run_id == run_id and "failure_reason" not in run.data.tags
        assert "**Resumed** once from its checkpoint, at step " in run.data.tags["mlflow.note.content"]

    killed_at()


def test_sigterm_writes_a_checkpoint_there_and_the_same_command_continues_the_run(tmp_path):
    at = 7
    proc = stopped_at(tmp_path, at, command(tmp_path, "adam"))
    os.killpg(proc.pid, signal.SIGTERM)
    os.killpg(proc.pid, signal.SIGCONT)
    assert proc.wait(timeout=120) == 143
    assert proc.stderr.read().strip().splitlines()[-1] == "interrupted (SIGTERM)"
    _, run = the_run(tmp_path)
    assert run.info.status == "KILLED"
    # The run stops before the first iteration that begins after Python ran the handler: iteration
    # 7 here, or a later one when the kernel handed the signal to another of the process's threads
    # and that thread waited for a core. The run names the iteration its checkpoint holds.
    match = re.match(r"interrupted by SIGTERM at epoch (\d+), iteration (\d+)", run.data.tags["failure_reason"])
    assert match, run.data.tags["failure_reason"]
    stopped = int(match.group(2)) - 1
    assert at <= stopped < ITERATIONS and int(match.group(1)) == stopped // 5 + 1
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert (state["iteration"], state["reason"]) == (stopped, "SIGTERM")

    again = run_cli(tmp_path, *command(tmp_path, "adam"))  # a requeued job: same command, same folder
    assert again.returncode == 0, again.stderr
    assert_as_uninterrupted(tmp_path, "adam")
    _, after = the_run(tmp_path)
    assert after.info.run_id == run.info.run_id
    assert after.data.tags["backproplab.resumed_from"] == str(stopped)
    assert '"finished": true' in (tmp_path / "run" / "checkpoint" / "state.json").read_text()


def test_runs_resume_refuses_in_one_line(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    done = run_cli(tmp_path, "data=xor", "trainer.epochs=2", f"logger.tracking_uri={uri}", f"hydra.run.dir={tmp_path}/run")
    assert done.returncode == 0, done.stderr
    client, finished = the_run(tmp_path)
    experiment = finished.info.experiment_id
    bare = client.create_run(experiment).info.run_id  # no checkpoint, e.g. made by other code
    client.set_terminated(bare, "KILLED")
    failed = client.create_run(experiment).info.run_id
    client.set_tag(failed, "failure_reason", "NonFiniteLossError: the loss is nan at epoch 3, iteration 12")
    client.set_terminated(failed, "FAILED")
    by_signal = client.create_run(experiment).info.run_id  # accepted, then found without a checkpoint
    client.set_tag(by_signal, "failure_reason", "interrupted by SIGTERM at epoch 2, iteration 9")
    client.set_terminated(by_signal, "FAILED")
    cases = {
        by_signal: "it has no checkpoint (no checkpoint/state.json among its artifacts)",
        finished.info.run_id: "it is FINISHED; valid: a KILLED run, a run FAILED by a signal, or a RUNNING run whose process is gone",
        bare: "it has no checkpoint (no checkpoint/state.json among its artifacts)",
        failed: "it FAILED with an error (NonFiniteLossError: the loss is nan at epoch 3, iteration 12), not by a signal; "
        "resuming would meet it again",
    }
    for run_id, why in cases.items():
        refused = run_cli(tmp_path, "runs", "resume", run_id, "--tracking-uri", uri)
        assert (refused.returncode, refused.stderr.strip(), refused.stdout) == (2, f"error: run {run_id} cannot be resumed: {why}", "")
    unknown = run_cli(tmp_path, "runs", "resume", "0123456789abcdef", "--tracking-uri", uri)
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
    assert unknown.stderr.startswith("error: run '0123456789abcdef' is not in ")


EARLY = ["data=moons", "model.hidden=[6]", "optimizer.lr=3", "trainer.epochs=30", "trainer.checkpoint_every_s=0",
         "callbacks=[early_stopping]", "callbacks.early_stopping.patience=2", "callbacks.early_stopping.restore_best=true",
         "logger.buffer.flush_interval_s=0.000001"]


def test_an_early_stopped_run_killed_after_its_best_epoch_resumes_to_the_same_stop(tmp_path):
    """kill -9 after the best epoch, before the stop: the resumed run must know its best epoch,
    its patience count and the best parameters, or it stops elsewhere and saves others."""
    whole = tmp_path / "whole"
    whole.mkdir()
    done = run_cli(whole, *EARLY, f"logger.tracking_uri=sqlite:///{whole}/mlflow.db", f"hydra.run.dir={whole}/run")
    assert done.returncode == 0, done.stderr
    status, expected_history, expected_params = recorded(whole)
    stopped = the_run(whole)[1].data.tags["backproplab.stopped_early"]
    assert stopped.startswith("stopped early at epoch ") and "; parameters of epoch " in stopped
    iterations = len(expected_history["batch/loss"])
    assert iterations < 30 * 5  # it did stop early

    folder = tmp_path / "killed"
    folder.mkdir()
    at = iterations - 2  # in the epoch the stop comes at, after the best one
    proc = stopped_at(folder, at, [*EARLY, f"logger.tracking_uri=sqlite:///{folder}/mlflow.db", f"hydra.run.dir={folder}/run"])
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run_id = the_run(folder)[1].info.run_id
    resumed = run_cli(folder, "runs", "resume", run_id, "--tracking-uri", f"sqlite:///{folder}/mlflow.db")
    assert resumed.returncode == 0, resumed.stderr

    status, history, params = recorded(folder)
    assert status == "FINISHED" and the_run(folder)[1].data.tags["backproplab.stopped_early"] == stopped
    for key in ("batch/loss", "train/loss", "val/loss"):
        assert history[key] == expected_history[key], key
    for key, value in expected_params.items():
        assert np.array_equal(params[key], value), key
