"""A broken experiment file costs only the command that chooses it, through the real command.

Every other command keeps working; the one that chooses it gets one line naming the file and
the line, exit 2, before anything is written. Shipped experiments (a package of YAML files) and
a user's own, in ``--config-dir``'s ``experiment/`` folder, are both covered."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from conftest import cli_env

pytestmark = pytest.mark.slow

BROKEN = "# @package _global_\ntrainer:\n  epochs: 2\ndata: {name: [moons\n"
# The CLI with its shipped experiments read from another package, one with a broken file in it.
WITH_EXPERIMENTS = """
import sys
from backproplab.hydra_app import config_store
config_store.EXPERIMENTS_PACKAGE = sys.argv.pop(1)
from backproplab.cli import main
main(sys.argv[1:])
"""


def run(cwd: Path, *args: str, package: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", WITH_EXPERIMENTS, package, *args] if package else [sys.executable, "-m", "backproplab", *args]
    return subprocess.run(command, cwd=cwd, env=cli_env(PYTHONPATH=str(cwd)), capture_output=True, text=True, timeout=300)


def assert_refused(proc: subprocess.CompletedProcess, path: Path, line: int) -> None:
    assert proc.returncode == 2, proc.stderr
    (message,) = proc.stderr.strip().splitlines()
    assert message.startswith(f"error: experiment=broken: {path}, line {line}, column ")
    assert "not valid YAML" in message and "<unicode string>" not in message


def test_a_broken_shipped_experiment_breaks_only_itself(tmp_path):
    package = tmp_path / "shipped_experiments"
    shutil.copytree(resources.files("backproplab.experiments"), package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "broken.yaml").write_text(BROKEN)
    plain = run(tmp_path, "logger=none", "trainer.epochs=1", package=package.name)
    assert plain.returncode == 0, plain.stderr
    other = run(tmp_path, "experiment=seed_backprop", "logger=none", "trainer.epochs=1", package=package.name)
    assert other.returncode == 0, other.stderr
    assert_refused(run(tmp_path, "experiment=broken", "logger=none", package=package.name), package / "broken.yaml", 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs", "shipped_experiments"]
    assert len(list((tmp_path / "outputs").glob("*/*"))) == 2, "only the two commands that ran made a folder"


def test_a_users_experiments_in_the_config_dir_are_found_and_a_broken_one_named(tmp_path):
    mine = tmp_path / "mine" / "experiment"
    mine.mkdir(parents=True)
    (mine / "short.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 2\n")
    (mine / "broken.yaml").write_text(BROKEN)
    good = run(tmp_path, "--config-dir", "mine", "experiment=short", "logger=none")
    assert good.returncode == 0, good.stderr
    assert "after 2 iterations" in good.stdout
    assert_refused(run(tmp_path, "--config-dir", "mine", "experiment=broken", "logger=none"), Path("mine/experiment/broken.yaml"), 5)
