"""The SQL writer against real MLflow stores, sqlite and PostgreSQL (tests/servers.py starts the
server): it must leave exactly what log_batch leaves.

Every comparison reads back through ``MlflowClient`` (``get_run`` for the latest values,
``get_metric_history`` for every row), so the writer is judged by MLflow's own reader.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

import backproplab as bp
from backproplab.errors import ConfigError
from backproplab.run.context import RunContext
from backproplab.tracking import check_tracking, track_run
from backproplab.tracking.transport.buffer import Block, LogBatchSink
from backproplab.tracking.lifecycle.settings import TrackingSettings
from backproplab.tracking.transport.sql_writer import SqlMetricSink

KEYS = ("loss", "grad/w1_1_1", "param/b1_1")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("sqlwriter")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # a database store's artifacts go to ./mlruns
        if request.param == "sqlite":
            yield "sqlite:///" + str(root / "mlflow.db")
        else:
            yield request.getfixturevalue("postgres").create_database("sqlwriter")


@pytest.fixture(scope="module")
def client(store) -> MlflowClient:
    return MlflowClient(store)


@pytest.fixture(scope="module")
def experiment_id(client) -> str:
    return client.create_experiment("sql-writer")


def new_run(client, experiment_id) -> str:
    return client.create_run(experiment_id).info.run_id


def block(steps, values, timestamps=None, extra=()) -> Block:
    steps = np.asarray(steps, dtype=np.int64)
    ts = np.asarray(timestamps if timestamps is not None else 1_700_000_000_000 + steps, dtype=np.int64)
    return Block(KEYS, steps, ts, np.asarray(values, dtype=np.float64).reshape(len(steps), len(KEYS)), list(extra))


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def snapshot(client, run_id):
    """(latest metrics, every history) as MLflow reports them, NaN-safe and order-free."""
    run = client.get_run(run_id)
    latest = {k: repr(v) for k, v in run.data.metrics.items()}
    history = {
        key: sorted((m.step, m.timestamp, repr(m.value)) for m in client.get_metric_history(run_id, key))
        for key in run.data.metrics
    }
    return latest, history


def write_both(client, experiment_id, store, blocks):
    via_log_batch, via_sql = new_run(client, experiment_id), new_run(client, experiment_id)
    reference, sql = LogBatchSink(client, via_log_batch), SqlMetricSink(store, via_sql, client)
    for b in blocks:
        reference(b)
        sql(b)
    sql.close()
    return snapshot(client, via_log_batch), snapshot(client, via_sql)


@pytest.mark.lowest_deps
def test_rows_and_latest_values_match_log_batch(client, experiment_id, store):
    blocks = [
        block([0, 1, 2], [[0.7, -1.5, 2.0], [0.6, float("nan"), 2.1], [0.5, float("inf"), -float("inf")]],
              extra=[("train/loss", 0.61, 1_700_000_000_005, 3)]),
        block([3, 4], [[0.4, 1e-300, -0.0], [0.3, 5.0, float("nan")]], extra=[("train/loss", 0.35, 1_700_000_000_009, 5)]),
    ]
    reference, sql = write_both(client, experiment_id, store, blocks)
    assert sql == reference
    latest = sql[0]
    assert latest["loss"] == repr(0.3) and latest["param/b1_1"] == "nan" and latest["train/loss"] == repr(0.35)
    assert [row[2] for row in sql[1]["grad/w1_1_1"]][1:3] == ["nan", repr(1.7976931348623157e308)]


def test_an_older_block_does_not_replace_the_latest_value(client, experiment_id, store):
    # MLflow keeps the value with the greatest (step, timestamp, value) as the run's latest.
    reference, sql = write_both(client, experiment_id, store, [block([10], [[1.0, 2.0, 3.0]]), block([4], [[9.0, 9.0, 9.0]])])
    assert sql == reference
    assert sql[0] == {k: repr(v) for k, v in zip(KEYS, (1.0, 2.0, 3.0))}


def test_equal_step_and_timestamp_break_ties_on_value(client, experiment_id, store):
    same = [1_700_000_000_000, 1_700_000_000_000]
    reference, sql = write_both(client, experiment_id, store, [block([7, 7], [[1.0, 5.0, -1.0], [2.0, 4.0, -2.0]], timestamps=same)])
    assert sql == reference
    assert sql[0] == {"loss": repr(2.0), "grad/w1_1_1": repr(5.0), "param/b1_1": repr(-1.0)}


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.tuples(finite_or_not, finite_or_not, finite_or_not), min_size=1, max_size=6),
    steps=st.lists(st.integers(0, 5), min_size=6, max_size=6),
)
def test_any_values_and_steps_read_back_as_log_batch_leaves_them(client, experiment_id, store, values, steps):
    rows = len(values)
    # Distinct timestamps keep every row a distinct primary key, as the tracker's rows are.
    b = block(steps[:rows], values, timestamps=[1_700_000_000_000 + i for i in range(rows)])
    reference, sql = write_both(client, experiment_id, store, [b])
    assert sql == reference


def test_a_block_written_twice_is_deduplicated_by_log_batch(client, experiment_id, store):
    run_id = new_run(client, experiment_id)
    sink = SqlMetricSink(store, run_id, client)
    assert sink(block([0, 1], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])) == 6
    sink(block([0, 1], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))  # the primary key rejects the copy; log_batch skips it
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [0, 1]
    assert sink.calls == 1 and sink.fallback.calls == 1


def test_a_deleted_run_gets_no_rows(client, experiment_id, store):
    run_id = new_run(client, experiment_id)
    client.delete_run(run_id)
    with pytest.raises(RuntimeError, match=f"run {run_id} must be in the 'active' state.*deleted"):
        SqlMetricSink(store, run_id, client)(block([0], [[1.0, 2.0, 3.0]]))
    client.restore_run(run_id)
    assert client.get_metric_history(run_id, "loss") == []


def test_writer_setting_is_validated_in_one_line(store):
    with pytest.raises(ConfigError, match=r"^logger.buffer.writer must be one of auto, sql, log_batch, got 'fast'$"):
        TrackingSettings.from_mapping({"name": "mlflow", "buffer": {"writer": "fast"}})
    with pytest.raises(ConfigError, match=r"writer=sql writes into a sqlite or PostgreSQL store's tables, but the tracking URI is http://127\.0\.0\.1:9/"):
        check_tracking({"name": "mlflow", "tracking_uri": "http://127.0.0.1:9/", "buffer": {"writer": "sql"}})
    # a password never reaches the error line
    with pytest.raises(ConfigError, match=r"tables, but the tracking URI is mysql://me:\*\*\*@127\.0\.0\.1:9/db; use logger.buffer.writer=auto or log_batch$"):
        check_tracking({"name": "mlflow", "tracking_uri": "mysql://me:secret@127.0.0.1:9/db", "buffer": {"writer": "sql"}})


@pytest.mark.parametrize(("writer", "sink"), [("auto", SqlMetricSink), ("sql", SqlMetricSink), ("log_batch", LogBatchSink)])
def test_a_tracked_run_uses_the_chosen_writer_and_logs_the_same(client, store, writer, sink):
    net = bp.build_network([3, 4, 1], "sigmoid", initializer={"name": "legacy_randn", "seed": 3, "scale": 0.1})
    context = RunContext(config={"optimizer": {"name": "sgd", "lr": 0.5}}, network=net, components=[], epochs=3)
    logger = {"name": "mlflow", "tracking_uri": store, "experiment_name": f"writer-{writer}", "buffer": {"writer": writer}}
    with track_run(context, logger) as tracker:
        bp.build_trainer(net, loss="bce", optimizer={"name": "sgd", "lr": 0.5}, batch_size=1, epochs=3, callbacks=[tracker]).fit(
            np.array([[7.0, 8.0, 10.0]]), np.array([1.0])
        )
    assert isinstance(tracker.writer.sink, sink)
    run = client.get_run(tracker.writer.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "grad/w2_1_1")] == [0, 1, 2]
    # the article's second prediction follows from these parameters: every writer must agree
    assert run.data.metrics["batch/loss"] == pytest.approx(-math.log(0.758), abs=2e-3)


@pytest.mark.parametrize(
    ("uri", "direct"),
    [
        ("sqlite:///mlflow.db", True),
        ("sqlite:////abs/path/mlflow.db", True),
        ("sqlite://", False),
        ("sqlite:///:memory:", False),
        ("http://127.0.0.1:5000", False),
        ("postgresql://user@host/db", True),
        ("postgresql+psycopg://user@host/db", True),
        ("postgresql+psycopg2://user@host/db", True),
        ("mysql://user@host/db", False),
    ],
)
def test_only_sqlite_files_and_postgresql_are_written_directly(uri, direct):
    from backproplab.tracking.transport.sql_writer import supports_sql_writer

    assert supports_sql_writer(uri) is direct


def test_a_write_cut_short_by_ctrl_c_is_sent_again_at_close(client, experiment_id, store):
    from backproplab.tracking.transport.buffer import BatchWriter

    run_id = new_run(client, experiment_id)
    sql = SqlMetricSink(store, run_id, client)
    interrupted = []

    def sink(block):
        if not interrupted:  # the first write is interrupted inside its transaction
            interrupted.append(True)
            with sql._engine.begin() as conn:
                conn.exec_driver_sql(sql._insert_sql, [("loss", 9.0, 1, 99, False, run_id)])
                raise KeyboardInterrupt
        return sql(block)

    writer = BatchWriter(sink, run_id)
    with pytest.raises(KeyboardInterrupt):
        writer.submit(block([0, 1], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    assert client.get_metric_history(run_id, "loss") == []  # the transaction was rolled back
    writer.close()  # what track_run does on the way out of an interrupted run
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(0, 1.0), (1, 4.0)]
    assert writer.metrics_written == 6


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_during_the_transaction_waits_for_the_commit(client, experiment_id, store, signum):
    """The signal arrives mid-transaction; it is delivered after the commit, the store is not
    left locked, and a resend of the same block writes nothing twice."""
    import os
    import signal

    from backproplab.tracking.transport.signals import InterruptGuard

    run_id = new_run(client, experiment_id)
    sink = SqlMetricSink(store, run_id, client)
    original = sink._update_latest

    def update_then_signal(conn, latest):
        os.kill(os.getpid(), getattr(signal, signum))  # lands inside the open transaction
        original(conn, latest)

    sink._update_latest = update_then_signal
    b = block([0, 1], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    with InterruptGuard() as guard, pytest.raises(KeyboardInterrupt):
        guard.interrupting()  # as while a run trains
        sink(b)
    assert sink.calls == 1
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [0, 1]
    client.set_tag(run_id, "still", "writable")  # MLflow's own connection is not locked out
    sink._update_latest = original
    assert sink(b) == 6 and sink.calls == 1  # the resend after the interrupt is a no-op
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [0, 1]
