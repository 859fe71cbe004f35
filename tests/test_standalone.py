"""A clone stands alone: nothing the suite or the command reads lives outside the repository
(the reference data used to be read from a folder beside the checkout, which users never have)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, cli_env

pytestmark = pytest.mark.slow

# The suite has about 1,100 tests; far fewer collected means whole files failed to import.
MIN_COLLECTED = 800
OUTSIDE = re.compile(r"\.\./shared\b|parents\[2\] / \"shared\"")


def copy_repository(dest: Path) -> Path:
    """The working tree's files that git knows (tracked, or new and not ignored): what a clone
    of this commit holds, without .venv, caches or anything beside the repository."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout
    for name in filter(None, listing.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not part of it
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def test_a_copy_of_the_repository_collects_its_suite_without_anything_beside_it(tmp_path):
    clone = copy_repository(tmp_path / "clone")
    assert not (clone.parent / "shared").exists() and not (clone / "shared").exists()
    assert (clone / "core" / "datasets" / "marks.csv").is_file()
    assert (clone / "core" / "datasets" / "marks.LICENSE").is_file()
    for path in clone.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".md", ".yaml", ".toml", ".cfg", ".txt"):
            text = path.read_text(encoding="utf-8")
            assert not OUTSIDE.search(text), f"{path.relative_to(clone)} refers to a folder beside the repository"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=clone, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = re.search(r"^(\d+) tests? collected", proc.stdout, re.MULTILINE)
    assert found, proc.stdout[-2000:]
    assert int(found.group(1)) >= MIN_COLLECTED
    # The copy's own test files were collected, not the original's.
    assert "tests/test_data.py::" in proc.stdout and str(REPO_ROOT) not in proc.stdout


@pytest.mark.parametrize("args", [["data=marks"], ["experiment=marks"]], ids=["data=marks", "experiment=marks"])
def test_marks_runs_by_name_from_any_directory(tmp_path, args):
    assert not (tmp_path / "shared").exists() and not (tmp_path.parent / "shared").exists()
    script = Path(sys.executable).with_name("backproplab")
    proc = subprocess.run(
        [str(script), *args, "logger=none", "trainer.epochs=2"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (result,) = (tmp_path / "outputs").glob("**/result.json")
    record = json.loads(result.read_text())
    # 395 rows, 20% held out -> 316 training rows in batches of 20 -> 16 iterations per epoch.
    assert record["status"] == "ok" and record["iterations"] == 32
    assert record["epochs"][-1]["val_loss"] is not None
