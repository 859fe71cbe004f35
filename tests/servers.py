"""A real PostgreSQL server and a real ``mlflow server`` on 127.0.0.1, for tests and benchmarks.

The tests' fixtures (tests/conftest.py) and benchmarks/bench_cluster.py start these the same way:

* ``Postgres``: Debian's PostgreSQL binaries (``/usr/lib/postgresql/<version>/bin``), a fresh
  cluster from ``initdb`` in a temporary folder, ``postgres`` listening on 127.0.0.1 only (its
  unix socket in that folder, never in /var/run), trust authentication for the one local user.
  initdb and postgres refuse to run as root, and CI runs as root: then both run as the
  ``postgres`` system user (the Debian package creates it), else ``nobody``, and the folder is
  handed to that user.
* ``MlflowServer``: ``mlflow server`` with a given backend store and server-side artifacts
  (``--artifacts-destination``), so clients need no shared disk, as on a cluster.

Both stop on ``stop()`` (or leaving the ``with`` block), their processes and folders removed.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Sequence

DB_USER = "backproplab"
MLFLOW_TEMPLATE = "mlflow_template"
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def http_serving(handler: type[http.server.BaseHTTPRequestHandler], **attributes: Any) -> Iterator[http.server.ThreadingHTTPServer]:
    """A small HTTP server of the test's own on 127.0.0.1 (a free port), answering with
    ``handler`` on a thread for the block; ``attributes`` are set on it before it serves."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for name, value in attributes.items():
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class Proxy(http.server.BaseHTTPRequestHandler):
    """Forwards each request to ``server.upstream`` (a port on 127.0.0.1) and its answer back,
    unless ``refuse`` answers it with a status of its own (503: a server in trouble, a proxy's
    limit). HTTP/1.0, one connection per request: nothing here depends on kept-alive ones."""

    def refuse(self, body: bytes) -> int | None:
        return None

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = self.refuse(body)
        if status is not None:
            self._reply(status, {"Content-Type": "text/plain"}, http.client.responses[status].encode())
            return
        try:
            answer = self._upstream(body)
        finally:
            self.done()
        self._reply(*answer)

    def done(self) -> None:
        """After a forwarded request's answer came back, before the caller has it (the caller
        may send its next request the moment it has)."""

    def _upstream(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in ("transfer-encoding", "connection", "content-length")}
            return response.status, kept, data
        finally:
            upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the run gave up on the call (its timeout) and will send it again

    def log_message(self, *args) -> None:
        pass


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL ``bin`` folder holding initdb, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def _unprivileged_user() -> str | None:
    """The user to run PostgreSQL as: None (this process's) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as")


def stop_group(proc: subprocess.Popen, first: int, timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, first)
        proc.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def wait_for_health(proc: subprocess.Popen, url: str, log: Path, what: str, timeout: float = START_TIMEOUT_S) -> None:
    """Until ``url/health`` answers 200 (an ``mlflow server`` or ``mlflow ui``); RuntimeError with
    the end of ``log`` if the process exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer /health within {timeout:.0f} s: {_tail(log)}")
        time.sleep(0.3)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


