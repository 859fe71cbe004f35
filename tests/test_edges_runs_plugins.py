"""A misbehaving third-party plugin, installed as a real distribution, through the real command.

Each breach of a component's interface is refused before anything is written (no output folder,
no MLflow run), exit 2, with one line naming the component, its config key and its plugin
distribution: a loss without value(), an optimizer whose constructor raises, an activation whose
forward returns the wrong shape (which numpy would report as a bare matmul size mismatch), and
an activation whose backward returns NaN (which training would blame on the learning rate)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_env
from test_plugin_report import install_distribution

pytestmark = pytest.mark.slow

BAD_PLUGIN = """
import numpy as np
from backproplab import hookimpl

class NoValue:
    def grad(self, y_hat, y):
        return (y_hat - y) / len(y)

class Exploding:
    def __init__(self, lr=0.1):
        raise RuntimeError("this optimizer needs a GPU")

    def step(self, params, grads):
        pass

class Widening:
    def forward(self, z):
        return np.hstack([z, z[:, :1]])

    def backward(self, z, a, grad_a):
        return grad_a[:, : z.shape[1]]

class NaNGradient:
    def forward(self, z):
        return np.tanh(z)

    def backward(self, z, a, grad_a):
        return grad_a * np.sqrt(-1.0 - z * z)

class Flaky:
    def __init__(self):
        self.calls = 0

    def forward(self, z):
        self.calls += 1
        if self.calls == 4:
            raise ValueError("lost its state")
        return np.tanh(z)

    def backward(self, z, a, grad_a):
        return grad_a * (1 - a * a)

@hookimpl
def register_losses(register):
    register("novalue", NoValue)

@hookimpl
def register_optimizers(register):
    register("exploding", Exploding)

@hookimpl
def register_activations(register):
    register("widening", Widening)
    register("nangrad", NaNGradient)
    register("flaky", Flaky)
"""

NAMED = "from backproplab-badplug 0.4.1 (entry point 'badplug')"


def run_with_plugin(tmp_path: Path, *args: str) -> tuple[Path, subprocess.CompletedProcess]:
    site = tmp_path / "site"
    install_distribution(site, "backproplab-badplug", "0.4.1", "badplug", "bpl_badplug", BAD_PLUGIN)
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "backproplab", *args], cwd=work, env=cli_env(PYTHONPATH=str(site)), capture_output=True, text=True, timeout=300
    )
    return work, proc


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["loss=novalue"], f"loss=novalue (loss 'novalue' {NAMED}) has no value() method; a loss needs value(), grad()"),
        (["optimizer=exploding"], f"optimizer 'exploding' {NAMED}: its constructor raised RuntimeError: this optimizer needs a GPU"),
        (
            ["model.activation=widening"],
            f"model.activation=widening (activation 'widening' {NAMED}): forward(z) of layer 1 returned shape (1, 5), expected shape (1, 4)",
        ),
        (
            ["model.activation=nangrad"],
            f"model.activation=nangrad (activation 'nangrad' {NAMED}): backward(z, a, grad_a) of layer 1 returned NaN for finite inputs; "
            "the component is at fault, not the learning rate",
        ),
    ],
    ids=["loss-without-value", "optimizer-constructor-raises", "activation-wrong-shape", "activation-nan-gradient"],
)
def test_a_broken_plugin_component_is_named_before_anything_is_written(tmp_path, overrides, expected):
    work, proc = run_with_plugin(tmp_path, *overrides, f"logger.tracking_uri=sqlite:///{tmp_path}/work/mlflow.db")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {expected}"), line
    assert "Traceback" not in proc.stderr
    assert list(Path(work).iterdir()) == [], "no output folder, no store, no MLflow run"


def test_a_component_raising_during_training_is_named_in_the_failed_run(tmp_path):
    work, proc = run_with_plugin(tmp_path, "model.activation=flaky", "logger=none", "hydra.run.dir=run")
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line == (
        f"error: model.activation=flaky (activation 'flaky' {NAMED}) raised ValueError: lost its state at epoch 4, iteration 4; "
        "fix the plugin or choose another component"
    )
    record = json.loads((work / "run" / "result.json").read_text())
    assert record["status"] == "failed" and record["error"] == line.removeprefix("error: ") and record["iterations"] == 3
