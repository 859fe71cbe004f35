"""Fixtures shared across the suite. Only generic ones live here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Every `mlflow server` and `mlflow ui` a test starts inherits this. MLflow 3.17 starts, beside
# each server, a job runner with about eight Huey worker processes for its GenAI jobs (scorers,
# evaluations), which backproplab never submits; on a 2-core machine they only take CPU from the
# tests. A user's own server keeps MLflow's default.
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")


@pytest.fixture(scope="session")
def shipped_data() -> Path:
    """The folder of the data files shipped in the package (``backproplab.datasets``):
    marks.csv and seed_example.json, as an installed backproplab finds them."""
    from backproplab import datasets

    return datasets.path("marks.csv").parent


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: the user's, minus switches that change its output,
    and minus MLFLOW_TRACKING_URI, which would send a run that names no store away from the test's
    own folder (a test that wants it passes it in ``extra``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "BACKPROPLAB_TRACEBACK", "MLFLOW_TRACKING_URI")}
    env.update(extra)
    return env


# Python source for ``python -c``: its first argument names a package that the process then cannot
# import, as if it were not installed (the [test] extra installs every Hydra plugin); the rest
# of the source runs with the remaining arguments.
HIDE_PACKAGE = """
import sys
from importlib.abc import MetaPathFinder

class Hide(MetaPathFinder):
    def __init__(self, prefix):
        self.prefix = prefix

    def find_spec(self, name, path=None, target=None):
        if name.startswith(self.prefix):
            raise ModuleNotFoundError(name)
        return None

sys.meta_path.insert(0, Hide(sys.argv.pop(1)))
"""
# ... then the CLI with the remaining arguments.
HIDE_PACKAGE_THEN_CLI = HIDE_PACKAGE + "from backproplab.cli import main\nmain(sys.argv[1:])\n"


@pytest.fixture(name="cli_env")
def cli_env_fixture() -> Callable[..., dict[str, str]]:
    return cli_env


CliRunner = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    """Run the real command (``python -m backproplab ARGS``) in ``tmp_path``, so outputs/,
    multirun/ and mlflow.db never land in the repository. Returns the CompletedProcess."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120):
        return subprocess.run(
            [sys.executable, "-m", "backproplab", *args],
            cwd=cwd or tmp_path,
            env=env or cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


# -- a real PostgreSQL (tests/servers.py) --------------------------------------------------------
@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the whole session, on 127.0.0.1; modules create their own databases."""
    from servers import Postgres

    with Postgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_uri(postgres) -> str:
    """A ``postgresql+psycopg://`` URI of an empty database, shared by the session."""
    return postgres.create_database("backproplab")
