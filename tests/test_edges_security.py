"""Credentials and servers at the edges, through the real command in subprocesses (and, as a
property, the redaction every message and record goes through):

* a password in ``logger.tracking_uri`` is accepted as MLflow accepts it, against a real
  authenticated server (MLflow's ``basic-auth`` app), and reaches no file, message, tag, param or
  run name of a single run or a sweep;
* a server whose ``/health`` answers while its API fails (500, an HTML page) is refused up front;
* ``runs replay`` against a dead server advises replay's own option.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings, strategies as st
from mlflow import MlflowClient

from conftest import cli_env
from servers import MlflowServer, free_port, http_serving

pytestmark = pytest.mark.slow

SECRET = "Zebra-quartz-7741-hush"
ADMIN = "admin"
QUICK = ("data=xor", "trainer.epochs=3")


def _command(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backproplab", *args], cwd=cwd, env=env or _clean_env(), capture_output=True, text=True, timeout=300
    )


def _clean_env(**extra: str) -> dict[str, str]:
    # The run must take its credentials from the URI, not from a variable the test shell set.
    env = {k: v for k, v in cli_env().items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth-server")
    config = tmp_path_factory.mktemp("auth-config") / "basic_auth.ini"  # the one file that holds the password
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {SECRET}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    server = MlflowServer(
        f"sqlite:///{root / 'mlflow.db'}", root, options=["--app-name", "basic-auth"],
        env={"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": "csrf-key-of-the-test"},
        auth=(ADMIN, SECRET),
    )
    with server:
        yield server


def _files_holding(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_password_in_the_uri_is_used_and_never_written_down(tmp_path, auth_server):
    authed = f"http://{ADMIN}:{SECRET}@127.0.0.1:{auth_server.port}"
    single = _command(*QUICK, f"logger.tracking_uri={authed}", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    sweep = _command("-m", *QUICK, "optimizer.lr=0.1,0.2", f"logger.tracking_uri={authed}", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    (tmp_path / "x").mkdir()
    wrong = _command(*QUICK, f"logger.tracking_uri=http://{ADMIN}:not-{SECRET}@127.0.0.1:{auth_server.port}", cwd=tmp_path / "x")
    assert wrong.returncode == 2, wrong.stderr
    assert wrong.stderr.count("\n") == 1 and "refused the credentials (HTTP 401" in wrong.stderr, wrong.stderr
    assert list((tmp_path / "x").iterdir()) == []  # refused before outputs/

    for proc in (single, sweep, wrong):
        assert SECRET not in proc.stdout + proc.stderr
    # outputs/ and multirun/ (.hydra/overrides.yaml, config.yaml, hydra.yaml, result.json, the
    # sweep's summary), any spool, and the server's store and artifacts: no file holds it. The
    # auth app's own database keeps a hash of it, not the password.
    assert (tmp_path / "outputs").is_dir() and (tmp_path / "multirun").is_dir()
    assert _files_holding(tmp_path, SECRET) == []
    assert _files_holding(auth_server.root, SECRET) == []

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
        patch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
        client = MlflowClient(auth_server.url)
        experiment = client.get_experiment_by_name("backproplab")
        runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 4  # the single run, the sweep's parent and its two jobs
    for run in runs:
        record = json.dumps([run.info.run_name, run.data.params, run.data.tags])
        assert SECRET not in record
        # (a sweep job's overrides come escaped by Hydra: http\://127.0.0.1\:PORT)
        assert f"logger.tracking_uri=http://127.0.0.1:{auth_server.port}" in run.data.tags["hydra.overrides"].replace("\\", "")


def test_a_token_in_a_query_string_is_refused_without_showing_it(tmp_path):
    proc = _command(*QUICK, f"logger.tracking_uri=http://127.0.0.1:{free_port()}/?access_token={SECRET}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "carries a secret in its query string" in proc.stderr, proc.stderr
    assert "access_token=***" in proc.stderr and SECRET not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("written", ["plain", "interpolated"])
@pytest.mark.parametrize("multirun", [False, True])
def test_a_secret_a_config_file_puts_into_the_config_is_refused_before_anything_is_written(tmp_path, written, multirun):
    """An experiment of the user's (``--config-dir``) with a database password in its URI, as
    text or through ``${oc.env:...}``: Hydra would copy the text into .hydra/config.yaml, and
    the run's checkpoint would keep the resolved value."""
    uri = f"postgresql://{ADMIN}:{SECRET}@127.0.0.1:{free_port()}/db"
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    value = uri if written == "plain" else "${oc.env:STORE_URI}"
    (tmp_path / "conf" / "experiment" / "mine.yaml").write_text(f"# @package _global_\nlogger:\n  tracking_uri: {value}\n")
    (tmp_path / "run").mkdir()
    sweep = ["-m", "optimizer.lr=0.1,0.2"] if multirun else []
    env = _clean_env(STORE_URI=uri)
    proc = _command("--config-dir", str(tmp_path / "conf"), *sweep, *QUICK, "experiment=mine", cwd=tmp_path / "run", env=env)
    assert proc.returncode == 2, proc.stderr
    how = "from a config file" if written == "plain" else "through an interpolation"
    line = f"error: logger.tracking_uri=postgresql://{ADMIN}:***@127.0.0.1:"
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(line) and f"puts a secret into the config {how}" in proc.stderr
    assert "PGPASSWORD or ~/.pgpass for PostgreSQL" in proc.stderr and SECRET not in proc.stdout + proc.stderr
    assert list((tmp_path / "run").iterdir()) == []


