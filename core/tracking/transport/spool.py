"""A tracking server that stops answering mid-run: notice it fast, spool, resume or replay.

Without this, a dead server cost each metric write MLflow's default retries (~4 minutes per
call, several calls per run end), then left the run RUNNING and its unsent metrics gone. Here:

* every HTTP call of a run uses bounded retries and timeouts (``bounded_http``), so a write to
  a dead server fails within seconds;
* ``SpoolingSink`` turns that failure into one warning line naming the server and the spool
  file, and appends the unsent metrics, and every later block, to that file (JSON lines: a
  header with the run id and URI, one line per block of ``[key, value, timestamp_ms, step]``,
  and finally the status the run should end with);
* at each later flush it asks the server's ``/health`` (a few seconds at most); once it answers,
  the spooled blocks are written with their original steps and timestamps and the run carries
  on as if nothing happened;
* a run that ends while the server is still gone leaves its status and artifacts in the spool
  too; ``backproplab runs replay SPOOL`` (``maintenance.replay``) writes everything later.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

from mlflow.entities import Metric

from backproplab.errors import BackproplabError, ConfigError
from .buffer import Block, MAX_METRICS_PER_BATCH
from .credentials import public, redact
from .faults import SpoolWriteError, spool_write_error
from ..mlflow_private import MAX_TAG_VAL_LENGTH
from .limits import truncate
from .reachability import check_http
from .store import environment
from . import upload
from .upload import NOT_SENT, AppGone, BlockUploads, ParallelUploads, is_server_loss, send_all

SPOOL_DIR = ".backproplab-spool"
# On a run whose spool file was lost mid-run: how many metrics of which steps, and why.
METRICS_LOST_TAG = "backproplab.metrics_lost"
SPOOL_FORMAT = 1
# A write to a dead server fails after at most about (1 + retries) x timeout + the backoff
# (1 s, 2 s): ~3 s when the connection is refused (a server that died). With the 15 s flush
# interval on a server, a dead server is noticed within about 20 s. The timeout is not shorter
# because a loaded server can take seconds over a call (5 s was seen to give up on a live one on
# a busy 2-core machine). The metric uploads themselves wait longer for the answer
# (upload.LOG_BATCH_READ_TIMEOUT_S): a server that hangs is noticed after ~3 minutes there.
HTTP_KNOBS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
}


@contextlib.contextmanager
def bounded_http(enabled: bool = True) -> Iterator[None]:
    """MLflow's HTTP retry knobs turned down for the block, then restored as they were.

    MLflow reads them at every request, so this bounds exactly the calls made inside the block
    (one run's), not those of the user's other clients before or after it. A value the user set
    is kept: they chose it.
    """
    if not enabled:
        yield
        return
    with environment(HTTP_KNOBS, keep_set=True):
        yield


class ServerLost(BackproplabError, RuntimeError):
    """The tracking server stopped answering and ``logger.on_server_loss=stop`` ends the run."""


def short(exc: BaseException, limit: int = 240) -> str:
    """The error cut to ``limit`` characters, but never losing urllib3's ``(Caused by ...)``
    tail: it alone tells a refused connection from a timeout or a server answering 500."""
    text = " ".join(str(exc).split())
    if len(text) <= limit:
        return text
    head, cause = text, ""
    at = text.rfind("(Caused by ")
    if at > 0:
        head, cause = text[:at].rstrip(), " " + text[at:]
    room = max(limit - len(cause), 40)
    return (head if len(head) <= room else head[: room - 1] + "…") + cause


def spool_path(directory: str | os.PathLike[str] | None, run_id: str) -> Path:
    return Path(directory or Path.cwd()).resolve() / SPOOL_DIR / f"{run_id}.jsonl"


def _number(value: float) -> float | str:
    # JSON has no NaN or infinity; MLflow stores them, so they survive as strings.
    return value if math.isfinite(value) else repr(float(value))


def _from_number(value: float | str) -> float:
    return float(value)


def block_rows(block: Block) -> list[list[Any]]:
    rows = [[k, _number(v), t, s] for k, v, t, s in block.extra]
    keys = block.keys
    for step, ts, row in zip(block.steps.tolist(), block.timestamps_ms.tolist(), block.values.tolist()):
        rows.extend([k, _number(v), ts, step] for k, v in zip(keys, row))
    return rows


def metrics_of(rows: list[list[Any]]) -> list[Metric]:
    return [Metric(k, _from_number(v), int(t), int(s)) for k, v, t, s in rows]


class Spool:
    """The append-only file of one run's unsent metrics, its final status and its artifacts.

    Every write is whole or absent: the file is created by a rename of a complete, fsynced
    temporary file, and a record appended later is cut off again if the write fails (a full
    disk), so a reader never meets half a record followed by more. The spool knows what it
    wrote: a file that was deleted, replaced or truncated under it (a cleanup job, ``git
    clean``) is a loss, said once on stderr and kept in ``losses`` and as a ``lost`` record of
    the new file, never silently started afresh."""

    def __init__(self, path: Path, run_id: str, tracking_uri: str, out: Any = None) -> None:
        self.path = path
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.out = out or sys.stderr
        self.losses: list[str] = []
        self.reported = 0  # losses already tagged on the run (the server answered since)
        self._written = 0  # bytes of the file as this process left it
        self._inode: int | None = None
        self._steps: list[int] = []  # [first, last, count] of the metrics in the file

    @property
    def artifacts_dir(self) -> Path:
        return self.path.with_suffix(".artifacts")

    @property
    def manifest(self) -> Path:
        """Size and SHA-256 of every artifact kept, written after them: ``runs replay`` uploads
        only the files it vouches for."""
        return self.path.with_suffix(".manifest.json")

    def check_intact(self) -> None:
        """Record a loss if the file this process wrote is gone, replaced or shorter."""
        if self._inode is None:
            return
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            stat = None
        if stat is not None and stat.st_ino == self._inode and stat.st_size >= self._written:
            return
        first, last, count = self._steps or [None, None, 0]
        what = "deleted" if stat is None else "replaced or truncated"
        loss = f"{count} spooled metrics (steps {first} to {last}) were lost: the spool file {self.path} was {what} during the run"
        self.losses.append(loss)
        print(f"warning: {loss}; the run records the loss, and spools anew", file=self.out, flush=True)
        self._forget()

    def _forget(self) -> None:
        self._inode, self._written, self._steps = None, 0, []

    def _append(self, record: dict[str, Any]) -> None:
        self.check_intact()
        if self._inode is None:
            header = {"backproplab_spool": SPOOL_FORMAT, "run_id": self.run_id, "tracking_uri": public(self.tracking_uri)}
            records = [header, *({"lost": loss} for loss in self.losses[self.reported :]), record]
            self._create("".join(json.dumps(r) + "\n" for r in records).encode())
            return
        data = (json.dumps(record) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise spool_write_error(exc, self.path, "spooling metrics") from None
        try:
            try:
                _write_all(fd, data)
                os.fsync(fd)  # the point of the spool is to survive what comes next
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._written)  # no half record for a reader to stop at
                raise spool_write_error(exc, self.path, "spooling metrics") from None
        finally:
            os.close(fd)
        self._written += len(data)

    def _create(self, data: bytes) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, data)
            self._inode = os.stat(self.path).st_ino
        except OSError as exc:
            raise spool_write_error(exc, self.path, "spooling metrics") from None
        self._written = len(data)

    def add(self, rows: list[list[Any]]) -> None:
        if rows:
            self._append({"metrics": rows})
            steps = [int(row[3]) for row in rows]
            first, last, count = self._steps or [min(steps), max(steps), 0]
            self._steps = [min(first, *steps), max(last, *steps), count + len(rows)]

    def end(self, status: str, reason: str | None, note: str | None = None) -> None:
        """``note``: the run's description, which ``runs replay`` writes with the status."""
        self._append({"end": {"status": status, "reason": reason, "note": note}})

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.manifest.unlink(missing_ok=True)
        shutil.rmtree(self.artifacts_dir, ignore_errors=True)
        self._forget()
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()  # only when empty: other runs' spools stay


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_atomically(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` whole, or is as it was: a temporary file beside it, fsynced, then
    renamed over it (and the directory fsynced, so the rename survives a crash too)."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_spool(path: Path) -> tuple[dict[str, Any], list[list[Any]], dict[str, Any] | None]:
    """(header, metric rows in order, end record or None); a ConfigError naming what is wrong.
    The header gains ``losses``: the sentences of the file's ``lost`` records."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"spool file {path} cannot be read ({exc.strerror or exc}); give a file from .backproplab-spool/") from None
    header: dict[str, Any] | None = None
    rows: list[list[Any]] = []
    end = None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # a line cut short by the process's death: everything before it is whole
            raise ConfigError(f"spool file {path} line {number} is not JSON; valid: a file written by backproplab") from None
        if header is None:
            if not isinstance(record, dict) or record.get("backproplab_spool") != SPOOL_FORMAT or "run_id" not in record:
                raise ConfigError(f"{path} is not a backproplab spool file (format {SPOOL_FORMAT}); valid: a file from .backproplab-spool/")
            header = record
        elif "metrics" in record:
            rows.extend(record["metrics"])
        elif "end" in record:
            end = record["end"]
        elif "lost" in record:
            header.setdefault("losses", []).append(str(record["lost"]))
    if header is None:
        raise ConfigError(f"spool file {path} is empty; valid: a file written by backproplab")
    return header, rows, end


class LocalArtifacts:
    """Stands in for the client's ``log_artifacts`` while the server is gone: the files go next
    to the spool, each written whole (``write_atomically``), then listed with its size and
    SHA-256 in the spool's manifest; ``runs replay`` uploads the files the manifest vouches for."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:  # noqa: ARG002
        target = self.spool.artifacts_dir / artifact_path if artifact_path else self.spool.artifacts_dir
        manifest = read_manifest(self.spool.manifest) or {}
        try:
            for source in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
                destination = target / source.relative_to(local_dir)
                destination.parent.mkdir(parents=True, exist_ok=True)
                data = source.read_bytes()
                write_atomically(destination, data)
                key = destination.relative_to(self.spool.artifacts_dir).as_posix()
                manifest[key] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            write_atomically(self.spool.manifest, json.dumps(manifest, indent=1).encode())
        except OSError as exc:
            raise spool_write_error(exc, target, "saving the run's artifacts") from None


def read_manifest(path: Path) -> dict[str, dict[str, Any]] | None:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def damaged_artifacts(spool: Spool) -> list[str]:
    """The spooled artifact files the manifest does not vouch for (missing from it, another
    size or content: written when the disk filled, or cut short), by relative path."""
    directory = spool.artifacts_dir
    if not directory.is_dir():
        return []
    manifest = read_manifest(spool.manifest) or {}
    damaged = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        key = path.relative_to(directory).as_posix()
        expected = manifest.get(key)
        data = path.read_bytes()
        if not expected or expected.get("size") != len(data) or expected.get("sha256") != hashlib.sha256(data).hexdigest():
            damaged.append(key)
    return damaged


class SpoolingSink:
    """``log_batch`` writes to a tracking server that survive the server's loss.

    A server that runs backproplab's app takes each block in one call (``upload.BlockUploads``);
    a block it fails to take for the server's loss is spooled whole (points it stored after all
    are skipped when the spool is replayed). To any other server, a block's chunks go up to
    ``in_flight`` at once (``upload.ParallelUploads``). Chunks already
    accepted are not spooled again; the chunks that failed, and those held back after the first
    failure, are. ``lost`` stays true until a later flush finds the server answering and the spool has
    been written, in order, before anything newer.
    """

    def __init__(
        self, client: Any, run_id: str, uri: str, spool: Spool, *, stop: bool, out: Any = None, in_flight: int | None = None,
        server_app: bool = True,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.uri = uri
        self.shown = public(uri)  # for messages: no credentials
        self.spool = spool
        self.stop = stop
        self.out = out or sys.stderr
        self.lost = False
        self.uploads = ParallelUploads(client, run_id, upload.IN_FLIGHT if in_flight is None else in_flight)
        # server_app=False (logger.buffer.writer=log_batch): MLflow's call, whatever the server offers.
        self.blocks = BlockUploads(client, enabled=server_app)
        self.spooled = 0
        # The spool could not be written (a full disk): what it failed to keep is lost, the run
        # ends with this error, and later blocks are not tried there again.
        self.broken: SpoolWriteError | None = None
        self._last_spooled: Block | None = None
        self._partial: Block | None = None
        self._stored: set[int] = set()

    def __call__(self, block: Block) -> int:
        if block is self._last_spooled or self.broken is not None:
            # The block a stop raised on, resent by the writer: it is in the spool. Or the spool
            # is broken, which the run's error already says.
            return 0
        if self.lost and not self.try_resume():
            self._spool(block_rows(block))
            self._last_spooled = block
            return 0
        if self.blocks.usable():
            sent = self._send_block(block)
            if sent is not None:
                return sent
        metrics = block.metrics()
        chunks = [metrics[start : start + MAX_METRICS_PER_BATCH] for start in range(0, len(metrics), MAX_METRICS_PER_BATCH)]
        if block is not self._partial:
            # A block is sent again only after its send was interrupted (the writer keeps it):
            # then what the first send stored is in self._stored and is not sent twice.
            self._partial, self._stored = block, set()
        in_flight = self.uploads.in_flight
        results = self.uploads.send(chunks, self._stored)
        self._partial = None
        if self.uploads.in_flight < in_flight and self.uploads.backed_off is not None:
            print(
                f"backproplab: MLflow tracking server {self.shown} failed calls sent {in_flight} at a time "
                f"({redact(short(self.uploads.backed_off))}); the run's metrics go one call at a time from now on",
                file=self.out,
                flush=True,
            )
        failures = [r for r in results if r is not None and r is not NOT_SENT]
        if failures and not is_server_loss(failures[0]):
            raise failures[0]  # refused (bad value, run not active): the writer keeps the block
        if failures:
            # Every chunk not stored (failed, or held back after the first failure) is spooled;
            # one that was stored after all is skipped as a duplicate when the spool is replayed.
            unsent = [m for chunk, r in zip(chunks, results) if r is not None for m in chunk]
            self._lose(failures[0], block, [[m.key, _number(m.value), m.timestamp, m.step] for m in unsent])
        # An interrupted send returned no count: the resend reports the chunks both stored.
        return sum(len(chunk) for chunk, r in zip(chunks, results) if r is None)

    def _send_block(self, block: Block) -> int | None:
        """Metrics stored, or None when the server turned out not to run the app any more (it
        was restarted without ``--app-name backproplab``): the block then goes by ``log_batch``."""
        try:
            return self.blocks.send(self.run_id, block)
        except AppGone as gone:
            print(
                f"backproplab: MLflow tracking server {self.shown} no longer runs backproplab's app ({gone}); "
                "the run's metrics go by log_batch from now on",
                file=self.out,
                flush=True,
            )
            return None
        except Exception as exc:
            if not is_server_loss(exc):
                raise  # refused (bad value, run not active): the writer keeps the block
            self._lose(exc, block, block_rows(block))
            return 0

    @property
    def calls(self) -> int:
        return self.uploads.calls + self.blocks.calls

    def _spool(self, rows: list[list[Any]]) -> None:
        try:
            self.spool.add(rows)
        except SpoolWriteError as exc:
            steps = [int(row[3]) for row in rows] or [0]
            self.broken = SpoolWriteError(
                f"{exc}; the run's metrics went there because MLflow tracking server {self.shown} stopped answering, "
                f"and {len(rows)} of them (steps {min(steps)} to {max(steps)}) are now in no store and no file"
            )
            raise self.broken from None
        self.spooled += len(rows)

    def _lose(self, exc: BaseException, block: Block, rows: list[list[Any]]) -> None:
        """The server was lost while writing ``block``: ``rows``, what it did not store, go to the
        spool, and ``logger.on_server_loss=stop`` ends the run (the writer's resend of ``block``
        is then a no-op, see ``__call__``)."""
        self.lost = True
        self._spool(rows)
        self._last_spooled = block
        then = (
            "ending the run (logger.on_server_loss=stop)"
            if self.stop
            else "training goes on; they are written if the server returns (logger.on_server_loss=continue)"
        )
        print(
            f"warning: MLflow tracking server {self.shown} stopped answering while writing metrics ({redact(short(exc))}); "
            f"unsent metrics are spooled to {self.spool.path}; {then}; "
            f"to send them later: backproplab runs replay {self.spool.path}",
            file=self.out,
            flush=True,
        )
        if self.stop:
            raise ServerLost(self.reason()) from None

    def try_resume(self) -> bool:
        """Ask the server once; if it answers, write the spool and go back to normal."""
        if self.broken is not None:
            return False
        try:
            check_http(self.uri)
            self.spool.check_intact()
            rows = read_spool(self.spool.path)[1] if self.spool.path.exists() else []
            metrics = metrics_of(rows)
            # Duplicates of rows already accepted are skipped by MLflow's store.
            send_all(self.client, self.run_id, metrics, MAX_METRICS_PER_BATCH, self.uploads.in_flight)
        except Exception as exc:  # noqa: BLE001 - still gone, or gone again: stay spooling
            if isinstance(exc, ConfigError) or is_server_loss(exc):
                return False
            raise
        self.record_losses()
        self.spool.remove()
        self.lost = False
        print(
            f"backproplab: MLflow tracking server {self.shown} answers again; {len(metrics)} spooled metrics written, "
            "the run carries on",
            file=self.out,
            flush=True,
        )
        self.spooled = 0
        return True

    def record_losses(self) -> None:
        """The spool's losses as the run's ``backproplab.metrics_lost`` tag, once the server answers."""
        if self.spool.losses:
            self.client.set_tag(self.run_id, METRICS_LOST_TAG, truncate("; ".join(self.spool.losses), MAX_TAG_VAL_LENGTH))
            self.spool.reported = len(self.spool.losses)

    def reason(self) -> str:
        return (
            f"MLflow tracking server {self.shown} was lost during the run; unsent metrics are spooled in {self.spool.path} "
            f"(send them with: backproplab runs replay {self.spool.path})"
        )

    def close(self) -> None:
        self.uploads.close()
