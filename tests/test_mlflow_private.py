"""The MLflow internals backproplab relies on (``backproplab.tracking.mlflow_private``) are still
there, called as backproplab calls them, on the installed MLflow.

A new MLflow that moves a module, renames a function, changes a signature or a table fails here
by name, not somewhere deep in a run. .ci/run repeats this file on the lowest supported MLflow.
"""

from __future__ import annotations

import ast
import inspect
import math
from importlib.metadata import version
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException

from backproplab.tracking import mlflow_private

PACKAGE = Path(mlflow_private.__file__).resolve().parents[1]
pytestmark = pytest.mark.lowest_deps

# Where MLflow keeps what it does not promise to keep: only the adapter may import from these.
PRIVATE_MODULES = ("mlflow.store", "mlflow.server", "mlflow.utils", "mlflow.data.code_dataset_source", "mlflow.data.dataset_source_registry", "mlflow.version")


def _imports(tree: ast.AST) -> list[tuple[str, list[str], int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
    return found


def test_only_the_adapter_imports_mlflow_internals():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "mlflow_private.py":
            continue
        for module, names, line in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            private_module = module.startswith(PRIVATE_MODULES) and module != "mlflow.server" or module == "mlflow.server" and names != []
            underscore = module.startswith("mlflow") and any(name.startswith("_") for name in names)
            if private_module or underscore:
                offenders.append(f"{path.relative_to(PACKAGE)}:{line}: from {module} import {', '.join(names)}")
    assert not offenders, "MLflow internals outside tracking/mlflow_private.py:\n" + "\n".join(offenders)


def test_limits_are_positive_integers():
    for name in ("MAX_ENTITY_KEY_LENGTH", "MAX_PARAM_VAL_LENGTH", "MAX_PARAMS_TAGS_PER_BATCH", "MAX_TAG_VAL_LENGTH"):
        value = getattr(mlflow_private, name)
        assert isinstance(value, int) and value > 0, (name, value)


def test_sql_tables_have_the_columns_the_writer_uses():
    tables = mlflow_private.sql_tables()
    assert (tables.metrics.name, tables.latest_metrics.name, tables.runs.name) == ("metrics", "latest_metrics", "runs")
    for table, columns in (
        (tables.metrics, mlflow_private.METRIC_COLUMNS),
        (tables.latest_metrics, mlflow_private.LATEST_METRIC_COLUMNS),
        (tables.runs, mlflow_private.RUN_COLUMNS),
    ):
        missing = set(columns) - {c.name for c in table.columns}
        assert not missing, f"MLflow's {table.name} table lost {sorted(missing)}"
    # The writer's duplicate rule and latest-value update stand on these keys.
    assert {c.name for c in tables.metrics.primary_key.columns} == set(mlflow_private.METRIC_IDENTITY)
    assert {c.name for c in tables.latest_metrics.primary_key.columns} == {"key", "run_uuid"}
    # Every other column of metrics has a default or may be null: the writer inserts only these.
    for column in tables.metrics.columns:
        if column.name not in mlflow_private.METRIC_COLUMNS:
            assert column.nullable or column.default is not None or column.server_default is not None, column.name


def test_validate_metric_accepts_and_refuses_as_log_batch_does():
    mlflow_private.validate_metric("loss", 0.5, 0, 0)
    mlflow_private.validate_metric("grad/W1/0_1", math.nan, 1, 2)
    with pytest.raises(MlflowException):
        mlflow_private.validate_metric("../escape", 0.5, 0, 0)
    with pytest.raises(MlflowException):
        mlflow_private.validate_metric("loss", 0.5, 0, "one")


def test_server_functions_take_the_arguments_given():
    from mlflow.server.handlers import _get_tracking_store

    inspect.signature(_get_tracking_store).bind()
    app = mlflow_private.server_flask_app()
    assert hasattr(app, "add_url_rule") and hasattr(app, "wsgi_app")
    major = int(version("mlflow").split(".")[0])
    if major >= 3:  # uvicorn, and MLflow's FastAPI wrapper around the Flask app
        from mlflow.environment_variables import _MLFLOW_SGI_NAME
        from mlflow.server.fastapi_app import create_fastapi_app

        assert callable(_MLFLOW_SGI_NAME.get)
        inspect.signature(create_fastapi_app).bind(app)


def test_server_store_uri_reads_the_store_of_a_server_process(tmp_path, monkeypatch):
    """What ``mlflow server`` sets for its workers, read back as the app reads it."""
    from mlflow.server import ARTIFACT_ROOT_ENV_VAR, BACKEND_STORE_URI_ENV_VAR, handlers

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv(BACKEND_STORE_URI_ENV_VAR, uri)
    monkeypatch.setenv(ARTIFACT_ROOT_ENV_VAR, str(tmp_path / "artifacts"))
    monkeypatch.setattr(handlers, "_tracking_store", None, raising=False)
    assert mlflow_private.server_store_uri() == uri


def test_rest_helpers_take_the_arguments_given():
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    assert mlflow_private.rest_available()
    creds = get_default_host_creds("http://127.0.0.1:5000")
    assert creds.host == "http://127.0.0.1:5000"
    signature = inspect.signature(http_request)
    signature.bind(creds, "/api/2.0/x", "POST", data="{}", extra_headers={"Connection": "close"}, timeout=(10.0, 60.0))
    signature.bind(creds, "/api/2.0/x", "GET", max_retries=0, timeout=10.0)
    inspect.signature(verify_rest_response).bind(object(), "/api/2.0/x")


def test_dataset_sources(tmp_path):
    source = mlflow_private.code_dataset_source({"generator": "make_moons", "noise": "0.2"})
    assert source.to_dict()
    csv = tmp_path / "points.csv"
    csv.write_text("x,y\n1,0\n", encoding="utf-8")
    assert mlflow_private.dataset_source_for(str(csv)).to_dict()
