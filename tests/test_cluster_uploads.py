"""Several ``log_batch`` calls in flight to a real ``mlflow server`` (tracking/transport/upload.py) store
exactly what the run produced: every point of every metric once, with its value and step, and
the latest value of each metric (MLflow's ``latest_metrics`` bookkeeping, which concurrent
batches update under row locks) equal to the one of the highest step.

"What the run produced" is the same seeded training written to a local sqlite store with
MLflow's own ``log_batch``, one call after another. The servers are real, on 127.0.0.1: one on a
sqlite file, one on the session's real PostgreSQL (tests/servers.py).
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

import backproplab as bp
from backproplab.run.context import RunContext
from backproplab.tracking import track_run
from backproplab.tracking.transport import upload

sys.path.insert(0, str(Path(__file__).parent))
from servers import MlflowServer, Proxy, http_serving  # noqa: E402

pytestmark = pytest.mark.slow

EPOCHS = 100
SAMPLES, BATCH = 8, 2  # 4 iterations per epoch: 400 iterations of 50 metrics, about 21 chunks of 1000


def train(uri: str, writer: str = "auto") -> tuple[str, object]:
    """One seeded run tracked to ``uri``; (run id, the run's sink)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(SAMPLES, 3)), (rng.random(SAMPLES) > 0.5).astype(float)
    net = bp.build_network([3, 4, 1], "sigmoid", initializer={"name": "legacy_randn", "seed": 3, "scale": 0.1})
    trainer_args = dict(loss="bce", optimizer={"name": "sgd", "lr": 0.5}, batch_size=BATCH, epochs=EPOCHS, shuffle=True, seed=0)
    config = {"trainer": {"batch_size": BATCH, "epochs": EPOCHS}, "optimizer": trainer_args["optimizer"]}
    context = RunContext(config=config, network=net, components=[], epochs=EPOCHS, iterations_per_epoch=SAMPLES // BATCH)
    logger = {
        "name": "mlflow", "tracking_uri": uri, "experiment_name": "uploads",
        "log_model": False, "images": {"enabled": False}, "buffer": {"writer": writer},
    }
    with track_run(context, logger) as tracker:
        bp.build_trainer(net, callbacks=[tracker], **trainer_args).fit(X, y)
    return tracker.writer.run_id, tracker.writer.sink


def stored(uri: str, run_id: str) -> tuple[dict[str, list[tuple[int, float]]], dict[str, float]]:
    """({key: sorted (step, value) of every stored point}, {key: latest value}) of one run."""
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    history = {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in run.data.metrics}
    return history, dict(run.data.metrics)


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('reference')}/reference.db"
    run_id, _sink = train(uri, writer="log_batch")
    return stored(uri, run_id)


_databases = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request, tmp_path):
    if request.param == "sqlite":
        store = f"sqlite:///{tmp_path}/server.db"
    else:
        # One database per test: the PostgreSQL server is the session's.
        store = request.getfixturevalue("postgres").create_database(f"uploads_{next(_databases)}")
    with MlflowServer(store, tmp_path / "server") as srv:
        yield srv


def test_concurrent_uploads_store_every_point_once_and_the_right_latest_value(server, produced):
    run_id, sink = train(server.url)

    # The uploads did overlap: as many chunks in flight as the default allows.
    assert sink.uploads.max_in_flight == upload.IN_FLIGHT > 1
    assert sink.calls >= 4 * upload.IN_FLIGHT

    expected_history, expected_latest = produced
    history, latest = stored(server.url, run_id)
    assert history.keys() == expected_history.keys()
    assert len(history["batch/loss"]) == EPOCHS * SAMPLES // BATCH
    for key, points in expected_history.items():
        assert history[key] == points, key  # every point once, same steps, bit-identical values
    assert latest == expected_latest
    for key, points in history.items():
        assert latest[key] == points[-1][1], key  # the highest step's value, whatever arrived last


# Values protobuf's JSON mapping treats specially (non-finite doubles become strings), and
# integers beyond 32 bits in the int64 fields.
ODD_VALUES = [0.0, -0.0, 1e-320, 1.7976931348623157e308, float("nan"), float("inf"), float("-inf"), 3, 0.1 + 0.2]


