"""Schedules and callbacks as the user meets them: real CLI runs (subprocesses) into a real
sqlite MLflow store, and plugins of both kinds from throwaway distributions, a broken one among
them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from backproplab import datasets
from backproplab.run.job import prepare
from conftest import cli_env

pytestmark = pytest.mark.slow

EARLY = ("data=moons", "model.hidden=[6]", "optimizer.lr=3", "trainer.epochs=30", "callbacks=[early_stopping]",
         "callbacks.early_stopping.patience=2", "callbacks.early_stopping.restore_best=true")


def _tracked(tmp: Path, *overrides: str, env: dict[str, str] | None = None):
    uri = f"sqlite:///{tmp}/mlflow.db"
    proc = subprocess.run([sys.executable, "-m", "backproplab", f"logger.tracking_uri={uri}", *overrides],
                          cwd=tmp, env=env or cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    return proc, client, run


def _lr_by_epoch(client: MlflowClient, run) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train/lr"), key=lambda m: m.step)]


def test_a_step_schedule_run_logs_the_rate_of_every_epoch(tmp_path):
    proc, client, run = _tracked(tmp_path, "schedule=step", "schedule.step_size=2", "schedule.gamma=0.5", "trainer.epochs=5")
    assert _lr_by_epoch(client, run) == [0.5, 0.5, 0.25, 0.25, 0.125]
    assert run.data.params["schedule.name"] == "step" and run.data.params["schedule.step_size"] == "2"
    assert run.data.tags["component.schedule"] == "step"
    assert run.data.metrics["final/epochs"] == 5
    assert "schedule step (step_size 2, gamma 0.5)" in run.data.tags["mlflow.note.content"]
    assert "backproplab.stopped_early" not in run.data.tags
    # The worked example under the schedule (bce of target 1 is -log yhat): the losses before
    # and after the two updates at lr 0.5 are the article's; the one after the first update at
    # 0.25 is not.
    reference = json.loads(datasets.path("seed_example.json").read_text())["yhat_by_iteration"]
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "batch/loss"), key=lambda m: m.step)]
    assert losses[:3] == pytest.approx([-math.log(p) for p in reference[:3]], rel=1e-5)
    assert losses[3] != pytest.approx(-math.log(reference[3]), rel=1e-3)


def test_early_stopping_finishes_says_where_and_keeps_the_best_epochs_parameters(tmp_path):
    proc, client, run = _tracked(tmp_path, *EARLY)
    assert run.info.status == "FINISHED"
    stopped = run.data.tags["backproplab.stopped_early"]
    k, j = (int(word.strip(";")) for word in np.array(stopped.split())[[4, 7]])
    assert stopped.startswith(f"stopped early at epoch {k}; best epoch {j}") and 1 <= j < k < 30
    assert f"stopped early at epoch {k}; best epoch {j}" in run.data.tags["mlflow.note.content"]
    assert run.data.metrics["final/epochs"] == k
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == k
    assert f"stopped early at epoch {k}; best epoch {j}" in proc.stdout + proc.stderr

    # The parameters saved and the model logged are those a run of exactly j epochs ends with.
    cfg = bp_config(*EARLY, f"trainer.epochs={j}", "callbacks=null")
    prepared = prepare(cfg)
    prepared.trainer().fit(prepared.dataset.X_train, prepared.y_train)
    expected = prepared.network.params
    saved = Path(client.download_artifacts(run.info.run_id, "params.npz", str(tmp_path / "dl")))
    with np.load(saved, allow_pickle=False) as params:
        for name, value in expected.items():
            np.testing.assert_array_equal(params[name], value, err_msg=name)
    weights = Path(client.download_artifacts(run.info.run_id, "model/artifacts/weights.npz", str(tmp_path / "dl2")))
    with np.load(weights, allow_pickle=False) as logged:
        np.testing.assert_array_equal(logged["W1"], expected["W1"])
    # The comparison can tell: the last epoch's parameters are not the best epoch's.
    last = prepare(bp_config(*EARLY, f"trainer.epochs={k}", "callbacks=null"))
    last.trainer().fit(last.dataset.X_train, last.y_train)
    assert not np.array_equal(last.network.params["W1"], expected["W1"])


def bp_config(*overrides: str):
    """The config a CLI run with ``overrides`` composes (later overrides win), via Hydra's compose API."""
    from hydra import compose, initialize_config_module

    from backproplab.hydra_app.config_store import register_configs

    register_configs()
    chosen: dict[str, str] = {}
    for text in overrides:
        key, _, value = text.partition("=")
        chosen[key] = value
    if chosen.get("callbacks") == "null":
        chosen = {k: v for k, v in chosen.items() if not k.startswith("callbacks")}
    with initialize_config_module("backproplab.conf", version_base="1.3"):
        return compose("config", overrides=[f"{k}={v}" for k, v in chosen.items()] + ["logger=none"])


SCHEDULE_PLUGIN = """
    import backproplab

    class Halve:
        def __init__(self, every: int = 1, floor: float = 0.0):
            self.every, self.floor = every, floor

        def initial_lr(self, base_lr):
            return base_lr

        def next_lr(self, epoch, lr, metrics):
            return max(lr / 2, self.floor) if (epoch + 1) % self.every == 0 else lr

    @backproplab.hookimpl
    def register_schedules(register):
        register("halve", Halve)
"""
CALLBACK_PLUGIN = """
    import backproplab

    class StopAfter:
        def __init__(self, epochs: int = 2):
            self.epochs = epochs

        def on_train_begin(self, trainer):
            self.trainer = trainer

        def on_epoch_end(self, summary):
            if summary.epoch + 1 >= self.epochs:
                self.trainer.stop_training = True
                self.trainer.stop_reason = f"stop_after: {self.epochs} epochs"

    @backproplab.hookimpl
    def register_callbacks(register):
        register("stop_after", StopAfter)
"""
BROKEN_SCHEDULE = """
    import backproplab

    @backproplab.hookimpl
    def register_schedules(register):
        raise RuntimeError("schedule table missing")
"""
BROKEN_CALLBACK = """
    import backproplab_does_not_exist  # an import that fails
"""