class Postgres:
    """One PostgreSQL cluster in a temporary folder, serving on 127.0.0.1:``port``.

    ``durable=False`` turns fsync off: the tests prove wiring and that no row is lost between
    processes, not crash safety, and a 2-core CI machine should not wait on disk flushes.
    The benchmark keeps PostgreSQL's defaults, as a real server has them."""

    def __init__(self, *, durable: bool = False) -> None:
        self.bin = postgres_bin()
        if self.bin is None:
            raise RuntimeError(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
                "`apt-get install postgresql` (.ci/run does so when it is missing)"
            )
        self.user = _unprivileged_user()
        self.root = Path(tempfile.mkdtemp(prefix="backproplab-pg-"))
        self.port = free_port()
        self.durable = durable
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._mlflow_template = False

    def _run_as(self) -> dict:
        return {"user": self.user} if self.user else {}

    def start(self) -> "Postgres":
        if self.user:
            shutil.chown(self.root, self.user)
        data = self.root / "data"
        init = subprocess.run(
            [str(self.bin / "initdb"), "-D", str(data), "-U", DB_USER, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-N"],
            capture_output=True, text=True, cwd=self.root, **self._run_as(),
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr[-2000:]}")
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}", "-c", "max_connections=200"]
        if not self.durable:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self._log = open(self.root / "postgres.log", "w")
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), *settings],
            cwd=self.root, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, **self._run_as(),
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}: {self.log_tail()}")
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, "-d", "postgres"],
                capture_output=True,
            )
            if ready.returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not accept connections within {START_TIMEOUT_S:.0f} s: {self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def uri(self, database: str, driver: str = "psycopg") -> str:
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{DB_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, *, mlflow_tables: bool = True) -> str:
        """A new database; its ``postgresql+psycopg://`` URI.

        ``mlflow_tables``: a copy of a database in which MLflow created its tables once per
        server. MLflow runs its ~70 migrations on every new store, several seconds each time (a
        minute on the loaded CI machine); ``createdb -T`` copies the result in well under one."""
        template = []
        if mlflow_tables:
            if not self._mlflow_template:
                self._createdb(MLFLOW_TEMPLATE)
                # In a subprocess, so that no connection to the template outlives it: PostgreSQL
                # copies only a database nobody is connected to.
                code = "import sys; from mlflow import MlflowClient; MlflowClient(sys.argv[1]).search_experiments()"
                proc = subprocess.run([sys.executable, "-c", code, self.uri(MLFLOW_TEMPLATE)], capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RuntimeError(f"MLflow could not create its tables: {proc.stderr[-2000:]}")
                self._mlflow_template = True
            template = ["-T", MLFLOW_TEMPLATE]
        self._createdb(name, *template)
        return self.uri(name)

    def _createdb(self, name: str, *options: str) -> None:
        proc = subprocess.run(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, *options, name],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {proc.stderr.strip()}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, signal.SIGINT)  # postgres' "fast" shutdown
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Postgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with ``backend_store_uri`` and artifacts served from ``root/artifacts``."""

    def __init__(
        self, backend_store_uri: str, root: Path, *, workers: int = 1, options: Sequence[str] = (),
        env: dict[str, str] | None = None, auth: tuple[str, str] | None = None,
    ) -> None:
        self.backend_store_uri = backend_store_uri
        self.root = Path(root)
        self.workers = workers
        self.options = list(options)  # more ``mlflow server`` options, e.g. ``--uvicorn-opts``
        self.env = dict(env or {})  # e.g. MLFLOW_AUTH_CONFIG_PATH for ``--app-name basic-auth``
        self.auth = auth  # (user, password) the warm-up call authenticates with
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> "MlflowServer":
        self.root.mkdir(parents=True, exist_ok=True)
        self._log = open(self.root / "server.log", "w")
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **self.env}
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")), "server",
                "--backend-store-uri", self.backend_store_uri,
                "--artifacts-destination", str(self.root / "artifacts"),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers), *self.options,
            ],
            cwd=self.root, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )
        wait_for_health(self.proc, self.url, self.root / "server.log", "mlflow server")
        self._warm_up()
        return self

    def _warm_up(self) -> None:
        """One tracking API call, patiently: the server opens its store and imports its handlers
        on the first request, which on a loaded machine outlasts the few seconds a run's
        connect check allows, and that check is not what these servers are here to test."""
        request = urllib.request.Request(self.url + "/api/2.0/mlflow/experiments/search?max_results=1")
        if self.auth is not None:
            token = base64.b64encode(":".join(self.auth).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=START_TIMEOUT_S) as response:
            response.read()

    def log_tail(self) -> str:
        return _tail(self.root / "server.log")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, signal.SIGTERM)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "MlflowServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
