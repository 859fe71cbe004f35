"""Finding the tracking store and proving it is usable, before any training starts.

A dead tracking server must cost the user one clear line within seconds, not minutes of MLflow
retries after the run has trained. HTTP stores get a bounded ``GET /health`` first, and the
experiment lookup then runs with MLflow's retries and timeouts turned down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Mapping

from mlflow import MlflowClient
from mlflow.entities import LifecycleStage, Run

from backproplab.errors import ConfigError, exception_line
from .credentials import redact
from .reachability import check_http, check_postgresql, check_scheme, check_sqlite, check_writable, default_uri, shown_uri, sqlite_path, store_lock
from .schema import backup_path

CHECK_HTTP_TIMEOUT_S = "4"


def resolve_uri(tracking_uri: str | None) -> str:
    """``None`` means backproplab's default (``reachability.default_uri``): MLFLOW_TRACKING_URI if
    set, else sqlite:///mlflow.db in the cwd. A password the command line moved out of the URI is
    put back (``credentials.reveal``)."""
    return default_uri(tracking_uri)


@contextlib.contextmanager
def environment(values: Mapping[str, str], *, keep_set: bool = False) -> Iterator[None]:
    """Environment variables set for the block and restored after it: MLflow reads its HTTP
    knobs from the environment at every request, so this bounds exactly the calls inside.
    ``keep_set``: a variable the user already set keeps its value (they chose it)."""
    saved = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if keep_set:
            os.environ.setdefault(key, value)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """The named loggers held at WARNING or above for the block, then restored. MLflow reports
    routine work (a new store's tables and migrations, a model's files) at INFO on stderr, where
    a run carries only its own progress, warnings and errors; MLflow's warnings and errors still
    show."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _fast_http_failure() -> contextlib.AbstractContextManager[None]:
    return environment({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": CHECK_HTTP_TIMEOUT_S})


def connect(uri: str, experiment_name: str, *, upgrade_store: bool = False, integrity: bool = True) -> tuple[MlflowClient, str]:
    """A client for ``uri`` and the id of ``experiment_name`` (created if missing), or one ConfigError.

    A sqlite store is opened under an exclusive ``<store>.lock``: MLflow creates a new store's
    tables and runs its migrations on first open, and two processes doing that at once fail
    with "table ... already exists". Its schema revision is checked again under that lock (the
    cheap check ran before it), so a store is never upgraded behind the user's back.
    ``integrity=False`` skips sqlite's page check, for a process whose store was checked up front
    (a single run's preflight, a sweep's parent)."""
    started = time.monotonic()
    scheme = check_scheme(uri)
    http = scheme in ("http", "https")
    if http:
        check_http(uri)
    elif scheme == "postgresql":
        check_postgresql(uri)
    path = sqlite_path(uri) if scheme == "sqlite" else None
    if path is not None:
        check_writable(uri, path)  # the lock file is created beside the store
        lock = store_lock(path)
    else:
        lock = contextlib.nullcontext()
    guard = _fast_http_failure() if http else contextlib.nullcontext()
    try:
        with lock, guard, quiet_loggers("mlflow.store.db.utils", "alembic"):
            if path is not None:
                old = check_sqlite(uri, upgrade_store=upgrade_store, locked=True, integrity=integrity)
                if old is not None:
                    _upgrade(uri, path, old)
            client = MlflowClient(tracking_uri=uri)
            experiment_id = ensure_experiment(client, experiment_name)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - every store failure becomes one line naming the URI
        text = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"MLflow tracking store {shown_uri(uri)} is not usable after {time.monotonic() - started:.1f}s "
            f"({type(exc).__name__}: {text}); fix logger.tracking_uri or run with logger=none"
        ) from None
    return client, experiment_id


def _upgrade(uri: str, path: Path, revision: str) -> None:
    """``logger.upgrade_store=true``: copy the store aside, then migrate it the way MLflow's own
    ``mlflow db upgrade`` does (that command, in a subprocess: MLflow has no public function for it)."""
    backup = backup_path(path, revision)
    if backup.exists():
        # Never overwrite a backup: it may be the only copy an older MLflow can still read.
        raise ConfigError(
            f"logger.upgrade_store=true would copy {path} to {backup}, which exists already (an earlier "
            "attempt?); move it away, then run again"
        )
    shutil.copy2(path, backup)
    print(f"backproplab: upgrading MLflow store {path} from schema revision {revision}; the old store is kept as {backup}", file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", uri], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise ConfigError(
            f"`mlflow db upgrade {uri}` failed ({lines[-1].strip() if lines else f'exit {proc.returncode}'}); "
            f"the store before the attempt is {backup}"
        )


def stored_run(client: MlflowClient, run_id: str, *, missing: str, valid: str) -> Run:
    """``client.get_run(run_id)``; else a one-line ConfigError: ``missing`` (the run named, and
    where it is not), the store's own reason, and ``valid``. The reason is redacted before it is
    cut, so a cut can never split a password out of the pattern that masks it."""
    try:
        return client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - one line: the store does not hold this run
        raise ConfigError(f"{missing} ({redact(exception_line(exc))[:160]}); valid: {valid}") from None


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The experiment's id; tolerant of a concurrent creator (parallel sweep jobs)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name)
        except Exception:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == LifecycleStage.DELETED:
        raise ConfigError(
            f"experiment {name!r} is deleted in the tracking store; restore it (mlflow experiments restore) "
            "or choose another logger.experiment_name"
        )
    return experiment.experiment_id