def history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, int, str]]]:
    """Every stored point of each of the run's metrics, in the store's order."""
    out = {}
    for key in client.get_run(run_id).data.metrics:
        points = client.get_metric_history(run_id, key)
        out[key] = [(p.step, p.timestamp, repr(p.value)) for p in points]  # repr: nan == nan, -0.0 != 0.0
    return out


def odd_metrics() -> list:
    from mlflow.entities import Metric

    return [Metric(f"odd/{i}", v, 1_700_000_000_123 + i, 2**40 + i) for i, v in enumerate(ODD_VALUES)]


def test_the_compact_body_is_the_request_mlflows_client_sends():
    from mlflow.protos.service_pb2 import LogBatch
    from mlflow.utils.proto_json_utils import message_to_json

    metrics = odd_metrics()
    ours = json.loads(upload.log_batch_body("r1", metrics))
    theirs = json.loads(message_to_json(LogBatch(run_id="r1", metrics=[m.to_proto() for m in metrics])))
    assert ours == theirs


def test_odd_values_reach_the_server_as_mlflows_client_sends_them(server):
    client = MlflowClient(server.url)
    experiment = client.create_experiment("odd values")
    ours, theirs = client.create_run(experiment).info.run_id, client.create_run(experiment).info.run_id
    post = upload.rest_log_batch(client)
    assert post is not None  # an http:// server: the compact request is the one used
    post(ours, odd_metrics())
    client.log_batch(theirs, metrics=odd_metrics(), synchronous=True)

    assert history(client, ours) == history(client, theirs)
    assert len(history(client, ours)) == len(ODD_VALUES)


def test_a_refused_compact_request_raises_mlflows_error(server):
    from mlflow.exceptions import MlflowException

    client = MlflowClient(server.url)
    post = upload.rest_log_batch(client)
    with pytest.raises(MlflowException) as compact:
        post("0" * 32, odd_metrics())  # no such run
    with pytest.raises(MlflowException) as official:
        client.log_batch("0" * 32, metrics=odd_metrics(), synchronous=True)
    assert compact.value.error_code == official.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_only_an_http_server_gets_the_compact_request(tmp_path):
    assert upload.rest_log_batch(MlflowClient(f"sqlite:///{tmp_path}/m.db")) is None
    assert upload.rest_log_batch(object()) is None  # a stand-in client: its own log_batch is used


