"""The cheap half of "is the tracking store usable?": no mlflow import, so a single run can ask
it before Hydra creates an output folder. ``store.connect`` adds the MLflow half.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from backproplab.errors import ConfigError

HEALTH_TIMEOUT_S = 3.0


def check_reachable(tracking_uri: str | None) -> None:
    """A dead server or a missing sqlite directory as one ConfigError; anything else passes."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        check_http(uri)
    elif scheme == "sqlite":
        check_sqlite(uri)


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


def check_sqlite(uri: str) -> None:
    parsed = urlparse(uri)
    path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else parsed.path
    if not path or path == ":memory:":
        return
    directory = Path(path).expanduser().parent
    if not directory.is_dir():
        raise ConfigError(f"tracking_uri {uri}: directory {directory} does not exist; create it or fix logger.tracking_uri")
