"""Several ``log_batch`` calls to a tracking server in flight at once.

Why: profiled on a PostgreSQL-backed ``mlflow server`` (benchmarks/bench_cluster.py), a
``log_batch`` of 1000 metrics takes the server's Python far less CPU time than wall time on a
shared machine: the rest is waiting (on PostgreSQL's inserts and its
fsync at commit, on the scheduler). One call after another leaves the server idle while the
client waits and the client idle while the server works; with a few calls in flight the server's
worker, the database and the client overlap. Nothing here goes around MLflow's server: every
call is MLflow's REST ``runs/log-batch``, sent by MLflow's HTTP helper (``rest_log_batch``) or by
``MlflowClient.log_batch``, except ``BlockUploads``' one call per block to a server that runs
backproplab's own MLflow server app (``server_app``) and says so.

Why it is safe, from how MLflow's ``SqlAlchemyStore.log_batch`` writes a batch (one transaction):

* ``metrics`` rows are keyed by (run, key, timestamp, step, value, is_nan). Distinct points never
  collide, and a point sent twice (a chunk resent after an interruption) is skipped by the store.
* ``latest_metrics`` holds one row per (run, key). The first batch that carries a key inserts
  it; later batches lock the existing rows (``SELECT ... FOR UPDATE`` in PostgreSQL, the single
  writer lock in sqlite), in sorted key order, and keep the greatest (step, timestamp, value),
  so the order in which batches arrive does not change the stored latest value. Two concurrent
  batches that both *introduce* a key would both insert its row and one would fail on the
  primary key. So a chunk that carries a key no finished upload has carried yet waits until
  nothing else is in flight and goes alone; once it is stored, its keys may travel concurrently.
  A run introduces keys only in its first chunk, at its first epoch end and with its final
  metrics, so almost every chunk travels concurrently.

Memory stays bounded: at most ``in_flight`` chunks (1000 metrics each) are being uploaded
besides the block the caller holds anyway.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Sequence

from mlflow.entities import Metric

from .. import mlflow_private
from .buffer import Block
from .reachability import is_http

# Four calls in flight: benchmarks/bench_cluster.py compares 1, 2, 4 and 8 against 1- and
# 2-worker servers; beyond two or three the gain flattens, and each extra call holds one more
# chunk and one more database connection on the server.
IN_FLIGHT = 4


LOG_BATCH_ENDPOINT = "/api/2.0/mlflow/runs/log-batch"


def _json_number(value: float) -> float | str:
    # Protobuf's JSON mapping, which MLflow's server parses: non-finite doubles are strings.
    value = float(value)
    if math.isfinite(value):
        return value
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def log_batch_body(run_id: str, chunk: Sequence[Metric]) -> str:
    """The JSON body of MLflow's REST ``runs/log-batch`` for ``chunk``: what ``MlflowClient.log_batch``
    sends for plain metrics, without its pretty-printing."""
    metrics = [
        {"key": m.key, "value": _json_number(m.value), "timestamp": int(m.timestamp), "step": int(m.step)} for m in chunk
    ]
    return json.dumps({"run_id": run_id, "metrics": metrics}, separators=(",", ":"), allow_nan=False)


# "Connection: close": a kept-alive connection stays with the server worker process that
# accepted it, so a job's few connections can pin its uploads to one or two of a multi-worker
# server's processes, unevenly. A new connection per call goes to whichever worker accepts first,
# an idle one, which spreads the work and shortens the run's uploads; the handshake is small
# against the call's own time.
_HEADERS = {"Content-Type": "application/json", "Connection": "close"}

# How long a metric upload waits for the server's answer once connected (connecting keeps
# MLFLOW_HTTP_REQUEST_TIMEOUT, 10 s in a run: a dead server is still noticed in seconds). Why:
# a call that times out is often stored all the same, and its resend then takes MLflow's
# duplicate recovery, which on a sqlite-backed server grows with the run (see ParallelUploads);
# in CI a just-restarted server, cold and busy, took over 10 s over its first calls, and the
# resends of those kept it busy for minutes. A server that hangs costs ~3 minutes (three tries).
LOG_BATCH_READ_TIMEOUT_S = 60


def _timeouts() -> tuple[float, float]:
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_TIMEOUT

    connect = float(MLFLOW_HTTP_REQUEST_TIMEOUT.get())
    return connect, max(connect, LOG_BATCH_READ_TIMEOUT_S)


def rest_log_batch(client: Any) -> Callable[[str, Sequence[Metric]], None] | None:
    """A ``log_batch`` of metrics that POSTs MLflow's documented REST call itself, or None where
    the client's own call must be used (not an http(s) server, or an MLflow without the helpers).

    Why: profiled against a real server (benchmarks/bench_cluster.py), ``MlflowClient.log_batch``
    spends much of the job's CPU per metric turning entities into protobuf and then into
    indented JSON (``json.dumps(indent=2)``, Python's slow encoder), on the same cores the server
    needs. This body is the same request, compact, built at a small fraction of that cost. It goes through MLflow's own ``http_request``
    with the credentials MLflow's REST store reads (``get_default_host_creds``), so retries,
    timeouts, TLS and auth settings, and the errors a refused or lost call raises, are MLflow's.
    """
    uri = getattr(client, "tracking_uri", None)
    if not is_http(uri):
        return None
    if not mlflow_private.rest_available():  # pragma: no cover - an MLflow that moved them: its client still works
        return None

    def post(run_id: str, chunk: Sequence[Metric]) -> None:
        if any(getattr(m, "model_id", None) or getattr(m, "dataset_name", None) for m in chunk):
            client.log_batch(run_id, metrics=list(chunk), synchronous=True)  # fields this body does not carry
            return
        response = mlflow_private.rest_call(
            uri, LOG_BATCH_ENDPOINT, "POST", data=log_batch_body(run_id, chunk), extra_headers=_HEADERS, timeout=_timeouts()
        )
        mlflow_private.verify_rest_response(response, LOG_BATCH_ENDPOINT)

    return post


class AppGone(Exception):
    """The server no longer has backproplab's app (restarted without it): use ``log_batch``."""


class BlockUploads:
    """A whole block in one call, to a server running backproplab's app (``mlflow server
    --app-name backproplab``, ``tracking.server_app``); ``usable()`` is False for any other.

    Why: through MLflow's ``log_batch`` the server's CPU per metric bounds a job's speed (see
    ``server_app``); the app stores a flush of ~10,000 metrics in one transaction. The server is
    asked once whether it has the app; a server that cannot be asked (lost for now) is asked
    again at the next flush, so a run that starts during an outage still finds it.
    """

    def __init__(self, client: Any, *, enabled: bool = True) -> None:
        self.uri = getattr(client, "tracking_uri", None)
        self.available: bool | None = None if enabled and is_http(self.uri) else False
        self.calls = 0

    def usable(self) -> bool:
        if self.available is None:
            from .server_app import PROTOCOL, SERVER_ENDPOINT

            try:
                response = mlflow_private.rest_call(self.uri, SERVER_ENDPOINT, "GET", max_retries=0, timeout=_timeouts()[0])
            except Exception:  # noqa: BLE001 - unreachable for now: log_batch's path says so, and asks again next time
                return False
            try:
                answer = response.json() if response.status_code == 200 else {}
            except ValueError:  # a plain server's UI page, or a proxy's
                answer = {}
            self.available = isinstance(answer, dict) and answer.get("protocol") == PROTOCOL and answer.get("log_block") is True
        return self.available

    def send(self, run_id: str, block: Block) -> int:
        """Metrics the server stored (the block's count; duplicates of an earlier send included);
        raises MLflow's errors, as a refused or lost ``log_batch`` does."""
        from .server_app import BLOCK_ENDPOINT, block_body, pieces

        for piece in pieces(block):
            response = mlflow_private.rest_call(
                self.uri, BLOCK_ENDPOINT, "POST", data=block_body(run_id, piece), extra_headers=_HEADERS, timeout=_timeouts()
            )
            if response.status_code == 501 or (response.status_code == 404 and not response.text.lstrip().startswith("{")):
                # Not the app's answer (it answers in MLflow's JSON): the route is gone, or the
                # store behind it is one it does not write.
                self.available = False
                raise AppGone(f"HTTP {response.status_code} from {BLOCK_ENDPOINT}")
            mlflow_private.verify_rest_response(response, BLOCK_ENDPOINT)
            self.calls += 1
        return block.n_metrics


def is_server_loss(exc: BaseException) -> bool:
    """A write that failed because the server is gone, broken or overloaded, not because it
    refused the data.

    MLflow raises ``MlflowException`` for both; a refusal carries a 4xx code (bad value, run not
    active), which sending again, later or more slowly, would not change.
    """
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return isinstance(exc, OSError)
    try:
        status = exc.get_http_status_code()
    except Exception:  # noqa: BLE001 - an unknown code: treat as the server's fault
        return True
    return not (400 <= status < 500)


def never_connected(exc: BaseException) -> bool:
    """The call did not reach the server at all (connection refused, or not accepted in time):
    the server is not there, and sending fewer calls at once would not change that."""
    from urllib3.exceptions import ConnectTimeoutError  # NewConnectionError is one

    seen: BaseException | None = exc
    for _ in range(10):  # MLflow's error, requests', urllib3's, the socket's: a short chain
        if seen is None:
            return False
        if isinstance(seen, (ConnectionRefusedError, ConnectTimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class NotSent:
    """Result of a chunk that was never sent because an earlier one failed."""

    def __repr__(self) -> str:
        return "NOT_SENT"


NOT_SENT = NotSent()


@dataclass
class _Upload:
    """One chunk on its way: where its outcome goes."""

    index: int
    keys: frozenset[str]
    stored: set[int]  # the caller's record of its chunks stored, kept across an interruption
    live: bool = True  # False once the send that started it was interrupted: nobody waits for its result


class ParallelUploads:
    """Sends chunks of one run's metrics with ``log_batch``, up to ``in_flight`` at once.

    ``send`` returns when every chunk it was given is stored, has failed, or was held back
    because an earlier one failed: the caller sees every failure, per chunk, as it did when
    chunks went one after another.

    A server that fails calls while several are in flight (a timeout, a 5xx; not a refused
    connection) gets the failed and held-back chunks again, one at a time, before any failure
    is returned, and one call at a time from then on (``backed_off`` holds the failure that
    made it so). Why: concurrent calls share one server worker, so each takes several times as
    long as it would alone; on a busy machine a single-worker server timed out on four at once
    (10 s read timeout) and answered each alone.
    Worse, a timed-out call is often stored all the same, and urllib3's retry of it then takes
    MLflow's duplicate-recovery path, which on a sqlite-backed server grows with the run (a call
    of 1000 resent: 21 s at 200,000 points, 83 s at 685,000; 1.6 s at 200,000 on PostgreSQL):
    every later call timed out behind it. Fewer calls at once make such timeouts rarer. A proxy
    that turns extra calls away (429, 503) is served the same way.
    """

    def __init__(self, client: Any, run_id: str, in_flight: int = IN_FLIGHT) -> None:
        self.client = client
        self.run_id = run_id
        self.in_flight = max(1, in_flight)
        self.known_keys: set[str] = set()  # keys a stored chunk carried: their latest_metrics rows exist
        self.calls = 0
        self.max_in_flight = 0  # the most uploads started and not yet settled at once (the tests check it)
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[Future, _Upload] = {}
        self._post = rest_log_batch(client)
        self.backed_off: BaseException | None = None

    def _log(self, chunk: list[Metric]) -> None:
        if self._post is not None:
            self._post(self.run_id, chunk)
        else:
            self.client.log_batch(self.run_id, metrics=chunk, synchronous=True)

    def send(self, chunks: Sequence[list[Metric]], stored: set[int] | None = None) -> list[BaseException | NotSent | None]:
        """One result per chunk: None (stored), the exception it failed with, or ``NOT_SENT``.

        ``stored`` is the caller's record of which chunks are stored: those in it are not sent,
        and every chunk stored is added to it, also one that lands after the send was
        interrupted. Sending the same chunks again with the same record after an interruption
        (Ctrl-C, SIGTERM) sends only what is missing: a chunk sent twice costs the server
        MLflow's duplicate recovery, which on sqlite grows with the run.
        """
        stored = set() if stored is None else stored
        results = self._send(chunks, stored)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is None or self.in_flight == 1 or not is_server_loss(failure) or never_connected(failure):
            return results
        self.in_flight, self.backed_off = 1, failure
        return self._send(chunks, stored)

    def _record(self, upload: _Upload) -> None:
        """One chunk stored: its keys' latest_metrics rows exist, and its caller knows."""
        self.known_keys |= upload.keys
        self.calls += 1
        upload.stored.add(upload.index)

    def _settle(self, future: Future) -> _Upload:
        upload = self._pending.pop(future)
        if future.exception() is None:
            self._record(upload)
        return upload

    def _send(self, chunks: Sequence[list[Metric]], stored: set[int]) -> list[BaseException | NotSent | None]:
        results: list[BaseException | NotSent | None] = [NOT_SENT] * len(chunks)
        failed = False

        def wait_until(limit: int) -> None:
            nonlocal failed
            while len(self._pending) > limit:
                done, _ = wait(list(self._pending), return_when=FIRST_COMPLETED)
                for future in done:
                    upload = self._settle(future)
                    if upload.live:
                        results[upload.index] = future.exception()
                        failed = failed or future.exception() is not None

        wait_until(0)  # the uploads of an interrupted send first: what they stored is not sent again
        try:
            for index, chunk in enumerate(chunks):
                if index in stored:
                    results[index] = None
                    continue
                keys = frozenset(m.key for m in chunk)
                alone = self.in_flight == 1 or not keys <= self.known_keys
                wait_until(0 if alone else self.in_flight - 1)
                if failed:
                    break
                if alone:
                    try:
                        self._log(chunk)
                    except Exception as exc:  # noqa: BLE001 - returned to the caller, per chunk
                        results[index] = exc
                        failed = True
                        break
                    results[index] = None
                    self._record(_Upload(index, keys, stored))
                    self.max_in_flight = max(self.max_in_flight, 1)
                else:
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix=f"mlflow-upload-{self.run_id[:8]}")
                    self._pending[self._pool.submit(self._log, chunk)] = _Upload(index, keys, stored)
                    self.max_in_flight = max(self.max_in_flight, len(self._pending))
            wait_until(0)
        except BaseException:
            # Interrupted while waiting (Ctrl-C): the uploads already started carry on and are
            # waited for by the next send or by close, which record what they stored.
            for upload in self._pending.values():
                upload.live = False
            raise
        return results

    def close(self) -> None:
        """Wait for every upload still running (those of an interrupted send), then stop the threads."""
        try:
            if self._pending:
                wait(list(self._pending))
                for future in list(self._pending):
                    self._settle(future)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def send_all(client: Any, run_id: str, metrics: Sequence[Metric], chunk_size: int, in_flight: int | None = None) -> None:
    """Every metric of ``metrics`` into the run, in chunks of ``chunk_size``, ``in_flight`` at once
    (default: ``IN_FLIGHT`` to a tracking server, one after another into a database, whose
    writers would only queue on its lock); raises the first chunk's failure once every started
    upload has settled. For a spool's replay: points the store already holds are skipped by it."""
    if in_flight is None:
        in_flight = IN_FLIGHT if is_http(getattr(client, "tracking_uri", None)) else 1
    uploads = ParallelUploads(client, run_id, in_flight)
    try:
        results = uploads.send([list(metrics[start : start + chunk_size]) for start in range(0, len(metrics), chunk_size)])
    finally:
        uploads.close()
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is not None:
        raise failure
