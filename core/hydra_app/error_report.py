"""Exceptions to the one line (and exit code) the command prints instead of a traceback."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from backproplab.tracking.signals import Terminated  # no mlflow: plain signal handling
from backproplab.errors import BackproplabError, ConfigError, closest, exception_line, format_problem, one_line

EXIT_FAILED = 1  # training failed (non-finite loss, a plugin raising, an unexpected error)
EXIT_CONFIG = 2  # the command line or config is wrong; nothing was trained
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM, what schedulers (SLURM, Kubernetes) expect after a kill

# The CLI forces HYDRA_FULL_ERROR=1 so that Hydra hands every exception back to it instead of
# printing its own multi-line report; whether the *user* asked for tracebacks is kept here.
TRACEBACK_ENV = "BACKPROPLAB_TRACEBACK"


def one_line_warnings() -> None:
    """Show warnings (e.g. the batch_size clamp) as one ``warning:`` line, without Python's
    ``path:line: Category:`` prefix and source excerpt. Per process: the CLI installs it, and so
    does every job (``hydra_app.task``), which is what reaches joblib's worker processes."""

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        text = " ".join(str(message).split())
        print(f"warning: {text}", file=file or sys.stderr, flush=True)

    warnings.showwarning = show  # type: ignore[assignment]


def tracebacks_wanted() -> bool:
    return os.environ.get(TRACEBACK_ENV, os.environ.get("HYDRA_FULL_ERROR", "")) == "1"


def _hydra_line(exc: BaseException) -> str | None:
    """Hydra's and OmegaConf's composition errors, rephrased as one line; None if not one of them."""
    try:
        from hydra.errors import HydraException, MissingConfigException
        from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException
    except ImportError:  # pragma: no cover - hydra is a dependency
        return None
    if isinstance(exc, MissingConfigException):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "config not found"
        options = getattr(exc, "options", None)
        return f"{first}; available: {', '.join(options)}" if options else first
    if isinstance(exc, HydraException):
        cause = exc.__cause__
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(cause, "full_key", None):
            key = cause.full_key
            parent = getattr(cause, "parent_node", None)
            keys = [str(k) for k in parent.keys()] if parent is not None and hasattr(parent, "keys") else None
            return format_problem(
                key,
                problem="is not a key of the config",
                valid=keys,
                valid_label="valid keys",
                hint=closest(str(key).rsplit(".", 1)[-1], keys) if keys else None,
            )
        text = one_line(exc)
        if isinstance(cause, OmegaConfBaseException):
            text = f"{text}; {one_line(cause)}"
        return text
    if isinstance(exc, OmegaConfBaseException):
        return one_line(exc)
    return None


def describe(exc: BaseException) -> tuple[str, int]:
    """(one line, exit code) for an exception that reached the command line."""
    if isinstance(exc, Terminated):
        return "interrupted (SIGTERM)", EXIT_TERMINATED
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(exc, ConfigError):
        return f"error: {one_line(exc)}", EXIT_CONFIG
    if isinstance(exc, BackproplabError):
        return f"error: {one_line(exc)}", EXIT_FAILED
    hydra_line = _hydra_line(exc)
    if hydra_line is not None:
        return f"error: {hydra_line}", EXIT_CONFIG
    return f"error: {exception_line(exc)} (set HYDRA_FULL_ERROR=1 for the traceback)", EXIT_FAILED