def test_a_replay_sends_every_chunk_concurrently_and_raises_the_first_failure(server, monkeypatch):
    """``runs replay`` and a resumed run write a spool with ``upload.send_all``."""
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    used = []

    class Watched(upload.ParallelUploads):
        def close(self):
            used.append((self.max_in_flight, self.backed_off))
            super().close()

    monkeypatch.setattr(upload, "ParallelUploads", Watched)
    client = MlflowClient(server.url)
    run_id = client.create_run(client.create_experiment("replay")).info.run_id
    metrics = [Metric(f"m{i % 7}", float(i), 1_700_000_000_000 + i, i // 7) for i in range(5_500)]
    upload.send_all(client, run_id, metrics, 500)
    assert used == [(upload.IN_FLIGHT, None)]  # 11 chunks to a server: the uploads overlapped
    upload.send_all(client, run_id, metrics, 500)  # replayed twice: the store skips what it holds
    for key in (f"m{k}" for k in range(7)):
        points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert points == sorted((m.step, m.value) for m in metrics if m.key == key), key
    with pytest.raises(MlflowException):
        upload.send_all(client, "0" * 32, metrics, 500)
    assert used[-1][1] is None  # a refusal (no such run) is not sent again one at a time


class _OneCallAtATime(Proxy):
    """Turns away (503) every call that arrives while another is in progress, as a proxy's
    concurrency limit or a busy single-worker server does; forwards the others."""

    def refuse(self, body: bytes) -> int | None:
        with self.server.lock:
            if self.server.in_progress:
                self.server.turned_away += 1
                return 503
            self.server.in_progress += 1
        return None

    def done(self) -> None:
        with self.server.lock:
            self.server.in_progress -= 1


def test_a_server_that_turns_concurrent_calls_away_gets_them_one_at_a_time(tmp_path, produced, capsys, monkeypatch):
    """Without retries, the run's first concurrent calls fail; the run sends them again one at a
    time, keeps to one call at a time, says so once, and stores exactly what it produced."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a setting the run keeps: the user's
    monkeypatch.chdir(tmp_path)  # a spool, if the run needed one, is the test's
    with MlflowServer(f"sqlite:///{tmp_path}/server.db", tmp_path / "server") as srv:
        with http_serving(_OneCallAtATime, upstream=srv.port, lock=threading.Lock(), in_progress=0, turned_away=0) as proxy:
            url = f"http://127.0.0.1:{proxy.server_address[1]}"
            run_id, sink = train(url)
            turned_away = proxy.turned_away
        history, latest = stored(srv.url, run_id)
    assert turned_away >= 1
    assert sink.uploads.in_flight == 1 and "too many 503 error responses" in str(sink.uploads.backed_off)
    notes = [line for line in capsys.readouterr().err.splitlines() if "one call at a time" in line]
    assert len(notes) == 1 and f"failed calls sent {upload.IN_FLIGHT} at a time" in notes[0], notes
    assert not sink.lost and sink.spooled == 0
    assert (history, latest) == produced


def test_an_upload_waits_out_a_server_that_answers_late(tmp_path, monkeypatch):
    """A server stopped (SIGSTOP) for longer than MLFLOW_HTTP_REQUEST_TIMEOUT still gets the
    call stored once, without a resend: connecting keeps the short timeout, the answer gets
    ``upload.LOG_BATCH_READ_TIMEOUT_S``. The kernel accepts the connection of a stopped process."""
    import os
    import signal
    import threading
    import time

    from mlflow.entities import Metric

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with MlflowServer(f"sqlite:///{tmp_path}/server.db", tmp_path / "server") as srv:
        client = MlflowClient(srv.url)
        run_id = client.create_run(client.create_experiment("late")).info.run_id
        post = upload.rest_log_batch(client)
        chunk = [Metric("late", float(i), 1_700_000_000_000 + i, i) for i in range(1000)]
        outcome: list = []
        os.killpg(srv.proc.pid, signal.SIGSTOP)
        try:
            sender = threading.Thread(target=lambda: outcome.append(post(run_id, chunk) or "stored"))
            sender.start()
            time.sleep(3)  # three times the timeout the call would have had
            assert sender.is_alive()
        finally:
            os.killpg(srv.proc.pid, signal.SIGCONT)
        sender.join(timeout=120)
        assert outcome == ["stored"]
        assert [m.step for m in client.get_metric_history(run_id, "late")] == list(range(1000))
        assert (srv.root / "server.log").read_text().count("runs/log-batch") == 1  # no resend


def test_a_block_sent_again_after_an_interruption_sends_only_what_was_not_stored(tmp_path):
    """Ctrl-C (a real SIGINT) lands while a block's chunks are in flight; the writer sends the
    block again, as it does at the next flush or at close. Every chunk reaches the server once:
    a chunk sent twice costs MLflow's duplicate recovery, minutes on a big sqlite-backed run."""
    import os
    import signal
    import threading
    import time

    from backproplab.tracking.transport.buffer import Block
    from backproplab.tracking.transport.spool import Spool, SpoolingSink, spool_path

    keys, steps = tuple(f"k{j:02d}" for j in range(50)), 800  # 40 chunks of 1000
    rng = np.random.default_rng(1)
    block = Block(keys, np.arange(steps, dtype=np.int64), 1_700_000_000_000 + np.arange(steps, dtype=np.int64), rng.normal(size=(steps, len(keys))))
    with MlflowServer(f"sqlite:///{tmp_path}/server.db", tmp_path / "server") as srv:
        client = MlflowClient(srv.url)
        run_id = client.create_run(client.create_experiment("interrupted")).info.run_id
        sink = SpoolingSink(client, run_id, srv.url, Spool(spool_path(tmp_path, run_id), run_id, srv.url), stop=False)

        def interrupt_once_some_are_stored() -> None:
            while sink.calls < 5:
                time.sleep(0.005)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt_once_some_are_stored, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            sink(block)
        stored_before = sink.calls
        written = sink(block)
        sink.close()
        posts = (srv.root / "server.log").read_text().count("runs/log-batch")
        history = {key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)] for key in keys}
    assert 5 <= stored_before < 40
    assert posts == sink.calls == 40  # each chunk once, none sent again
    assert written == 40_000  # the interrupted send counted nothing: the resend counts the block
    for column, key in enumerate(keys):
        assert sorted(history[key]) == [(step, block.values[step, column]) for step in range(steps)], key
    assert not sink.lost and not sink.spool.path.exists()
