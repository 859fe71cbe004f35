"""The README is the user's manual: its runnable examples must run and its claims must hold."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
SCRIPTS = [block for block in PYTHON_BLOCKS if "import backproplab as bp" in block]


def test_readme_has_runnable_python_examples():
    assert len(SCRIPTS) >= 2


@pytest.mark.parametrize("script", SCRIPTS, ids=[f"block{i}" for i in range(len(SCRIPTS))])
def test_readme_python_example_runs(script, tmp_path):
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_worked_example_snippet_prints_the_articles_numbers(tmp_path):
    (script,) = [s for s in SCRIPTS if "legacy_randn" in s]
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    for value in ("0.520888", "0.647828", "0.757648", "0.836315", "0.880797", "0.907697", "0.925053"):
        assert value in out.stdout


def test_ci_runs_exactly_the_readme_test_command():
    (command,) = re.findall(r"^python -m pip install -e .*pytest$", README, flags=re.M)
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in ci


def test_every_builtin_component_is_named_in_the_readme():
    import backproplab

    for registration in backproplab.get_registry():
        if registration.source.distribution == "backproplab":
            assert f"`{registration.name}`" in README, f"{registration.kind} {registration.name!r} is not documented"


def test_every_metric_family_is_documented():
    from backproplab.numerics import trainer
    from backproplab.tracking.records import metric_names

    # The per-epoch names live beside EpochSummary, which schedules and callbacks read them from.
    text = "".join(Path(module.__file__).read_text(encoding="utf-8") for module in (metric_names, trainer))
    for family in ("batch/loss", "epoch", "grad_norm/", "weight_norm/", "grad/", "param/", "train/loss", "val/loss",
                   "train/accuracy", "val/accuracy", "train/lr"):
        assert family in text
        assert f"`{family}" in README, family


def test_every_data_set_and_experiment_is_documented():
    import backproplab
    from backproplab.hydra_app.config_store import experiment_names

    section = README.split("### Data sets", 1)[1].split("\n### ", 1)[0]
    first_cells = " ".join(line.split("|")[1] for line in section.splitlines() if line.startswith("| `"))
    for registration in backproplab.get_registry():
        if registration.kind != "dataset" or registration.source.distribution != "backproplab":
            continue
        name = registration.name
        assert f"`{name}`" in first_cells, f"data={name} is missing from the Data sets table"
    experiments = README.split("### Experiments", 1)[1].split("\n### ", 1)[0]
    for name in experiment_names():
        assert f"| `{name}` |" in experiments, f"experiment={name} is missing from the Experiments table"
