"""Buffered metrics written straight into an MLflow sqlite or PostgreSQL store's own tables.

Why not ``log_batch``: MLflow 3's SQLAlchemy store builds one ORM object per metric inside
``log_batch``, a cost per metric that bounds the speed-up over per-iteration ``log_metrics`` at
backproplab's metric volume. The same rows, inserted with one SQLAlchemy Core ``executemany`` per
block, cost a small fraction of that (benchmarks/bench_tracking.py measures both; the README's
"Speed" has the figures).

What keeps this honest:

* the tables are MLflow's own SQLAlchemy definitions (``SqlMetric``, ``SqlLatestMetric``) from
  the installed MLflow, and the store's schema revision is the installed MLflow's: ``store.connect``
  refuses a sqlite store of another revision before ``MlflowClient`` opens it, and MLflow's own
  ``SqlAlchemyStore`` refuses a PostgreSQL one as it opens it (``_verify_schema``); nothing here
  spells a table by hand;
* values are sanitised exactly as ``SqlAlchemyStore.sanitize_metric_value`` does (NaN stored as
  0 with ``is_nan``, ±inf as ±float max), and ``latest_metrics`` is updated with the store's own
  rule: the row with the greatest (step, timestamp, value) wins;
* a block is one transaction, so a failure leaves the store as it was; a block that hits a
  duplicate row is handed to ``log_batch``, whose de-duplication is MLflow's business (or, in
  the tracking server's app, ``server_app``, skipped row by row: the same rule, cheaper);
* the run's row is locked for the transaction (``FOR UPDATE`` on PostgreSQL; sqlite has one
  writer at a time anyway), so two blocks of one run never race on its ``latest_metrics`` rows;
* logging into a run that is no longer active fails, as ``log_batch`` would.

tests/test_tracking_sql_writer.py checks that the store reads back, through ``MlflowClient``,
exactly what ``log_batch`` would have produced.
"""

from __future__ import annotations

import math
import threading
from typing import Any
from urllib.parse import urlparse

import numpy as np
import sqlalchemy as sa
from mlflow.entities import LifecycleStage
from .buffer import Block, LogBatchSink
from ..mlflow_private import METRIC_COLUMNS, sql_tables
from .signals import signals_held

_FLOAT_MAX = 1.7976931348623157e308
_COLUMNS = METRIC_COLUMNS


def supports_sql_writer(uri: str) -> bool:
    """sqlite files and PostgreSQL databases are written directly: the two databases backproplab
    tests against (tests/test_tracking_sql_writer.py runs on both). An in-memory sqlite database
    would be a different, empty one on a second connection; MySQL and MSSQL get ``log_batch``."""
    scheme = urlparse(uri).scheme.lower()
    if scheme.split("+", 1)[0] == "postgresql":
        return True
    if scheme != "sqlite":
        return False
    path = uri.split("://", 1)[1].lstrip("/").split("?", 1)[0]
    return bool(path) and path != ":memory:"


def engine_for(uri: str) -> sa.Engine:
    """An engine for ``uri`` whose dialect compiles positional parameters (``?`` or ``%s``), so
    rows go to the driver's executemany as plain tuples."""
    if urlparse(uri).scheme.lower() == "sqlite":
        # A generous busy timeout: parallel sweep jobs and the MLflow client share the file.
        return sa.create_engine(uri, connect_args={"timeout": 30})
    # psycopg's own default, named placeholders, would need a dict per row.
    return sa.create_engine(uri, paramstyle="format")


def _sanitise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(value, is_nan) as MLflow's SQL store stores them."""
    is_nan = np.isnan(values)
    stored = np.clip(np.where(is_nan, 0.0, values), -_FLOAT_MAX, _FLOAT_MAX)
    return stored, is_nan


def _sanitise_one(value: float) -> tuple[float, bool]:
    if math.isnan(value):
        return 0.0, True
    return min(max(value, -_FLOAT_MAX), _FLOAT_MAX), False


