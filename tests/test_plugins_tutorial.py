"""docs/plugins.md's five-minute tutorial, followed literally: its files are written from the
docs' own code blocks into an empty folder, and its test command must print exactly the
"N passed" the docs promise. The count is one test per kit check, so a check added to (or
removed from) the kit without updating the tutorial makes this fail.

``pip install -e`` is replaced by putting the package's ``src`` on PYTHONPATH (the conformance
tests import the package but need no entry point); the tutorial's pyproject.toml is still
checked for the entry point and the source layout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

DOC = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
TUTORIAL = DOC[DOC.index("## A five-minute tutorial"):DOC.index("## Hook reference")]
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", TUTORIAL, flags=re.S)
PACKAGE = "backproplab-example"


def tree_files() -> list[str]:
    """The files listed in step 1's folder tree."""
    (tree,) = [body for lang, body in BLOCKS if not lang and body.startswith(f"{PACKAGE}/")]
    return sorted(line.strip() for line in tree.splitlines()[1:] if line.strip())


def write_package(root: Path) -> dict[str, str]:
    """Every file of the tutorial, from its code blocks: the TOML block is pyproject.toml, and each
    Python block names its path in its first line."""
    files: dict[str, str] = {}
    for lang, body in BLOCKS:
        if lang == "toml":
            files["pyproject.toml"] = body
        elif lang == "python":
            match = re.fullmatch(r"# (\S+\.py)", body.splitlines()[0])
            if match:
                files[match.group(1)] = body
    for name, body in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    return files


def promised_count() -> int:
    (commands,) = [body for lang, body in BLOCKS if lang == "bash" and f"pytest {PACKAGE}/tests" in body]
    (count,) = re.findall(rf"^pytest {PACKAGE}/tests\s+# (\d+) passed\b", commands, flags=re.M)
    return int(count)


def test_every_file_of_the_tree_has_its_code_block(tmp_path):
    assert sorted(write_package(tmp_path)) == tree_files()


def test_the_tutorials_pyproject_declares_the_entry_point(tmp_path):
    write_package(tmp_path)
    project = tomllib.loads((tmp_path / PACKAGE / "pyproject.toml").read_text())
    assert project["project"]["name"] == PACKAGE
    assert project["project"]["entry-points"]["backproplab"] == {"example": "backproplab_example"}
    assert project["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"]


@pytest.mark.slow
def test_the_tutorials_test_command_prints_what_the_docs_promise(tmp_path):
    write_package(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKPROPLAB_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path / PACKAGE / "src"), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "pytest", f"{PACKAGE}/tests", "-p", "no:cacheprovider"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    summary = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 0, proc.stdout[-3000:]
    # The tutorial's own package is the one imported, not an installed copy of the real example.
    where = subprocess.run([sys.executable, "-c", "import backproplab_example as m; print(m.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(tmp_path), where.stdout + where.stderr
    assert re.fullmatch(rf"=+ {promised_count()} passed in [\d.]+s( \(\d+:\d+:\d+\))? =+", summary), summary


def test_the_install_step_brings_what_the_test_step_runs(tmp_path):
    """Step 6 installs the package with its [test] extra, and that extra provides pytest, the
    command step 6 runs next (a user following the docs in a fresh venv has no pytest otherwise)."""
    files = write_package(tmp_path)
    extras = tomllib.loads(files["pyproject.toml"])["project"]["optional-dependencies"]
    assert any(req.split(">")[0].split("=")[0].strip() == "pytest" for req in extras["test"])
    (shell,) = [body for lang, body in BLOCKS if lang == "bash" and "pytest " in body]
    install = next(line for line in shell.splitlines() if line.startswith("pip install"))
    assert '"./backproplab-example[test]"' in install.split("#")[0]
    assert shell.index("pip install") < shell.index("pytest ")


def test_the_guides_hyperparameter_plugin_passes_the_kit_and_registers_its_key():
    """docs/plugins.md's Swish: its code as shown, checked by the kit at its default and at the
    beta its command line sets, and registered with ``beta`` as its one hyperparameter."""
    from types import SimpleNamespace

    from backproplab.components.loading import load_plugins
    from backproplab.components.registry import Source
    from backproplab.testing import check_activation

    section = DOC[DOC.index("## A hyperparameter on the command line"):DOC.index("## Component interfaces")]
    (code,) = [body for lang, body in re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S) if lang == "python"]
    namespace: dict = {}
    exec(compile(code, "docs/plugins.md", "exec"), namespace)  # noqa: S102 - the docs' own example
    check_activation(namespace["Swish"])
    check_activation(namespace["Swish"](beta=0.5))
    plugin = SimpleNamespace(register_activations=namespace["register_activations"])
    registry = load_plugins([(plugin, Source("swish", "swish-plugin", "0.1"))], entry_points=False).registry
    assert registry.get("activation", "swish").hyperparameters() == {"beta": 1.0}
    assert "model.activation=swish model.activation.beta=0.5" in section

