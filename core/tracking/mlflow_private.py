"""Every MLflow API backproplab uses that MLflow does not promise to keep, behind one door.

MLflow's public API is the ``mlflow`` module, ``MlflowClient``, ``mlflow.entities``,
``mlflow.data``'s constructors and ``mlflow.environment_variables``. What backproplab needs
beyond it is here and nowhere else: MLflow's internal modules (``mlflow.store``,
``mlflow.server.handlers``, ``mlflow.utils``, ``mlflow.data``'s source classes), underscore names
and attributes of MLflow's objects. A new MLflow that moves or changes one breaks this module, and
tests/test_mlflow_private.py names which one (it checks the names, the signatures called and the
table columns relied on); pyproject.toml caps ``mlflow`` below the next major for this reason.

Each use says *why* where it is made; this module says *what* it is.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# Limits MLflow's own validation applies to what a run logs (``mlflow.utils.validation``): a
# longer value is refused by ``log_batch``, so backproplab cuts or splits it first.
from mlflow.utils.validation import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

# The logged model's tag that lists its registered versions, as MLflow's own ``register_model``
# sets it (the model page's "Model versions"); MLflow names it only in an internal module.
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

# The columns of MLflow's SQL tables that the direct writer (``sql_writer``) reads and writes.
METRIC_COLUMNS = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")
LATEST_METRIC_COLUMNS = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")
RUN_COLUMNS = ("run_uuid", "lifecycle_stage")
# A metric row's identity, MLflow's primary key of ``metrics``: a row with the same values is a
# duplicate, which MLflow's store skips.
METRIC_IDENTITY = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")


class SqlTables(NamedTuple):
    """MLflow's SQLAlchemy tables of a tracking store (``mlflow.store.tracking.dbmodels.models``)."""

    metrics: Any
    latest_metrics: Any
    runs: Any


def sql_tables() -> SqlTables:
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun

    return SqlTables(SqlMetric.__table__, SqlLatestMetric.__table__, SqlRun.__table__)


def validate_metric(key: str, value: float, timestamp: int, step: int) -> None:
    """MLflow's own check of one metric, as ``log_batch`` makes it; raises ``MlflowException``."""
    from mlflow.utils.validation import _validate_metric

    _validate_metric(key, value, timestamp, step)


def server_store_uri() -> str | None:
    """The database URI of the tracking store a running ``mlflow server`` process serves; None
    for a store that is not a SQL database."""
    from mlflow.server.handlers import _get_tracking_store

    uri = getattr(_get_tracking_store(), "db_uri", None)
    return uri if isinstance(uri, str) else None


def server_flask_app() -> Any:
    """The Flask app ``mlflow server`` serves, which an ``mlflow.app`` plugin extends."""
    from mlflow.server import app

    return app


def server_app_for_sgi(app: Any) -> Any:
    """``app`` as ``mlflow server`` runs it: wrapped in MLflow's FastAPI app under uvicorn (the
    default server from MLflow 3), as MLflow wraps its own; the Flask app itself under a WSGI
    server (gunicorn, waitress: MLflow 2, or ``--gunicorn-opts``)."""
    try:
        from mlflow.environment_variables import _MLFLOW_SGI_NAME
    except ImportError:  # an MLflow without uvicorn: WSGI only
        return app
    if _MLFLOW_SGI_NAME.get() != "uvicorn":
        return app
    from mlflow.server.fastapi_app import create_fastapi_app

    return create_fastapi_app(app)


def rest_available() -> bool:
    """Whether MLflow's HTTP helpers are where ``rest_call`` finds them."""
    try:
        from mlflow.utils.credentials import get_default_host_creds  # noqa: F401
        from mlflow.utils.rest_utils import http_request, verify_rest_response  # noqa: F401
    except ImportError:
        return False
    return True


def rest_call(uri: str, endpoint: str, method: str, **kwargs: Any) -> Any:
    """One request to the tracking server ``uri`` through MLflow's own ``http_request`` (its
    retries, timeouts, TLS and auth settings), with the credentials MLflow's REST store reads
    (``MLFLOW_TRACKING_USERNAME``/``TOKEN``...); the ``requests`` response."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    return http_request(get_default_host_creds(uri), endpoint, method, **kwargs)


def verify_rest_response(response: Any, endpoint: str) -> None:
    """Raises MLflow's own ``MlflowException`` for a failed call, as its REST store does."""
    from mlflow.utils.rest_utils import verify_rest_response as verify

    verify(response, endpoint)


def code_dataset_source(origin: dict[str, str]) -> Any:
    """A dataset source that names the code (and its settings) that generated a data set."""
    from mlflow.data.code_dataset_source import CodeDatasetSource

    return CodeDatasetSource(origin)


def dataset_source_for(path: str) -> Any:
    """The dataset source MLflow's registry picks for a file path (a local file's)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    return resolve_dataset_source(path)


__all__ = [
    "MAX_ENTITY_KEY_LENGTH", "MAX_PARAM_VAL_LENGTH", "MAX_PARAMS_TAGS_PER_BATCH", "MAX_TAG_VAL_LENGTH", "MLFLOW_MODEL_VERSIONS",
    "METRIC_COLUMNS", "LATEST_METRIC_COLUMNS", "RUN_COLUMNS", "METRIC_IDENTITY", "SqlTables", "sql_tables",
    "validate_metric", "server_store_uri", "server_flask_app", "server_app_for_sgi", "rest_available", "rest_call",
    "verify_rest_response", "code_dataset_source", "dataset_source_for",
]