class SqlMetricSink:
    """Writes a ``Block`` into ``metrics`` and ``latest_metrics`` in one transaction."""

    def __init__(self, uri: str, run_id: str, client: Any = None, *, engine: sa.Engine | None = None) -> None:
        """``client``: duplicates go to its ``log_batch``; None (the server's app): they are skipped
        here, as MLflow's store skips them. ``engine``: one shared by many sinks (from ``engine_for``)."""
        self.run_id = run_id
        self.fallback = LogBatchSink(client, run_id) if client is not None else None
        self._owns_engine = engine is None
        self._engine = engine if engine is not None else engine_for(uri)
        self._last_written: tuple[Block, int] | None = None
        self._lock = threading.Lock()
        self._metrics, self._latest, self._runs = sql_tables()
        # Compiled once from MLflow's table and run with the driver's executemany on plain
        # tuples: SQLAlchemy's per-row parameter processing would double the cost per metric.
        compiled = sa.insert(self._metrics).values({c: sa.bindparam(c) for c in _COLUMNS}).compile(dialect=self._engine.dialect)
        order = tuple(compiled.positiontup or ())
        if sorted(order) != sorted(_COLUMNS):
            raise RuntimeError(f"unexpected parameters {order} for MLflow's metrics table")
        self._permutation = None if order == _COLUMNS else [_COLUMNS.index(c) for c in order]
        self._order = order
        self._insert_sql = str(compiled)
        self.calls = 0

    def __call__(self, block: Block) -> int:
        if self._last_written is not None and block is self._last_written[0]:
            # Committed already: a signal held during the commit ended the call before it returned.
            return self._last_written[1]
        rows, latest = self._rows(block)
        if not rows:
            return 0
        if self._permutation is not None:
            rows = [tuple(row[i] for i in self._permutation) for row in rows]
        with self._lock:
            try:
                self._write(block, rows, latest)
            except sa.exc.IntegrityError:
                # Some rows already exist (a block written twice): MLflow's log_batch skips
                # exact duplicates and rejects conflicting ones, so let it decide; without a
                # client (the server app) the rows not stored yet go, by the same rule.
                if self.fallback is not None:
                    return self.fallback(block)
                self._write(block, rows, latest, only_missing=True)
        return len(rows)

    def _write(self, block: Block, rows: list[tuple[Any, ...]], latest: dict[str, tuple[int, int, float, bool]], *, only_missing: bool = False) -> None:
        # Ctrl-C inside the transaction could leave the file locked for this process's own
        # MLflow client: the run would stay RUNNING. Held signals arrive after it.
        with signals_held():
            with self._engine.begin() as conn:
                self._check_active(conn)
                insert = self._missing(conn, rows) if only_missing else rows
                if insert:
                    conn.exec_driver_sql(self._insert_sql, insert)
                self._update_latest(conn, latest)
            self._last_written = (block, len(rows))
            self.calls += 1

    def _missing(self, conn: sa.Connection, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The rows not yet stored. A row's identity is MLflow's primary key (key, timestamp, step,
        value, is_nan), as in ``SqlAlchemyStore``'s own duplicate recovery; looked up through the
        (run_uuid, key, step) index over the block's steps, so the cost is the block's, not the run's."""
        key, value, ts, step, nan = (self._order.index(c) for c in ("key", "value", "timestamp", "step", "is_nan"))
        m = self._metrics.c
        query = sa.select(m.key, m.value, m.timestamp, m.step, m.is_nan).where(
            m.run_uuid == self.run_id,
            m.key.in_(sorted({row[key] for row in rows})),
            m.step.between(min(row[step] for row in rows), max(row[step] for row in rows)),
        )
        seen = {(k, v, t, s, bool(n)) for k, v, t, s, n in conn.execute(query)}
        missing = []
        for row in rows:
            identity = (row[key], row[value], row[ts], row[step], bool(row[nan]))
            if identity not in seen:  # also a row twice in the block goes once, as in MLflow's store
                seen.add(identity)
                missing.append(row)
        return missing

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    def _check_active(self, conn: sa.Connection) -> None:
        # FOR UPDATE: a second block of the same run (a server's other worker) waits for this one.
        stage = conn.execute(
            sa.select(self._runs.c.lifecycle_stage).where(self._runs.c.run_uuid == self.run_id).with_for_update()
        ).scalar()
        if stage != LifecycleStage.ACTIVE:
            state = "missing" if stage is None else stage
            raise RuntimeError(f"MLflow run {self.run_id} must be in the 'active' state to log metrics; it is {state}")

    def _rows(self, block: Block) -> tuple[list[tuple[Any, ...]], dict[str, tuple[int, int, float, bool]]]:
        """Metric rows in ``_COLUMNS`` order and, per key, the block's latest (step, timestamp, value, is_nan)."""
        run_id = self.run_id
        rows: list[tuple[Any, ...]] = []
        latest: dict[str, tuple[int, int, float, bool]] = {}

        def offer(key: str, candidate: tuple[int, int, float, bool]) -> None:
            current = latest.get(key)
            if current is None or candidate[:3] > current[:3]:
                latest[key] = candidate

        if block.values.size:
            stored, is_nan = _sanitise(block.values)
            keys = block.keys
            for step, ts, row, nans in zip(block.steps.tolist(), block.timestamps_ms.tolist(), stored.tolist(), is_nan.tolist()):
                rows.extend([(k, v, ts, step, n, run_id) for k, v, n in zip(keys, row, nans)])
            # Every column's latest row: the greatest step, then timestamp, then value.
            order = np.lexsort((block.timestamps_ms, block.steps))
            last = order[-1]
            step, ts = int(block.steps[last]), int(block.timestamps_ms[last])
            ties = np.flatnonzero((block.steps == step) & (block.timestamps_ms == ts))
            for column, key in enumerate(keys):
                best = max(ties, key=lambda r: stored[r, column])
                offer(key, (step, ts, float(stored[best, column]), bool(is_nan[best, column])))
        for key, value, ts, step in block.extra:
            value, nan = _sanitise_one(float(value))
            rows.append((key, value, ts, step, nan, run_id))
            offer(key, (step, ts, value, nan))
        return rows, latest

    def _update_latest(self, conn: sa.Connection, latest: dict[str, tuple[int, int, float, bool]]) -> None:
        table = self._latest
        stored: dict[str, tuple[int, int, float]] = {}
        keys = sorted(latest)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            query = sa.select(table.c.key, table.c.step, table.c.timestamp, table.c.value).where(
                table.c.run_uuid == self.run_id, table.c.key.in_(chunk)
            )
            stored.update({key: (step, ts, value) for key, step, ts, value in conn.execute(query)})
        inserts, updates = [], []
        for key, (step, ts, value, nan) in latest.items():
            row = {"step": step, "timestamp": ts, "value": value, "is_nan": nan}
            if key not in stored:
                inserts.append({"run_uuid": self.run_id, "key": key, **row})
            elif (step, ts, value) > stored[key]:
                updates.append({"b_key": key, **{f"b_{name}": v for name, v in row.items()}})
        if inserts:
            conn.execute(sa.insert(table), inserts)
        if updates:
            conn.execute(
                sa.update(table)
                .where(table.c.run_uuid == self.run_id, table.c.key == sa.bindparam("b_key"))
                .values({name: sa.bindparam(f"b_{name}") for name in ("step", "timestamp", "value", "is_nan")}),
                updates,
            )

