"""Which MLflow a sqlite store belongs to, without importing mlflow.

MLflow stamps its store with an Alembic revision (table ``alembic_version``). Opening a store of
an older MLflow migrates it on the spot and for good: the older MLflow cannot open it afterwards.
So a store whose revision is not the installed MLflow's head is refused with the command that
upgrades it, unless the user asked for the upgrade (``logger.upgrade_store=true``).

The installed MLflow's revisions are read from its migration scripts
(``mlflow/store/db_migrations/versions/*.py``, each declaring ``revision`` and
``down_revision``), located with ``importlib.util.find_spec`` and read as text (milliseconds for all): loading
them through Alembic's ``ScriptDirectory`` would import mlflow, about a second that the check
before Hydra creates ``outputs/`` should not cost. tests/test_tracking_stores.py checks that this
finds the same head as Alembic's ``ScriptDirectory`` over the same folder.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
import re
from pathlib import Path
from typing import Any

from backproplab.errors import ConfigError

KEY = "logger.tracking_uri"
NO_TABLES = object()  # the revision of an empty database: MLflow creates its tables in it


@functools.lru_cache(maxsize=1)
def migrations() -> tuple[str, frozenset[str]]:
    """(head revision, every known revision) of the installed MLflow's tracking schema."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("MLflow is not installed; install backproplab's dependencies or run with logger=none")
    folder = Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations" / "versions"
    down: dict[str, tuple[str, ...]] = {}
    for script in folder.glob("*.py"):
        declared = _declarations(script)
        revision = declared.get("revision")
        if isinstance(revision, str):
            parent = declared.get("down_revision")
            down[revision] = tuple(parent) if isinstance(parent, (tuple, list)) else (parent,) if parent else ()
    parents = {p for ps in down.values() for p in ps}
    heads = sorted(set(down) - parents)
    if len(heads) != 1:
        raise RuntimeError(f"expected one head revision in {folder}, found {heads or 'none'}")
    return heads[0], frozenset(down)


# ``revision = "abc"`` / ``down_revision: Union[str, None] = "abc"`` at the start of a line.
_DECLARATION = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.M)


def _declarations(script: Path) -> dict[str, Any]:
    """The script's ``revision`` and ``down_revision``. Its two lines are read with a pattern,
    a tenth of the time ``ast.parse`` takes over ~70 scripts; a value spread over lines (a merge's
    tuple) sends the script to ``ast``."""
    text = script.read_text(encoding="utf-8")
    values: dict[str, Any] = {}
    try:
        for name, value in _DECLARATION.findall(text):
            values[name] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return _parsed_declarations(text)
    return values


def _parsed_declarations(text: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for node in ast.parse(text).body:
        target = value = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") and value is not None:
            try:
                values[target.id] = ast.literal_eval(value)
            except ValueError:
                pass
    return values


def mlflow_version() -> str:
    for distribution in ("mlflow", "mlflow-skinny"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "(unknown version)"


def backup_path(path: Path, revision: str) -> Path:
    return path.with_name(f"{path.name}.bak-{revision}")


def check_revision(uri: str, path: Path, revision: object, *, upgrade_store: bool = False) -> str | None:
    """None when the store is the installed MLflow's (or empty); the revision to upgrade from
    when ``upgrade_store`` allows it; otherwise one ConfigError."""
    if revision is NO_TABLES:
        return None
    head, known = migrations()
    if revision == head:
        return None
    installed = f"the installed MLflow {mlflow_version()}"
    if revision is None:
        raise ConfigError(
            subject=f"{KEY}={uri!r}",
            key=KEY,
            value=uri,
            problem="names a sqlite database that is not an MLflow store (it has no alembic_version table)",
            valid="a new file, or a store made by MLflow",
        )
    if revision not in known:
        raise ConfigError(
            subject=f"{KEY}={uri!r}",
            key=KEY,
            value=uri,
            problem=(
                f"is an MLflow store of schema revision {revision}, which {installed} does not know "
                f"(its newest is {head}): a newer MLflow made it; open it with that MLflow, or upgrade MLflow"
            ),
        )
    if upgrade_store:
        return str(revision)
    raise ConfigError(
        subject=f"{KEY}={uri!r}",
        key=KEY,
        value=uri,
        problem=(
            f"is an MLflow store of schema revision {revision}, older than {installed} (revision {head}); "
            "opening it would upgrade it for good, and the older MLflow could no longer read it"
        ),
        valid=(
            f"back it up, then run `mlflow db upgrade {uri}`, or pass logger.upgrade_store=true "
            f"(which copies it to {backup_path(path, str(revision)).name} first)"
        ),
        valid_label="to use it",
    )
