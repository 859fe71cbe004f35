"""Print pip constraints that pin every direct dependency of backproplab to its declared floor
(``numpy>=1.26.0`` -> ``numpy==1.26.0``): the lowest versions .ci/run's lowest-versions leg
installs. A dependency without a ``>=`` floor is an error, so every one is tested at its low end.

Usage: python3 .ci/lowest_constraints.py [--test-tools]   (stdlib only: runs before any venv)
--test-tools adds the [test] extra's requirements that the leg's tests use (not the cluster
launchers, the browser driver, the build and lint tools: their tests are not repeated there).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
NOT_IN_THE_LEG = ("hydra-ray-launcher", "hydra-submitit-launcher", "playwright", "build", "import-linter")
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")


def floors(project: dict) -> list[str]:
    pins = []
    for requirement in project["dependencies"]:
        match = REQUIREMENT.match(requirement)
        if match is None:
            raise SystemExit(f"cannot read the requirement {requirement!r}")
        name, specifiers = match.group(1), match.group(3)
        floor = [s.strip()[2:].strip() for s in specifiers.split(",") if s.strip().startswith(">=")]
        if len(floor) != 1 or not re.fullmatch(r"\d+(\.\d+)*", floor[0]):
            raise SystemExit(f"{requirement!r} has no '>=' floor with a plain release number: the lowest leg cannot test it")
        pins.append(f"{name}=={floor[0]}")
    return pins


def test_tools(project: dict) -> list[str]:
    return [r for r in project["optional-dependencies"]["test"] if REQUIREMENT.match(r).group(1) not in NOT_IN_THE_LEG]


if __name__ == "__main__":
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    lines = floors(project) + (test_tools(project) if "--test-tools" in sys.argv[1:] else [])
    print("\n".join(lines))
