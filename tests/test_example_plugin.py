"""The example third-party package (examples/backproplab-example), installed as a user would:
listed by ``backproplab plugins``, its components usable from the CLI in a single run and in a
sweep, and its distribution and version recorded in the MLflow tags of every run.

Skipped when the package is not installed; CI installs it with
``pip install -e examples/backproplab-example``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

DIST = "backproplab-example"
EXAMPLE_DIR = Path(__file__).resolve().parents[1] / "examples" / "backproplab-example"

try:
    VERSION = metadata.version(DIST)
except metadata.PackageNotFoundError:
    pytest.skip(f"{DIST} is not installed; run: pip install -e examples/backproplab-example",
                allow_module_level=True)

PLUGIN_TAG = f"{DIST} {VERSION}"
pytestmark = pytest.mark.slow


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKPROPLAB_", "MLFLOW_"))}
    proc = subprocess.run([sys.executable, "-m", "backproplab", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"backproplab {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc


def runs(db: Path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiments = client.search_experiments()
    return [r for e in experiments for r in client.search_runs([e.experiment_id])]


def test_listed_by_backproplab_plugins(tmp_path):
    report = json.loads(cli(tmp_path, "plugins", "--json").stdout)
    (example,) = [d for d in report["plugins"] if d["distribution"] == DIST]
    assert example["version"] == VERSION
    assert example["entry_points"] == [{"name": "example", "value": "backproplab_example",
                                        "hooks": ["register_activations", "register_callbacks", "register_datasets",
                                                  "register_optimizers", "register_schedules"]}]
    assert example["components"] == {"activation": ["mish"], "loss": [], "initializer": [], "optimizer": ["lion"],
                                     "schedule": ["inverse_time"], "callback": ["stop_at_loss"], "dataset": ["spirals"]}
    assert not [f for f in report["failed"] if f["distribution"] == DIST]
    text = cli(tmp_path, "plugins").stdout
    assert f"{DIST} {VERSION}  entry points: example" in text


def test_single_run_uses_mish_and_lion_and_tags_the_plugin(tmp_path):
    db = tmp_path / "m.db"
    proc = cli(tmp_path, "data=xor", "model.hidden=[8]", "model.activation=mish", "optimizer=lion",
               "optimizer.lr=0.01", "optimizer.beta1=0.95", "trainer.epochs=30",
               f"logger.tracking_uri=sqlite:///{db}")
    assert "final loss" in proc.stdout
    (run,) = runs(db)
    assert run.info.status == "FINISHED"
    tags, params = run.data.tags, run.data.params
    assert tags["component.activation"] == "mish"
    assert tags["component.activation.plugin"] == PLUGIN_TAG
    assert tags["component.optimizer"] == "lion"
    assert tags["component.optimizer.plugin"] == PLUGIN_TAG
    assert tags["component.loss.plugin"].startswith("backproplab ")  # built-ins are tagged the same way
    # The plugin ships no YAML, yet its hyperparameters are config keys set from the command line.
    assert params["optimizer.lr"] == "0.01" and params["optimizer.beta1"] == "0.95"
    assert params["optimizer.beta2"] == "0.99"
    assert params["model.activation"] == "mish"


def test_sweep_over_lion_learning_rates(tmp_path):
    db = tmp_path / "m.db"
    cli(tmp_path, "-m", "data=xor", "model.activation=mish", "optimizer=lion", "optimizer.lr=0.001,0.01",
        "trainer.epochs=5", f"logger.tracking_uri=sqlite:///{db}")
    all_runs = runs(db)
    children = [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and len(all_runs) == 3
    assert sorted(r.data.params["optimizer.lr"] for r in children) == ["0.001", "0.01"]
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["component.optimizer"] == "lion"
        assert run.data.tags["component.optimizer.plugin"] == PLUGIN_TAG
        assert run.data.tags["component.activation.plugin"] == PLUGIN_TAG
        assert run.data.metrics["batch/loss"] > 0


def test_the_example_packages_own_tests_pass():
    """Its own suite, which runs the conformance kit on mish and lion, as its author's CI would."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=EXAMPLE_DIR, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "passed" in proc.stdout and "failed" not in proc.stdout


def test_plugins_filter_warns_of_an_unknown_name_and_is_named_when_it_hides_a_component(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKPROPLAB_", "MLFLOW_"))}
    run = [sys.executable, "-m", "backproplab", "model.activation=mish", "logger=none", "trainer.epochs=1"]
    typo = subprocess.run(run, cwd=tmp_path, env={**env, "BACKPROPLAB_PLUGINS": "backproplab_exampel"},
                          capture_output=True, text=True, timeout=300)
    assert typo.returncode == 2, typo.stderr
    warning, error = typo.stderr.strip().splitlines()
    assert warning == (f"warning: BACKPROPLAB_PLUGINS='backproplab_exampel' names 'backproplab_exampel', which is no "
                       f"installed plugin's distribution or entry point; installed plugin distributions: {DIST}")
    assert error.startswith(
        f"error: model.activation: unknown activation 'mish' ({DIST} {VERSION} (entry point 'example') registers it, "
        "but BACKPROPLAB_PLUGINS='backproplab_exampel' leaves that plugin out); available: "
    ), error
    assert not (tmp_path / "outputs").exists()
    # A distribution's name is compared as pip compares it: any case, '_' for '-'.
    spelled = subprocess.run(run, cwd=tmp_path, env={**env, "BACKPROPLAB_PLUGINS": "Backproplab_Example"},
                             capture_output=True, text=True, timeout=300)
    assert spelled.returncode == 0 and spelled.stderr == "", spelled.stderr


def test_the_guides_sample_output_is_the_commands(tmp_path):
    """docs/plugins.md's ``backproplab plugins`` sample, up to its hypothetical failed plugin."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
    sample = re.search(r"```\n\$ backproplab plugins\n(.*?)```", doc, flags=re.S).group(1)
    shown = sample.split("\nfailed to load:")[0].rstrip("\n")
    assert cli(tmp_path, "plugins").stdout.rstrip("\n") == shown