class _BrokenApi(http.server.BaseHTTPRequestHandler):
    """/health answers 200; every API call fails as ``server.api`` says: 500, or an HTML page."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/health":
            self._reply(200, "text/plain", b"OK")
        elif self.server.api == "500":
            self._reply(500, "text/plain", b"Internal Server Error")
        else:
            self._reply(200, "text/html", b"<html><body>Sign in</body></html>")

    do_POST = do_GET

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def broken_api():
    with http_serving(_BrokenApi) as server:
        yield server


@pytest.mark.parametrize("api, what", [("500", "gave HTTP 500"), ("html", "gave a text/html page, not JSON")])
def test_a_server_whose_api_fails_behind_a_healthy_health_is_refused_up_front(tmp_path, broken_api, api, what):
    broken_api.api = api
    uri = f"http://127.0.0.1:{broken_api.server_address[1]}"
    for args in ((*QUICK,), ("-m", *QUICK, "optimizer.lr=0.1,0.2")):
        proc = _command(*args, f"logger.tracking_uri={uri}", cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith(f"error: MLflow tracking server {uri} answers /health but its tracking API does not work"), proc.stderr
        assert what in proc.stderr
        assert list(tmp_path.iterdir()) == []  # no outputs/, no multirun/


def test_replay_to_a_dead_server_advises_replays_own_option(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    spool = tmp_path / "run.jsonl"
    spool.write_text(json.dumps({"backproplab_spool": 1, "run_id": "0" * 32, "tracking_uri": dead}) + "\n")
    for extra in ((), ("--tracking-uri", dead)):
        proc = subprocess.run(
            [sys.executable, "-m", "backproplab", "runs", "replay", str(spool), *extra],
            cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith(f"error: MLflow tracking server {dead} is not reachable"), proc.stderr
        assert "give --tracking-uri the store the runs were logged to" in proc.stderr
        assert "logger" not in proc.stderr


# -- redaction, as a property -------------------------------------------------------------------
_PASSWORDS = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=30).filter(
    lambda p: p.strip("*") and "***" not in p
)


@settings(max_examples=200, deadline=None)
@given(user=st.from_regex(r"[a-z][a-z0-9_.-]{0,12}", fullmatch=True), password=_PASSWORDS, scheme=st.sampled_from(["http", "https", "postgresql+psycopg", "mysql"]))
def test_no_password_survives_redaction_or_the_command_line(user, password, scheme):
    from backproplab.tracking.transport.credentials import redact, reveal, take_credentials

    uri = f"{scheme}://{user}:{quote(password, safe='')}@127.0.0.1:5071/db"
    masked = f"{scheme}://{user}:***@127.0.0.1:5071/db"
    # Whole strings compared: a password may also be a word of the text around it ("tracking").
    for text in ("{}", "error: {} is not reachable", "a=1 logger.tracking_uri={} b=2"):
        assert redact(text.format(uri)) == text.format(masked)
    environ: dict[str, str] = {}
    (arg,) = take_credentials([f"logger.tracking_uri={uri}"], environ)
    if scheme.startswith("http"):
        assert arg == f"logger.tracking_uri={scheme}://127.0.0.1:5071/db"
        assert (environ["MLFLOW_TRACKING_USERNAME"], environ["MLFLOW_TRACKING_PASSWORD"]) == (user, password)
    else:
        assert arg == f"logger.tracking_uri={masked}"
        assert reveal(arg.split("=", 1)[1], environ) == uri


class _StoreRefusing:
    """A client whose store answers get_run with an error that quotes a URI, as a database
    driver's connection error does."""

    def __init__(self, message: str) -> None:
        self.message = message

    def get_run(self, run_id: str):
        raise RuntimeError(self.message)


@pytest.mark.parametrize("offset", range(90, 130, 2))  # the cut at 160 falls before, inside and after the password
def test_a_store_error_cut_to_one_line_never_keeps_part_of_a_password(offset):
    """The store's reason is cut to fit the line: masked first, then cut, so a cut that falls
    inside the password cannot leave a piece the mask no longer recognises."""
    from backproplab.errors import ConfigError
    from backproplab.tracking.transport.store import stored_run

    password = "Zq8secretWORD77"
    reason = "x" * offset + f" postgresql+psycopg://alice:{password}@127.0.0.1:5432/mlflow refused"
    with pytest.raises(ConfigError) as raised:
        stored_run(_StoreRefusing(reason), "abc", missing="run abc is not in this store", valid="another store")
    message = str(raised.value)
    assert message.startswith("run abc is not in this store (RuntimeError: ") and message.endswith("); valid: another store")
    assert "Zq8s" not in message, message
