"""``mlflow server --app-name backproplab`` (tracking/transport/server_app.py), a real server on 127.0.0.1
over a sqlite file and over the session's real PostgreSQL: a run's metrics go one call per flush
and the store holds exactly what MLflow's ``log_batch`` would have stored; duplicates, bad bodies,
a missing or finished run, and the server's loss are handled as through ``log_batch``; the rest
of MLflow's server (UI, REST API) is unchanged, and a plain server is never sent the call.
"""

from __future__ import annotations

import itertools
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from backproplab.tracking.transport import server_app, upload
from backproplab.tracking.transport.buffer import Block

sys.path.insert(0, str(Path(__file__).parent))
from servers import MlflowServer  # noqa: E402
from test_cluster_uploads import EPOCHS, ODD_VALUES, SAMPLES, BATCH, history, stored, train  # noqa: E402

pytestmark = pytest.mark.slow

_databases = itertools.count()


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('reference')}/reference.db"
    run_id, _sink = train(uri, writer="log_batch")
    return stored(uri, run_id)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def app_server(request, tmp_path_factory):
    """One app server per store for the module: each test makes its own experiment and runs."""
    tmp = tmp_path_factory.mktemp(f"app-{request.param}")
    if request.param == "sqlite":
        store = f"sqlite:///{tmp}/server.db"
    else:
        store = request.getfixturevalue("postgres").create_database(f"server_app_{next(_databases)}")
    with MlflowServer(store, tmp / "server", options=["--app-name", "backproplab"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def sqlite_app(tmp_path_factory):
    """One app server for the tests that only send it calls it refuses."""
    tmp = tmp_path_factory.mktemp("refusals")
    with MlflowServer(f"sqlite:///{tmp}/server.db", tmp / "server", options=["--app-name", "backproplab"]) as srv:
        yield srv


def odd_block() -> Block:
    """Values protobuf's JSON would spell specially, steps beyond 32 bits, and extras."""
    values = np.array([ODD_VALUES[:3], ODD_VALUES[3:6], ODD_VALUES[6:9]], dtype=np.float64)
    steps = np.array([2**40, 2**40 + 1, 2**40 + 2], dtype=np.int64)
    timestamps = np.array([1_700_000_000_123] * 3, dtype=np.int64)
    extra = [("odd/extra nan", float("nan"), 1_700_000_000_999, 7), ("odd/extra", -0.0, 1_700_000_000_999, 7)]
    return Block(("odd/a", "odd/b", "odd/c"), steps, timestamps, values, extra)


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url + server_app.BLOCK_ENDPOINT, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.lowest_deps
def test_a_run_through_the_app_stores_what_log_batch_stores_one_call_per_flush(app_server, produced):
    run_id, sink = train(app_server.url)

    assert sink.blocks.available is True
    assert sink.uploads.calls == 0  # no log_batch at all
    assert 1 <= sink.blocks.calls <= 2 + EPOCHS * SAMPLES // BATCH * 50 // 10_000  # one per flush
    expected_history, expected_latest = produced
    got_history, got_latest = stored(app_server.url, run_id)
    assert got_history == expected_history  # every point once, same steps, bit-identical values
    assert got_latest == expected_latest


def test_odd_values_land_as_log_batch_lands_them(app_server):
    client = MlflowClient(app_server.url)
    experiment = client.create_experiment("odd values")
    ours, theirs = client.create_run(experiment).info.run_id, client.create_run(experiment).info.run_id
    blocks = upload.BlockUploads(client)
    assert blocks.usable()
    block = odd_block()
    assert blocks.send(ours, block) == block.n_metrics == 11
    client.log_batch(theirs, metrics=block.metrics(), synchronous=True)

    assert history(client, ours) == history(client, theirs)
    assert client.get_run(ours).data.metrics.keys() == client.get_run(theirs).data.metrics.keys()
    for key, value in client.get_run(theirs).data.metrics.items():
        assert repr(client.get_run(ours).data.metrics[key]) == repr(value), key


def test_a_block_sent_twice_is_stored_once_and_a_new_point_beside_it_still_lands(app_server):
    client = MlflowClient(app_server.url)
    run_id = client.create_run(client.create_experiment("twice")).info.run_id
    blocks = upload.BlockUploads(client)
    block = odd_block()
    blocks.send(run_id, block)
    first = history(client, run_id)
    assert blocks.send(run_id, block) == block.n_metrics  # an interrupted send, resent
    assert history(client, run_id) == first
    # A resent block with one new row: the new row lands, the old ones stay single.
    grown = Block(block.keys, np.append(block.steps, 2**41), np.append(block.timestamps_ms, 1), np.vstack([block.values, [1.0, 2.0, 3.0]]), block.extra)
    blocks.send(run_id, grown)
    after = history(client, run_id)
    assert sorted(after["odd/a"]) == sorted(first["odd/a"] + [(2**41, 1, "1.0")])
    assert client.get_run(run_id).data.metrics["odd/c"] == 3.0  # the latest value: the highest step's


@pytest.mark.parametrize(
    "body, says",
    [
        (b"not json", "log-block"),
        (b'{"protocol": 99}', "'protocol' is 99"),
        (json.dumps({"protocol": 1, "run_id": "r", "keys": ["a"], "steps": "AAAAAAAAAAA=", "timestamps": "", "values": ""}).encode(), "do not make rows"),
        (json.dumps({"protocol": 1, "run_id": "r", "keys": ["bad\nkey"], "steps": "", "timestamps": "", "values": ""}).encode(), "Names may only contain"),
        (json.dumps({"protocol": 1, "run_id": "r", "keys": [], "steps": "", "timestamps": "", "values": "", "extra": [["k", "x", 1, 1]]}).encode(), "could not convert"),
        (server_app.block_body("r", Block(("a",), np.array([0]), np.array([-1]), np.array([[1.0]]))).encode(), "nonnegative"),
    ],
)
def test_a_bad_body_is_refused_in_one_line(sqlite_app, body, says):
    status, answer = post(sqlite_app.url, body)
    assert status == 400
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert says in answer["message"] and "\n" not in answer["message"].replace("bad\nkey", "")


def test_a_missing_or_finished_run_is_refused_as_log_batch_refuses_it(app_server):
    from mlflow.exceptions import MlflowException

    client = MlflowClient(app_server.url)
    blocks = upload.BlockUploads(client)
    with pytest.raises(MlflowException) as missing:
        blocks.send("0" * 32, odd_block())
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    run_id = client.create_run(client.create_experiment("finished")).info.run_id
    client.delete_run(run_id)
    with pytest.raises(MlflowException) as deleted:
        blocks.send(run_id, odd_block())
    assert deleted.value.error_code == "INVALID_PARAMETER_VALUE" and "active" in deleted.value.message
    assert client.get_metric_history(run_id, "odd/a") == []


def test_the_rest_of_mlflows_server_is_unchanged(app_server):
    with urllib.request.urlopen(app_server.url + "/", timeout=60) as page:
        assert page.status == 200 and b"<html" in page.read().lower()
    with urllib.request.urlopen(app_server.url + server_app.SERVER_ENDPOINT, timeout=60) as answer:
        said = json.loads(answer.read())
    assert said["app"] == "backproplab" and said["protocol"] == server_app.PROTOCOL and said["log_block"] is True


def test_a_plain_server_and_writer_log_batch_get_mlflows_call(tmp_path):
    from backproplab.tracking.transport.spool import Spool, SpoolingSink

    with MlflowServer(f"sqlite:///{tmp_path}/plain.db", tmp_path / "plain") as plain:
        assert upload.BlockUploads(MlflowClient(plain.url)).usable() is False
    with MlflowServer(f"sqlite:///{tmp_path}/app.db", tmp_path / "app", options=["--app-name", "backproplab"]) as srv:
        client = MlflowClient(srv.url)
        run_id = client.create_run(client.create_experiment("forced")).info.run_id
        sink = SpoolingSink(client, run_id, srv.url, Spool(tmp_path / "spool.jsonl", run_id, srv.url), stop=False, server_app=False)
        assert sink(odd_block()) == 11
        assert sink.blocks.calls == 0 and sink.uploads.calls == 1
    assert upload.BlockUploads(MlflowClient(f"sqlite:///{tmp_path}/m.db")).usable() is False


def test_a_lost_app_server_spools_the_block_and_the_run_writes_it_when_the_server_is_back(tmp_path, capsys):
    from backproplab.tracking.transport.spool import Spool, SpoolingSink, bounded_http

    srv = MlflowServer(f"sqlite:///{tmp_path}/server.db", tmp_path / "server", options=["--app-name", "backproplab"]).start()
    with bounded_http():  # a run's HTTP retry limits, as track_run sets them
        try:
            client = MlflowClient(srv.url)
            run_id = client.create_run(client.create_experiment("lost")).info.run_id
            sink = SpoolingSink(client, run_id, srv.url, Spool(tmp_path / "spool.jsonl", run_id, srv.url), stop=False)
            assert sink.blocks.usable()
            srv.stop()
            assert sink(odd_block()) == 0
            assert sink.lost and sink.spooled == 11
            assert "stopped answering" in capsys.readouterr().err
            srv.start()  # the same port and store
            later = odd_block()
            later = Block(later.keys, later.steps + 10, later.timestamps_ms, later.values, [])
            assert sink(later) == 9  # the spool first, then this block, through the app
            assert not sink.lost and "answers again; 11 spooled metrics written" in capsys.readouterr().err
            assert sink.blocks.calls == 1
            assert len(MlflowClient(srv.url).get_metric_history(run_id, "odd/a")) == 6
        finally:
            srv.stop()


def test_a_block_above_one_calls_ceiling_goes_in_pieces_of_whole_rows():
    rows, keys = 7, 3
    block = Block(
        ("a", "b", "c"), np.arange(rows, dtype=np.int64), np.full(rows, 5, dtype=np.int64),
        np.arange(rows * keys, dtype=np.float64).reshape(rows, keys), [("x", 1.0, 5, 0), ("y", 2.0, 5, 0)],
    )
    parts = server_app.pieces(block, limit=7)
    assert all(p.n_metrics <= 7 for p in parts)
    assert [m for p in parts for m in p.metrics()] == sorted(block.metrics(), key=lambda m: m.key in ("x", "y"))
    assert server_app.pieces(block, limit=100) == [block]


def test_the_body_round_trips_exactly():
    block = odd_block()
    run_id, back = server_app.parse_block(json.loads(server_app.block_body("r1", block)))
    assert run_id == "r1" and back.keys == block.keys and back.extra[1][1] == -0.0
    assert [(m.key, repr(m.value), m.timestamp, m.step) for m in back.metrics()] == [(m.key, repr(m.value), m.timestamp, m.step) for m in block.metrics()]


def test_a_server_restarted_without_the_app_mid_run_gets_log_batch(tmp_path, capsys):
    from backproplab.tracking.transport.spool import Spool, SpoolingSink, bounded_http

    store = f"sqlite:///{tmp_path}/server.db"
    app = MlflowServer(store, tmp_path / "app", options=["--app-name", "backproplab"]).start()
    plain = MlflowServer(store, tmp_path / "plain")
    plain.port, plain.url = app.port, app.url  # the same address, as an operator's restart keeps it
    with bounded_http():
        try:
            client = MlflowClient(app.url)
            run_id = client.create_run(client.create_experiment("restarted")).info.run_id
            sink = SpoolingSink(client, run_id, app.url, Spool(tmp_path / "spool.jsonl", run_id, app.url), stop=False)
            assert sink(odd_block()) == 11 and sink.blocks.calls == 1
            app.stop()
            plain.start()
            later = odd_block()
            later = Block(later.keys, later.steps + 10, later.timestamps_ms, later.values, [])
            assert sink(later) == 9
            assert sink.blocks.available is False and sink.uploads.calls == 1 and not sink.lost
            assert "no longer runs backproplab's app (HTTP 404" in capsys.readouterr().err
            assert len(client.get_metric_history(run_id, "odd/a")) == 6
        finally:
            app.stop()
            plain.stop()
