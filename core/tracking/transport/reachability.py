"""The cheap half of "is the tracking store usable?": no mlflow import, so a single run can ask
it before Hydra creates an output folder. ``store.connect`` adds the MLflow half.

What is checked here, each as one ConfigError naming ``logger.tracking_uri``:

* the URI's scheme is one backproplab tracks to (``TRACKING_SCHEMES``);
* an ``http(s)`` server answers ``GET /health`` within seconds, and its tracking API answers one
  cheap call (an experiment search) with JSON: a proxy or a broken server can answer /health
  while every API call fails, and a server with authentication refuses wrong credentials there;
* a PostgreSQL database's driver is installed and the database accepts a connection within
  seconds (MLflow itself retries a failing connection for minutes before it gives up);
* a sqlite store's path is not a directory, its directory exists and is writable (sqlite writes
  a journal beside the file), an existing file is writable, is a SQLite database
  (``SQLite format 3`` header, readable by sqlite), passes sqlite's ``quick_check`` (pages
  overwritten in the middle of the file are found only by reading them), and carries the
  schema revision of the installed MLflow: MLflow migrates an older store irreversibly as it
  opens it, and a store of a newer MLflow cannot be read at all (``schema``).

Every message names the option the URI came from and advice about that option (``UriOption``):
a run's ``logger.tracking_uri``, or ``--tracking-uri`` of ``backproplab runs``.

Read-only and version checks read the file with the stdlib ``sqlite3`` in read-only mode and
change nothing, so a refused store is left exactly as it was.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import fcntl
import os
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import quote, urlparse

from backproplab.errors import ConfigError

from . import schema
from .credentials import PASSWORD_ENV, TOKEN_ENV, USERNAME_ENV, redact, reveal, server_credentials

HEALTH_TIMEOUT_S = 3.0
# The API probe is a server's first real request, which opens its store: longer than /health.
API_TIMEOUT_S = 10.0
API_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"
KEY = "logger.tracking_uri"


@dataclass(frozen=True)
class UriOption:
    """Where a tracking URI came from: the option an error names, and what to do about it."""

    key: str
    fix: str


RUN_OPTION = UriOption(KEY, f"fix {KEY}, or run with logger=none")
# The tracking stores backproplab is tested against or that MLflow serves through a database
# URI (``postgresql+psycopg2://...`` counts as postgresql). MLflow 3 also registers ``file:`` and
# plain paths, but its file store is in maintenance mode and raises on open unless
# MLFLOW_ALLOW_FILE_STORE=true; backproplab neither tests nor supports it, nor ``databricks``.
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql")
VALID = "sqlite:///PATH (the default, sqlite:///mlflow.db), http(s)://HOST:PORT of an MLflow server, or a postgresql://, mysql:// or mssql:// database URI"
SQLITE_HEADER = b"SQLite format 3\x00"
# How long a run waits for another backproplab process that is creating or upgrading the same
# store (MLflow's first creation takes a few seconds; a big upgrade longer).
LOCK_TIMEOUT_S = 120.0


def default_uri(tracking_uri: str | None) -> str:
    """The store a run uses when ``logger.tracking_uri`` is null: MLFLOW_TRACKING_URI if set, else
    ``sqlite:///mlflow.db`` in the working directory. backproplab's own choice, not MLflow's, whose
    default was a ``./mlruns`` file store before MLflow 3. A password the command line moved out
    of the URI is put back (``credentials.reveal``)."""
    return reveal(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db")


def _problem(uri: str, problem: str, valid: str | None = None, option: UriOption = RUN_OPTION) -> ConfigError:
    # The whole URI, never shortened (it is what the user has to find and fix), but no password.
    shown = redact(uri)
    return ConfigError(key=option.key, value=shown, problem=problem, valid=valid, subject=f"{option.key}={shown!r}")


def check_reachable(tracking_uri: str | None, *, upgrade_store: bool = False) -> None:
    """A bad URI, a dead server or an unusable sqlite store as one ConfigError."""
    uri = default_uri(tracking_uri)
    try:
        scheme = check_scheme(uri)
        if scheme in ("http", "https"):
            check_http(uri)
        elif scheme == "sqlite":
            check_sqlite(uri, upgrade_store=upgrade_store)
        elif scheme == "postgresql":
            check_postgresql(uri)
    except ConfigError as exc:
        if tracking_uri is None and os.environ.get("MLFLOW_TRACKING_URI"):
            # The user may not know where the URI came from: the key names a null.
            raise ConfigError(f"{exc} (logger.tracking_uri is null, so the URI is MLFLOW_TRACKING_URI's)") from None
        raise


def check_scheme(uri: str) -> str:
    """The URI's store kind (``sqlite``, ``http``, ``postgresql``...), or a ConfigError saying which are valid."""
    scheme = urlparse(uri).scheme.lower()
    base = scheme.split("+", 1)[0]  # postgresql+psycopg2, sqlite+pysqlite
    if base not in TRACKING_SCHEMES or (base != scheme and base not in DATABASE_SCHEMES):
        if scheme in ("", "file"):
            problem = (
                "is a path for MLflow's file store, which MLflow 3 keeps in maintenance mode and backproplab "
                "does not support (`mlflow migrate-filestore` moves its runs into a sqlite store)"
            )
        else:
            problem = f"has a scheme ({scheme}:) that backproplab cannot track to"
        raise _problem(uri, problem, VALID)
    if base in ("http", "https") and not urlparse(uri).netloc:
        raise _problem(uri, "names no host", VALID)
    return base


