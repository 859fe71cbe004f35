"""The package's layers keep their edges: import-linter's contracts (pyproject.toml,
[tool.importlinter]) over the real import graph, plus the built-in plugins, which live in their
own folder and so outside the graph import-linter builds from ``core/``."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What a component package may use of backproplab: the hook marker and the foundation; for a
# data-set package also the data-set kind's own module (what a factory returns, and the
# class-name encoding that a file reader words in its own terms) and the shipped data files.
PLUGIN_API = {"backproplab", "backproplab.errors", "backproplab.validation", "backproplab.components.datasets",
              "backproplab.datasets"}


def test_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is not installed; it comes with the [test] extra (import-linter)")
    proc = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "Contracts: 10 kept, 0 broken" in proc.stdout, proc.stdout[-2000:]


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "plugins").glob("*.py")), ids=lambda p: p.name)
def test_builtin_plugins_import_only_what_a_third_party_may(path):
    used = {m for m in _imported_modules(path) if m == "backproplab" or m.startswith("backproplab.")}
    assert used <= PLUGIN_API, f"{path.name} imports {sorted(used - PLUGIN_API)}; a plugin may use {sorted(PLUGIN_API)}"


@pytest.mark.parametrize(
    ("module", "upward", "contract"),
    [
        ("numerics/network.py", "from backproplab.tracking.lifecycle import settings",
         "Layers: cli > hydra_app > tracking > run > components > numerics"),
        ("tracking/transport/buffer.py", "from backproplab.tracking.records import metric_names",
         "Tracking's rooms: lifecycle > records > transport"),
        ("tracking/transport/reachability.py", "import mlflow", "The checks before a run starts import no mlflow"),
        ("hydra_app/hydra_private.py", "from backproplab.hydra_app import preflight",
         "The Hydra adapter imports no other backproplab module"),
    ],
    ids=["package-layers", "tracking-rooms", "checks-without-mlflow", "hydra-adapter"],
)
def test_contracts_are_not_vacuous(tmp_path, module, upward, contract):
    # The same contracts on a copy of the package with one forbidden import added must fail, so a
    # passing run above means the graph was really checked.
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "core", copy / "core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    source = copy / "core" / module
    source.write_text(source.read_text(encoding="utf-8") + f"\n{upward}  # noqa\n")
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    # grimp finds the package by import: point the import system at the copy.
    (copy / "backproplab").symlink_to(copy / "core")
    env = {"PYTHONPATH": str(copy), "PATH": str(Path(sys.executable).parent)}
    proc = subprocess.run([lint, "--no-cache"], cwd=copy, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0
    assert f"{contract} BROKEN" in proc.stdout, proc.stdout[-3000:]
