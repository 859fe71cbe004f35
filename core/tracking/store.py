"""Finding the tracking store and proving it is usable, before any training starts.

A dead tracking server must cost the user one clear line within seconds, not minutes of MLflow
retries after the run has trained. HTTP stores get a bounded ``GET /health`` first, and the
experiment lookup then runs with MLflow's retries and timeouts turned down.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator
from urllib.parse import urlparse

import mlflow
from mlflow import MlflowClient
from mlflow.entities import LifecycleStage

from backproplab.errors import ConfigError
from .reachability import check_http, check_sqlite

CHECK_HTTP_TIMEOUT_S = "4"


def resolve_uri(tracking_uri: str | None) -> str:
    """``None`` means MLflow's own default: MLFLOW_TRACKING_URI if set, else sqlite:///mlflow.db in the cwd."""
    return tracking_uri if tracking_uri is not None else mlflow.get_tracking_uri()


@contextlib.contextmanager
def _fast_http_failure() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = CHECK_HTTP_TIMEOUT_S
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def connect(uri: str, experiment_name: str) -> tuple[MlflowClient, str]:
    """A client for ``uri`` and the id of ``experiment_name`` (created if missing), or one ConfigError."""
    started = time.monotonic()
    scheme = urlparse(uri).scheme
    http = scheme in ("http", "https")
    if http:
        check_http(uri)
    elif scheme == "sqlite":
        check_sqlite(uri)
    guard = _fast_http_failure() if http else contextlib.nullcontext()
    try:
        with guard:
            client = MlflowClient(tracking_uri=uri)
            experiment_id = ensure_experiment(client, experiment_name)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - every store failure becomes one line naming the URI
        text = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"MLflow tracking store {uri} is not usable after {time.monotonic() - started:.1f}s "
            f"({type(exc).__name__}: {text}); fix logger.tracking_uri or run with logger=none"
        ) from None
    return client, experiment_id


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