def is_http(uri: object) -> bool:
    """Whether ``uri`` is a tracking server's address (MLflow's REST store), not a database or folder."""
    return isinstance(uri, str) and urlparse(uri).scheme in ("http", "https")


def _auth_header(uri: str) -> dict[str, str]:
    """The Authorization header MLflow's client sends: a bearer token, else a user and password
    (from its environment variables, else from the URI's ``user:password@``)."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return {"Authorization": f"Bearer {token}"}
    _clean, user, password = server_credentials(uri)
    user = os.environ.get(USERNAME_ENV) or user
    password = os.environ.get(PASSWORD_ENV) or password
    if not user or password is None:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _get(uri: str, path: str, timeout: float) -> tuple[int, str, bytes]:
    """(HTTP status, content type, body) of ``GET uri+path``; OSError when nothing answers."""
    base, _user, _password = server_credentials(uri)
    request = urllib.request.Request(base.rstrip("/") + path, headers={"Accept": "application/json", **_auth_header(uri)})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - user's URI
            return response.status, response.headers.get("Content-Type", ""), response.read(65536)
    except urllib.error.HTTPError as exc:
        # The start of a refusal's body tells MLflow's host check from an authentication refusal.
        return exc.code, exc.headers.get("Content-Type", "") if exc.headers else "", exc.read(300)


def check_http(uri: str, option: UriOption = RUN_OPTION) -> None:
    """The server answers ``/health`` and one tracking API call with JSON, as MLflow's client
    will need it to: one ConfigError (naming ``option``) otherwise."""
    shown = redact(uri)
    try:
        status, _type, _body = _get(uri, "/health", HEALTH_TIMEOUT_S)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = redact(str(getattr(exc, "reason", exc)))
        raise ConfigError(f"MLflow tracking server {shown} is not reachable ({reason}); start it, {option.fix}") from None
    if status != 200:
        raise ConfigError(f"{shown} answered GET /health with HTTP {status}; is {option.key} an MLflow tracking server?")
    try:
        status, content_type, body = _get(uri, API_PROBE, API_TIMEOUT_S)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = redact(str(getattr(exc, "reason", exc)))
        raise ConfigError(
            f"MLflow tracking server {shown} answers /health but not its tracking API (GET {API_PROBE}: {reason}); "
            f"check the server's log, or {option.fix}"
        ) from None
    if status == 403 and HOST_REFUSED in body:
        raise _host_refused(uri)
    if status in (401, 403):
        given = "refused the credentials" if _auth_header(uri) else "asks for credentials"
        raise ConfigError(
            f"MLflow tracking server {shown} {given} (HTTP {status} on GET {API_PROBE}); valid: an account of the server "
            f"in {USERNAME_ENV} and {PASSWORD_ENV} (or user:password@ in {option.key}), or a token in {TOKEN_ENV}"
        )
    if status != 200 or not _is_json(body):
        what = f"HTTP {status}" if status != 200 else f"a {content_type.split(';')[0] or 'non-JSON'} page, not JSON"
        raise ConfigError(
            f"MLflow tracking server {shown} answers /health but its tracking API does not work (GET {API_PROBE} gave {what}); "
            f"check the server's log (or the proxy in front of it), or {option.fix}"
        )


def _is_json(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:
        return False


# MLflow's server answers a request whose Host header is not among its --allowed-hosts with this
# 403 (``mlflow.server.security_utils``) on every path but /health: a worker that reaches the
# server by a hostname finds it healthy, then has every call refused.
HOST_REFUSED = b"Invalid Host header"


def _host_refused(uri: str) -> ConfigError:
    host = urlparse(server_credentials(uri)[0]).netloc
    return ConfigError(
        f"MLflow tracking server {redact(uri)} refuses requests for the host {host} (HTTP 403, 'Invalid Host header': "
        f"MLflow's DNS-rebinding protection allows localhost and private IP addresses unless told otherwise); "
        f"start the server with --allowed-hosts {host} (comma-separated, may include the other names it is reached by) "
        "or set MLFLOW_SERVER_ALLOWED_HOSTS for it"
    )


POSTGRES_CONNECT_TIMEOUT_S = 3


def shown_uri(uri: str) -> str:
    """The URI for an error line: its password and secret query parameters masked as ``***``."""
    return redact(uri)


def check_postgresql(uri: str) -> None:
    """The driver is installed, the server answers and the database takes a connection, within
    ``POSTGRES_CONNECT_TIMEOUT_S``: one ConfigError otherwise (SQLAlchemy imported only here)."""
    import sqlalchemy as sa

    shown = shown_uri(uri)
    try:
        url = sa.engine.make_url(uri)
        dialect = url.get_dialect()
    except Exception as exc:  # noqa: BLE001 - any parse or plugin failure is the user's URI
        raise _problem(uri, f"is not a database URI SQLAlchemy can read ({exc})", VALID) from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ConfigError(
            f"{KEY}={shown!r} needs the PostgreSQL driver {dialect.driver} ({exc.name or exc}), which is not installed; "
            "pip install 'backproplab[postgres]' (psycopg 3, for postgresql+psycopg://)"
        ) from None
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S})
    started = time.monotonic()
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - refused, timed out, bad password, no such database
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        raise ConfigError(
            f"PostgreSQL tracking store {shown} is not usable after {time.monotonic() - started:.1f}s ({reason}); "
            f"start it, fix {KEY}, or run with logger=none"
        ) from None
    finally:
        engine.dispose()


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:`` URI as MLflow/SQLAlchemy read it; None for an in-memory store.

    ``sqlite:///rel.db`` is relative to the cwd, ``sqlite:////abs.db`` absolute; a query string
    (``?timeout=30``) is not part of the path."""
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).expanduser()


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def store_lock(path: Path, *, shared: bool = False, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """``flock`` on ``<store>.lock`` beside the store: exclusive while a process creates, checks or
    upgrades the store's schema (MLflow's own first creation is not safe when two processes do it
    at once), shared while the cheap check reads the schema revision. A shared lock is only taken
    when the lock file exists, so that checking a store creates nothing beside it."""
    lock_file = _lock_path(path)
    if shared and not lock_file.exists():
        yield
        return
    flags = os.O_RDONLY if shared else os.O_RDWR | os.O_CREAT
    fd = os.open(lock_file, flags, 0o666)
    try:
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise ConfigError(
                        f"tracking store {path} is locked by another process ({lock_file}) for more than "
                        f"{timeout_s:.0f}s; wait for it to finish, or remove {lock_file} if no backproplab runs"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def check_sqlite(
    uri: str, *, upgrade_store: bool = False, locked: bool = False, integrity: bool = True, option: UriOption = RUN_OPTION
) -> str | None:
    """Everything about a sqlite store that can be known without MLflow; the store's schema
    revision when it must be upgraded (only with ``upgrade_store``), else None.

    ``locked``: the caller holds ``store_lock`` exclusively already. ``integrity``: read every
    page (sqlite's ``quick_check``), about 0.2 s per 100 MB of store (README, Speed); a process
    that checked the store up front passes false when it opens it again."""
    path = sqlite_path(uri)
    if path is None:
        return None
    check_writable(uri, path, option)
    if not path.exists():
        return None
    with contextlib.nullcontext() if locked else store_lock(path, shared=True):
        return check_store_file(uri, path, upgrade_store=upgrade_store, integrity=integrity, option=option)


def check_writable(uri: str, path: Path, option: UriOption = RUN_OPTION) -> None:
    directory = path.parent
    if path.is_dir():
        raise _problem(uri, "names a directory, not a sqlite file", "sqlite:///PATH/TO/FILE.db", option)
    if not directory.is_dir():
        # The wording predates ConfigError's parts; tests and users match on it.
        raise ConfigError(f"tracking_uri {redact(uri)}: directory {directory} does not exist; create it or {option.fix}")
    # os.access asks the kernel, so a read-only mount answers no even to root.
    if path.exists() and not os.access(path, os.W_OK):
        raise _problem(uri, f"is not writable: the file is {_why_not_writable(path)}", "a sqlite file this user can write", option)
    if not os.access(directory, os.W_OK | os.X_OK):
        what = "its directory" if path.exists() else "the directory it would be created in"
        raise _problem(
            uri,
            f"cannot be written: {what}, {directory}, is {_why_not_writable(directory)} "
            "(sqlite writes a journal file beside the store)",
            "a sqlite file in a directory this user can write",
            option,
        )


def _why_not_writable(path: Path) -> str:
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "on a read-only file system" if read_only else "not writable by this user"


def check_store_file(
    uri: str, path: Path, *, upgrade_store: bool = False, integrity: bool = True, option: UriOption = RUN_OPTION
) -> str | None:
    """Header, integrity (of the size; of every page with ``integrity``) and schema revision of
    an existing sqlite file."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise _problem(uri, f"cannot be read ({exc.strerror})", option=option) from None
    if not header:
        return None  # an empty file is an empty database to sqlite; MLflow creates its tables
    if header != SQLITE_HEADER:
        raise _problem(uri, "names a file that is not a sqlite database (no 'SQLite format 3' header)", VALID, option)
    try:
        revision, damage = _read_revision(path, integrity=integrity)
    except sqlite3.DatabaseError as exc:
        damage = str(exc)
    if damage is not None:
        raise _damaged(uri, path, damage, option)
    return schema.check_revision(uri, path, revision, upgrade_store=upgrade_store)


def _damaged(uri: str, path: Path, damage: str, option: UriOption) -> ConfigError:
    # sqlite's .recover salvages every row it can still read into a new database; the damaged
    # file is left as it is, for the user to keep or replace.
    path = path.resolve()
    recovered = path.with_name(f"{path.stem}-recovered{path.suffix or '.db'}")
    return _problem(
        uri,
        f"names a damaged sqlite database ({damage}); nothing was written to it; to salvage its runs: "
        f'sqlite3 {path} ".recover" | sqlite3 {recovered}, then use {option.key}=sqlite:///{recovered}',
        option=option,
    )


def _read_revision(path: Path, *, integrity: bool = True) -> tuple[object, str | None]:
    """(alembic_version's revision, the first damage ``quick_check`` found or None). The
    revision is None for a database with tables but no alembic_version, ``schema.NO_TABLES`` for
    an empty one. Raises sqlite3.DatabaseError for a file sqlite cannot read at all."""
    try:
        return _query_revision(path, read_only=True, integrity=integrity)
    except sqlite3.OperationalError:
        if not path.with_name(path.name + "-journal").exists():
            raise
        # A hot journal: a writer died mid-transaction (e.g. a killed run). Only a writable
        # connection may roll it back, as sqlite does on the first open by MLflow anyway.
        return _query_revision(path, read_only=False, integrity=integrity)


def _quick_check(connection: sqlite3.Connection) -> str | None:
    """The first problem sqlite's ``quick_check`` reports (it reads every page, but skips the
    index-to-table cross-checks of ``integrity_check``), or None."""
    rows = connection.execute("PRAGMA quick_check(1)").fetchall()
    first = str(rows[0][0]) if rows else "ok"
    return None if first == "ok" else " ".join(first.replace("*** in database main ***", "").split())[:200]


def _query_revision(path: Path, *, read_only: bool, integrity: bool = True) -> tuple[object, str | None]:
    target = f"file:{quote(str(path.resolve()))}" + ("?mode=ro" if read_only else "")
    connection = sqlite3.connect(target, uri=True, timeout=30)
    try:
        # One read transaction, so both reads see one committed state of a store that another
        # process may be writing. A truncated file fails here: sqlite compares the page count
        # in its header with the file's size ("database disk image is malformed").
        connection.execute("BEGIN")
        damage = _quick_check(connection) if integrity else None
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return schema.NO_TABLES, damage
        if "alembic_version" not in tables:
            return None, damage
        rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        return (rows[0][0] if rows else None), damage
    finally:
        connection.close()

