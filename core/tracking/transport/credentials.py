"""Secrets in URIs: kept out of every message, file, tag, parameter and run name.

A tracking URI may carry a password (``http://user:secret@host``, ``postgresql://user:pw@db/x``)
or a token in its query (``?token=...``). Whatever a run records or prints goes through
``redact``, which masks both as ``***``. The command line goes through ``take_credentials``
before Hydra sees it, because Hydra copies every override into ``.hydra/overrides.yaml``, the
composed config, the job's name and the run's ``hydra.overrides`` tag:

* a server's ``user:password@`` moves into ``MLFLOW_TRACKING_USERNAME`` and
  ``MLFLOW_TRACKING_PASSWORD``, MLflow's own way to authenticate to a server, which every MLflow
  client of the process and of its child processes (sweep workers) reads; the override keeps the
  URI without them;
* a database URI's password moves into an environment variable of backproplab's
  (``SECRETS_ENV``), keyed by the redacted URI, which ``reveal`` puts back where the URI is
  opened;
* a token in a query string has no place MLflow reads it from, so the override is refused with
  one line naming MLflow's variables.

Nothing here imports mlflow: the CLI calls it before anything else is loaded.
"""

from __future__ import annotations

import json
import os
import re
from typing import Mapping, MutableMapping, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from backproplab.errors import ConfigError

MASK = "***"
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"
# Redacted database URI -> the URI with its password, for this process and its children.
SECRETS_ENV = "BACKPROPLAB_URI_SECRETS"
# Query parameters that carry a credential by their name (token, access_token, password,
# api_key, X-Amz-Signature, sig, secret, auth, credential...).
SECRET_PARAM = re.compile(r"(pass|pwd|token|secret|key|auth|credential|signature|^sig$)", re.IGNORECASE)
# Any URI in free text: a scheme, "://", then everything up to white space, a quote, or a comma
# or bracket (Hydra's sweep and list syntax: ``key=URI1,URI2``).
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>,\[\]()]+")
_HTTP = ("http", "https")


def _redact_uri(uri: str) -> str:
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:  # a port that is not a number: cut the whole user part out by hand
        return re.sub(r"://[^/@\s]*@", f"://{MASK}@", uri, count=1)
    netloc = parts.netloc
    if password is not None:
        user_end = netloc.rindex("@")
        user = netloc[:user_end].split(":", 1)[0]
        netloc = f"{user}:{MASK}{netloc[user_end:]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_PARAM.search(k) for k, _ in pairs):
            query = "&".join(f"{k}={MASK if SECRET_PARAM.search(k) else v}" for k, v in pairs)
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(text: str) -> str:
    """``text`` with the password and secret query parameters of every URI in it masked."""
    if "://" not in text:
        return text
    return _URI.sub(lambda m: _redact_uri(m.group(0)), text)


def public(uri: str) -> str:
    """The URI as it may be written down (a spool's header, a message): a server's without its
    ``user:password@`` (MLflow's variables carry those), any other with its secrets masked."""
    try:
        if urlsplit(uri).scheme.lower() in _HTTP:
            uri = server_credentials(uri)[0]
    except ValueError:
        pass
    return redact(uri)


def reveal(uri: str, environ: Mapping[str, str] | None = None) -> str:
    """The URI with the database password ``take_credentials`` moved out of it put back."""
    if MASK not in uri:
        return uri
    stored = (os.environ if environ is None else environ).get(SECRETS_ENV)
    if not stored:
        return uri
    try:
        return json.loads(stored).get(uri, uri)
    except ValueError:
        return uri


def server_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without ``user:password@``, user, password) of a server's URI."""
    parts = urlsplit(uri)
    if parts.username is None:
        return uri, None, None
    host = parts.netloc.rsplit("@", 1)[1]
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, unquote(parts.username), None if parts.password is None else unquote(parts.password)


def take_uri(key: str, uri: str, environ: MutableMapping[str, str] | None = None) -> str:
    """The URI to use for ``key=uri``; its secret moved into ``environ`` (the process's
    environment by default), or a ConfigError naming ``key`` for one that cannot be moved."""
    environ = os.environ if environ is None else environ
    shown = redact(uri)
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError as exc:
        raise ConfigError(key=key, value=shown, problem=f"is not a valid URI ({exc})") from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(SECRET_PARAM.search(k) for k, _ in query):
        raise ConfigError(
            key=key,
            value=shown,
            problem="carries a secret in its query string, which would be stored with the run and which MLflow does not send",
            valid=f"the URI without it, and the credential in {TOKEN_ENV} (a bearer token) or {USERNAME_ENV} and {PASSWORD_ENV}",
        )
    scheme = parts.scheme.lower()
    if scheme in _HTTP:
        clean, user, password = server_credentials(uri)
        for name, value in ((USERNAME_ENV, user), (PASSWORD_ENV, password)):
            if value is None:
                continue
            if environ.get(name, value) != value:
                raise ConfigError(
                    key=key, value=shown, problem=f"names other credentials than {name}, which is set too",
                    valid=f"one of them: the URI without user:password@, or {name} unset",
                )
            environ[name] = value
        return clean
    if parts.password is None:
        return uri
    stored = json.loads(environ.get(SECRETS_ENV) or "{}")
    stored[shown] = uri
    environ[SECRETS_ENV] = json.dumps(stored)
    return shown


def take_credentials(args: Sequence[str], environ: MutableMapping[str, str] | None = None) -> list[str]:
    """The command line with the credentials of every URI value moved into ``environ`` (the
    process's environment by default); see the module's docstring. A ConfigError for a secret
    that cannot be moved."""
    environ = os.environ if environ is None else environ
    out = []
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq or "://" not in value or arg.startswith("-"):
            out.append(arg)
            continue
        out.append(key + eq + _URI.sub(lambda m: take_uri(key.lstrip("+~"), m.group(0), environ), value))
    return out