def _dist(root: Path, dist: str, module: str, source: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[backproplab]\n{module} = {module}\n")


def test_third_party_schedule_and_callback_without_yaml_beside_broken_ones(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _dist(site, "bpl-halve", "bpl_halve", SCHEDULE_PLUGIN)
    _dist(site, "bpl-stop", "bpl_stop", CALLBACK_PLUGIN)
    _dist(site, "bpl-broken-schedule", "bpl_broken_schedule", BROKEN_SCHEDULE)
    _dist(site, "bpl-broken-callback", "bpl_broken_callback", BROKEN_CALLBACK)
    env = cli_env(PYTHONPATH=str(site))

    listing = subprocess.run([sys.executable, "-m", "backproplab", "plugins"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert "  schedule     halve" in listing.stdout and "  callback     stop_after" in listing.stdout
    assert "register_schedules raised RuntimeError: schedule table missing" in listing.stdout
    assert "ModuleNotFoundError" in listing.stdout and "bpl-broken-callback" in listing.stdout

    # Keyword parameters become overrides; the broken plugins are warned about and left out.
    proc, client, run = _tracked(tmp_path, "schedule=halve", "schedule.every=2", "schedule.floor=0.2",
                                 "callbacks=[stop_after]", "callbacks.stop_after.epochs=5", "trainer.epochs=7", env=env)
    assert _lr_by_epoch(client, run) == [0.5, 0.5, 0.25, 0.25, 0.2]
    assert run.info.status == "FINISHED" and run.data.metrics["final/epochs"] == 5
    assert run.data.tags["backproplab.stopped_early"] == "stop_after: 5 epochs"
    assert run.data.tags["component.schedule.plugin"] == "bpl-halve 1.0"
    assert run.data.tags["component.callbacks.stop_after.plugin"] == "bpl-stop 1.0"
    assert "bpl_broken_schedule" in proc.stderr and "bpl_broken_callback" in proc.stderr

    bad = subprocess.run([sys.executable, "-m", "backproplab", "logger=none", "callbacks=[stop_after]",
                          "callbacks.stop_after.epochs=many"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "error: callbacks.stop_after.epochs='many' is invalid for callback=stop_after; valid: an integer (default 2)")
    assert not (tmp_path / "outputs").exists() or bad.stdout == ""


def test_a_configured_run_from_python_tracks_its_schedule_and_early_stop(tmp_path):
    """The same through the Python API of a configured run (no Hydra, no subprocess): a plain
    mapping with a schedule and a callback, tracked by ``track_run`` into a sqlite store."""
    from backproplab.run.job import run
    from backproplab.tracking import track_run

    uri = f"sqlite:///{tmp_path}/api.db"
    cfg = {
        "model": {"hidden": [6], "activation": "tanh", "output_activation": "sigmoid"},
        "data": {"name": "moons", "n_samples": 200, "noise": 0.1, "batch_size": 32, "val_fraction": 0.2, "seed": 0},
        "loss": {"name": "bce"},
        "optimizer": {"name": "sgd", "lr": 3.0},
        "initializer": {"name": "xavier_normal"},
        "schedule": {"name": "exponential", "gamma": 0.9},
        "callbacks": {"early_stopping": {"patience": 1}},
        "trainer": {"epochs": 30, "seed": 3},
        "logger": {"name": "mlflow", "tracking_uri": uri, "log_model": False, "images": {"enabled": False}},
    }
    result, history = run(cfg, track=track_run)
    k = len(history.epochs)
    assert k < 30 and result.to_json()["stop_reason"] == history.stop_reason
    client = MlflowClient(uri)
    (stored,) = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    assert stored.info.status == "FINISHED" and stored.data.tags["backproplab.stopped_early"] == history.stop_reason
    assert stored.data.metrics["final/epochs"] == k
    assert _lr_by_epoch(client, stored) == pytest.approx([3.0 * 0.9**e for e in range(k)], rel=1e-12)


@pytest.mark.parametrize("overrides, line", [
    (["callbacks=[early_stoping]"],
     "error: callbacks='early_stoping' is not a registered callback; available: early_stopping"),
    (["callbacks.early_stopping.patience=3"],
     "error: callbacks.early_stopping.patience is not a key of the config: callbacks.early_stopping exists once it is "
     "chosen, e.g. 'callbacks=[early_stopping]' callbacks.early_stopping.patience=VALUE"),
    (["callbacks=null"], "error: callbacks=null is not a selection of callbacks; valid: callbacks=[] (or ~callbacks) for none"),
    (["schedule=step", "schedule.step_size=0"], "error: schedule.step_size=0 is invalid for schedule=step; valid: a positive integer"),
    (["schedule=plateau", "schedule.monitor=val/loss"],
     "error: schedule.monitor='val/loss' needs a validation split, which this run's data has none of"),
])
def test_bad_schedule_and_callback_overrides_are_one_line_and_leave_nothing(cli, tmp_path, overrides, line):
    proc = cli(*overrides)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(line), proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder, no mlflow.db
