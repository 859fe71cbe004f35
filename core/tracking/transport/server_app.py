"""``mlflow server --app-name backproplab``: MLflow's own server, plus one call that stores a whole
block of a run's metrics.

Why: through a plain server every metric goes through MLflow's ``log_batch``, at most 1000 a
call, and the server spends its CPU on each (one ORM object per metric, the run loaded twice
per call; the README's "A shared tracking server and PostgreSQL" has the figures). That cost,
not the network, bounds a job's speed-up over per-iteration ``log_metrics``. This app adds
``POST /api/2.0/backproplab/runs/log-block``: a block (a flush, ~10,000 metrics) arrives as
a few packed arrays and goes into MLflow's own ``metrics`` and ``latest_metrics`` tables through
``sql_writer.SqlMetricSink``, the writer a job uses on a database it can reach, with the same
guarantees (MLflow's table definitions, its value sanitising and latest-value rule, one
transaction per block, the run checked active; duplicates skipped as MLflow skips them).

The app is an ``mlflow.app`` entry point, MLflow's extension point for server apps (its
``basic-auth`` is one), so everything else the server does is MLflow's, unchanged: the UI, the
REST API, artifacts. A job asks ``GET /api/2.0/backproplab/server`` once; a server without the
app (or on a store the writer does not take) answers otherwise, and the job uses ``log_batch``.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from typing import Any

import numpy as np

from .buffer import Block

BLOCK_ENDPOINT = "/api/2.0/backproplab/runs/log-block"
SERVER_ENDPOINT = "/api/2.0/backproplab/server"
PROTOCOL = 1
# A call's ceiling: ten default flushes, ~1.1 MB of body; a larger block is refused whole.
MAX_BLOCK_METRICS = 100_000


def _pack(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _unpack(text: Any, dtype: str, name: str) -> np.ndarray:
    if not isinstance(text, str):
        raise ValueError(f"'{name}' must be a base64 string of {np.dtype(dtype).name} values")
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) % np.dtype(dtype).itemsize:
        raise ValueError(f"'{name}' holds {len(raw)} bytes, not a whole number of {np.dtype(dtype).name} values")
    return np.frombuffer(raw, dtype=dtype)


def _number(value: float) -> float | str:
    return value if math.isfinite(value) else repr(value)  # 'nan', 'inf', '-inf': float() reads them back


def pieces(block: Block, limit: int = MAX_BLOCK_METRICS) -> list[Block]:
    """``block`` as blocks of at most ``limit`` metrics, whole rows each, the extras last: a run's
    ``logger.buffer.max_metrics`` may be far above one call's ceiling."""
    if block.n_metrics <= limit:
        return [block]
    rows = max(1, limit // max(1, len(block.keys)))
    steps, timestamps, values = block.steps, block.timestamps_ms, block.values
    out = [Block(block.keys, steps[i : i + rows], timestamps[i : i + rows], values[i : i + rows]) for i in range(0, len(steps), rows)]
    out += [Block(block.keys, steps[:0], timestamps[:0], values[:0], block.extra[i : i + limit]) for i in range(0, len(block.extra), limit)]
    return out


def block_body(run_id: str, block: Block) -> str:
    """The request body: keys, then steps, timestamps and the (rows, keys) values as packed
    little-endian arrays (exact: NaN, ±inf, -0.0 and int64 steps survive), then the extras."""
    return json.dumps(
        {
            "protocol": PROTOCOL,
            "run_id": run_id,
            "keys": list(block.keys),
            "steps": _pack(block.steps, "<i8"),
            "timestamps": _pack(block.timestamps_ms, "<i8"),
            "values": _pack(block.values, "<f8"),
            "extra": [[k, _number(float(v)), int(t), int(s)] for k, v, t, s in block.extra],
        },
        separators=(",", ":"),
    )


def parse_block(payload: Any) -> tuple[str, Block]:
    """(run_id, block) from a request's JSON, or ValueError naming what is wrong."""
    if not isinstance(payload, dict):
        raise ValueError("the body must be a JSON object")
    if payload.get("protocol") != PROTOCOL:
        raise ValueError(f"'protocol' is {payload.get('protocol')!r}; this server speaks {PROTOCOL}")
    run_id, keys, extra = payload.get("run_id"), payload.get("keys"), payload.get("extra", [])
    if not isinstance(run_id, str) or not run_id:
        raise ValueError("'run_id' must be a non-empty string")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
        raise ValueError("'keys' must be a list of distinct strings")
    steps = _unpack(payload.get("steps"), "<i8", "steps")
    timestamps = _unpack(payload.get("timestamps"), "<i8", "timestamps")
    values = _unpack(payload.get("values"), "<f8", "values")
    rows = len(steps)
    if len(timestamps) != rows or values.size != rows * len(keys) or (rows and not keys):
        raise ValueError(f"{rows} steps, {len(timestamps)} timestamps and {values.size} values do not make rows of {len(keys)} keys")
    if not isinstance(extra, list) or not all(
        isinstance(e, list) and len(e) == 4 and isinstance(e[0], str) and isinstance(e[1], (int, float, str))
        and all(isinstance(n, int) and not isinstance(n, bool) and -(2**63) <= n < 2**63 for n in e[2:])
        for e in extra
    ):
        raise ValueError("'extra' must be a list of [key, value, timestamp, step], timestamp and step 64-bit integers")
    if values.size + len(extra) > MAX_BLOCK_METRICS:
        raise ValueError(f"{values.size + len(extra)} metrics in one call; at most {MAX_BLOCK_METRICS}")
    block = Block(
        tuple(keys), steps.astype(np.int64), timestamps.astype(np.int64), values.reshape(rows, len(keys)).astype(np.float64),
        [(k, float(v), t, s) for k, v, t, s in extra],
    )
    _validate(block)
    return run_id, block


def _validate(block: Block) -> None:
    """MLflow's own checks of a metric's name, value, timestamp and step, as ``log_batch`` makes
    them; once per key for the packed rows, whose values are float64 and steps int64 by construction."""
    from ..mlflow_private import validate_metric

    if block.timestamps_ms.size and int(block.timestamps_ms.min()) < 0:
        raise ValueError(f"timestamp {int(block.timestamps_ms.min())}: a timestamp must be a nonnegative long (64-bit integer)")
    first = (float(block.values[0, 0]), int(block.timestamps_ms[0]), int(block.steps[0])) if block.values.size else (0.0, 0, 0)
    for key in block.keys:
        validate_metric(key, *first)
    for key, value, timestamp, step in block.extra:
        validate_metric(key, value, timestamp, step)


_engines: dict[str, Any] = {}
_engines_lock = threading.Lock()


def _store_engine() -> tuple[str, Any] | None:
    """(uri, engine) of the server's backend store, when the SQL writer takes it; one engine per
    server worker process."""
    from ..mlflow_private import server_store_uri
    from .sql_writer import engine_for, supports_sql_writer

    uri = server_store_uri()
    if uri is None or not supports_sql_writer(uri):
        return None
    with _engines_lock:
        if uri not in _engines:
            _engines[uri] = engine_for(uri)
        return uri, _engines[uri]


def _error(message: str, code: str, status: int):
    from flask import Response

    return Response(json.dumps({"error_code": code, "message": message}), status=status, mimetype="application/json")


def _server_view():
    from flask import jsonify

    import mlflow

    store = _store_engine()
    return jsonify({"app": "backproplab", "protocol": PROTOCOL, "log_block": store is not None, "mlflow": mlflow.__version__})


def _log_block_view():
    from flask import jsonify, request

    from .sql_writer import SqlMetricSink

    store = _store_engine()
    if store is None:
        return _error("this server's backend store is not one backproplab's writer takes (sqlite file or PostgreSQL); use runs/log-batch", "NOT_IMPLEMENTED", 501)
    try:
        run_id, block = parse_block(request.get_json(force=True, silent=False))
    except Exception as exc:  # noqa: BLE001 - a bad body of any kind is the caller's, said in one line
        return _error(f"log-block: {exc}", "INVALID_PARAMETER_VALUE", 400)
    uri, engine = store
    sink = SqlMetricSink(uri, run_id, engine=engine)
    try:
        stored = sink(block)
    except RuntimeError as exc:  # the run is missing or not active, as log_batch refuses it
        missing = "it is missing" in str(exc)
        return _error(str(exc), "RESOURCE_DOES_NOT_EXIST" if missing else "INVALID_PARAMETER_VALUE", 404 if missing else 400)
    return jsonify({"stored": stored})


def create_app(app: Any = None):
    """The ``mlflow.app`` factory: MLflow's Flask app with the two routes; under uvicorn (MLflow's
    default server) wrapped as MLflow wraps its own app, as MLflow's basic-auth app does."""
    from ..mlflow_private import server_app_for_sgi, server_flask_app

    app = server_flask_app() if app is None else app
    app.add_url_rule(SERVER_ENDPOINT, endpoint="backproplab_server", view_func=_server_view, methods=["GET"])
    app.add_url_rule(BLOCK_ENDPOINT, endpoint="backproplab_log_block", view_func=_log_block_view, methods=["POST"])
    return server_app_for_sgi(app)
