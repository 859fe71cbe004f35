"""The wheel is what users install: build it, install it into a fresh venv, run the main job.

This catches what an editable install hides: a subpackage or a YAML file missing from the wheel.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_generic_names_are_not_importable():
    """DESIGN.md: nothing is importable under the generic names ``core`` or ``plugins``."""
    code = "import importlib.util as u; print(u.find_spec('core'), u.find_spec('plugins'))"
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "None"]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # a hang guard: a fresh venv installs MLflow and the rest from PyPI or pip's cache
def test_wheel_with_an_extra_installs_and_runs_the_worked_example(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = dist.glob("backproplab-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    # marks.csv may only be redistributed with its licence beside it.
    for name in ("marks.csv", "marks.LICENSE", "seed_example.json"):
        assert f"backproplab/datasets/{name}" in shipped, f"{name} is missing from the wheel"
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # As docs/cluster.md installs it on a machine without an index that has backproplab: the wheel
    # file with an extra, whose packages come from PyPI (or pip's cache).
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", f"{wheel}[postgres]"], check=True, capture_output=True, text=True)

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BACKPROPLAB_", "HYDRA_"))}
    run = subprocess.run(
        [str(env_dir / "bin" / "backproplab")], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    for prediction in ("0.520888", "0.647828", "0.757648", "0.836315", "0.880797", "0.907697", "0.925053"):
        assert prediction in run.stdout
    assert (work / "mlflow.db").exists(), "the default run logs to MLflow's default store in the working directory"

    # The shipped data set runs by name from the wheel alone, by itself and in its experiment.
    for args in (["data=marks"], ["experiment=marks"]):
        marks = subprocess.run(
            [str(env_dir / "bin" / "backproplab"), *args, "logger=none", "trainer.epochs=2"],
            cwd=work, env=env, capture_output=True, text=True, timeout=300,
        )
        assert marks.returncode == 0, marks.stderr
        assert "after 32 iterations" in marks.stdout

    # Every shipped experiment composes from the wheel's own config files.
    for experiment in ("seed_backprop", "lr_sweep"):
        cfg = subprocess.run(
            [str(env_dir / "bin" / "backproplab"), f"experiment={experiment}", "--cfg", "job"],
            cwd=work, env=env, capture_output=True, text=True, timeout=300,
        )
        assert cfg.returncode == 0, cfg.stderr
    sweep = subprocess.run(
        [str(env_dir / "bin" / "backproplab"), "-m", "optimizer.lr=0.1,0.5", "logger=none"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert sweep.returncode == 0, sweep.stderr
    # The extra's driver is there: a closed port is a refused connection, not a missing psycopg.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pg = subprocess.run(
        [str(env_dir / "bin" / "backproplab"), f"logger.tracking_uri=postgresql+psycopg://u@127.0.0.1:{port}/db", "trainer.epochs=1"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert pg.returncode == 2 and "is not usable after" in pg.stderr and "needs the PostgreSQL driver" not in pg.stderr, pg.stderr
    probe = subprocess.run(
        [str(py), "-c", "import importlib.util as u; print(u.find_spec('core'), u.find_spec('plugins'))"],
        capture_output=True, text=True, cwd="/",
    )
    assert probe.stdout.split() == ["None", "None"]


def test_every_python_and_config_folder_is_a_listed_package():
    """setuptools ships only listed packages: a new subpackage or config group must be added."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {folder: package for package, folder in config["package-dir"].items()}
    for folder, package in roots.items():
        for path in (REPO / folder).rglob("*"):
            if path.is_dir() and (any(path.glob("*.py")) or any(path.glob("*.yaml"))) and "__pycache__" not in path.parts:
                name = ".".join([package, *path.relative_to(REPO / folder).parts])
                assert name in listed, f"{path.relative_to(REPO)} is not shipped: add {name!r} to [tool.setuptools] packages"
