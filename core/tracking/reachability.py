"""The cheap half of "is the tracking store usable?": no mlflow import, so a single run can ask
it before Hydra creates an output folder. ``store.connect`` adds the MLflow half.

What is checked here, each as one ConfigError naming ``logger.tracking_uri``:

* the URI's scheme is one backproplab tracks to (``TRACKING_SCHEMES``);
* an ``http(s)`` server answers ``GET /health`` within seconds;
* a PostgreSQL database's driver is installed and the database accepts a connection within
  seconds (MLflow itself retries a failing connection for minutes before it gives up);
* a sqlite store's path is not a directory, its directory exists and is writable (sqlite writes
  a journal beside the file), an existing file is writable, is a SQLite database
  (``SQLite format 3`` header, readable by sqlite), and carries the schema revision of the installed
  MLflow: MLflow migrates an older store irreversibly as it opens it, and a store of a newer
  MLflow cannot be read at all (``schema``).

Read-only and version checks read the file with the stdlib ``sqlite3`` in read-only mode and
change nothing, so a refused store is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator
from urllib.parse import quote, urlparse

from backproplab.errors import ConfigError

from . import schema

HEALTH_TIMEOUT_S = 3.0
KEY = "logger.tracking_uri"
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
    default was a ``./mlruns`` file store before MLflow 3."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def _problem(uri: str, problem: str, valid: str | None = None) -> ConfigError:
    # The whole URI, never shortened: it is what the user has to find and fix.
    return ConfigError(key=KEY, value=uri, problem=problem, valid=valid, subject=f"{KEY}={uri!r}")


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


def check_http(uri: str) -> None:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as response:  # noqa: S310 - user's URI
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(
            f"MLflow tracking server {uri} is not reachable ({reason}); start it, fix logger.tracking_uri, "
            "or run with logger=none"
        ) from None
    if status != 200:
        raise ConfigError(
            f"{uri} answered GET /health with HTTP {status}; is logger.tracking_uri an MLflow tracking server?"
        )
    check_host_allowed(uri)


# MLflow's server answers a request whose Host header is not among its --allowed-hosts with this
# 403 (``mlflow.server.security_utils``) on every path but /health: a worker that reaches the
# server by a hostname finds it healthy, then has every call refused.
HOST_REFUSED = "Invalid Host header"
HOST_PROBE = "/api/2.0/backproplab/host-check"  # no such route: 404 once the Host is allowed


def check_host_allowed(uri: str) -> None:
    """A ConfigError naming the server's fix when its DNS-rebinding check refuses this URI's host."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + HOST_PROBE, timeout=HEALTH_TIMEOUT_S):  # noqa: S310 - user's URI
            return
    except urllib.error.HTTPError as exc:
        if exc.code != 403 or HOST_REFUSED not in exc.read(300).decode("utf-8", "replace"):
            return
    except (urllib.error.URLError, OSError, ValueError):
        return  # answered /health a moment ago: the run's own calls report anything else
    host = urlparse(uri).netloc
    raise ConfigError(
        f"MLflow tracking server {uri} refuses requests for the host {host} (HTTP 403, 'Invalid Host header': "
        f"MLflow's DNS-rebinding protection allows localhost and private IP addresses unless told otherwise); "
        f"start the server with --allowed-hosts {host} (comma-separated, may include the other names it is reached by) "
        "or set MLFLOW_SERVER_ALLOWED_HOSTS for it"
    )


POSTGRES_CONNECT_TIMEOUT_S = 3


def shown_uri(uri: str) -> str:
    """The URI for an error line: a database URI's password masked, as SQLAlchemy shows it."""
    if "@" not in uri or urlparse(uri).password is None:
        return uri
    from sqlalchemy.engine import make_url

    try:
        return make_url(uri).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URI is shown with its password cut out by hand
        parsed = urlparse(uri)
        return uri.replace(f":{parsed.password}@", ":***@", 1)


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


def check_sqlite(uri: str, *, upgrade_store: bool = False, locked: bool = False) -> str | None:
    """Everything about a sqlite store that can be known without MLflow; the store's schema
    revision when it must be upgraded (only with ``upgrade_store``), else None.

    ``locked``: the caller holds ``store_lock`` exclusively already."""
    path = sqlite_path(uri)
    if path is None:
        return None
    check_writable(uri, path)
    if not path.exists():
        return None
    with contextlib.nullcontext() if locked else store_lock(path, shared=True):
        return check_store_file(uri, path, upgrade_store=upgrade_store)


def check_writable(uri: str, path: Path) -> None:
    directory = path.parent
    if path.is_dir():
        raise _problem(uri, "names a directory, not a sqlite file", "sqlite:///PATH/TO/FILE.db")
    if not directory.is_dir():
        # The wording predates ConfigError's parts; tests and users match on it.
        raise ConfigError(f"tracking_uri {uri}: directory {directory} does not exist; create it or fix logger.tracking_uri")
    # os.access asks the kernel, so a read-only mount answers no even to root.
    if path.exists() and not os.access(path, os.W_OK):
        raise _problem(uri, f"is not writable: the file is {_why_not_writable(path)}", "a sqlite file this user can write")
    if not os.access(directory, os.W_OK | os.X_OK):
        what = "its directory" if path.exists() else "the directory it would be created in"
        raise _problem(
            uri,
            f"cannot be written: {what}, {directory}, is {_why_not_writable(directory)} "
            "(sqlite writes a journal file beside the store)",
            "a sqlite file in a directory this user can write",
        )


def _why_not_writable(path: Path) -> str:
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "on a read-only file system" if read_only else "not writable by this user"


def check_store_file(uri: str, path: Path, *, upgrade_store: bool = False) -> str | None:
    """Header, integrity of the size and schema revision of an existing sqlite file."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise _problem(uri, f"cannot be read ({exc.strerror})") from None
    if not header:
        return None  # an empty file is an empty database to sqlite; MLflow creates its tables
    if header != SQLITE_HEADER:
        raise _problem(uri, "names a file that is not a sqlite database (no 'SQLite format 3' header)", VALID)
    try:
        revision = _read_revision(path)
    except sqlite3.DatabaseError as exc:
        raise _problem(uri, f"names a damaged sqlite database ({exc})") from None
    return schema.check_revision(uri, path, revision, upgrade_store=upgrade_store)


def _read_revision(path: Path) -> object:
    """alembic_version's revision; None for a database with tables but no alembic_version,
    ``schema.NO_TABLES`` for an empty one. Raises sqlite3.DatabaseError for a damaged file."""
    try:
        return _query_revision(path, read_only=True)
    except sqlite3.OperationalError:
        if not path.with_name(path.name + "-journal").exists():
            raise
        # A hot journal: a writer died mid-transaction (e.g. a killed run). Only a writable
        # connection may roll it back, as sqlite does on the first open by MLflow anyway.
        return _query_revision(path, read_only=False)


def _query_revision(path: Path, *, read_only: bool) -> object:
    target = f"file:{quote(str(path.resolve()))}" + ("?mode=ro" if read_only else "")
    connection = sqlite3.connect(target, uri=True, timeout=30)
    try:
        # One read transaction, so both reads see one committed state of a store that another
        # process may be writing. A truncated file fails here: sqlite compares the page count
        # in its header with the file's size ("database disk image is malformed").
        connection.execute("BEGIN")
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return schema.NO_TABLES
        if "alembic_version" not in tables:
            return None
        rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        return rows[0][0] if rows else None
    finally:
        connection.close()

