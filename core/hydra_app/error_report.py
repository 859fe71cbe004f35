"""Exceptions to the one line (and exit code) the command prints instead of a traceback."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import warnings
from typing import Any, Sequence

from backproplab.run.stopping import Terminated, exit_code, signal_name
from backproplab.run.schema import config_error as schema_config_error
from backproplab.errors import BackproplabError, ConfigError, closest, exception_line, format_problem, one_line

EXIT_FAILED = 1  # training failed (non-finite loss, a plugin raising, an unexpected error)
EXIT_CONFIG = 2  # the command line or config is wrong; nothing was trained
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM, what schedulers (SLURM, Kubernetes) expect after a kill
EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE, as a shell reports ``yes | head -1``

# The CLI forces HYDRA_FULL_ERROR=1 so that Hydra hands every exception back to it instead of
# printing its own multi-line report; whether the *user* asked for tracebacks is kept here.
TRACEBACK_ENV = "BACKPROPLAB_TRACEBACK"


# Hydra plugins that backproplab's extras install: (group, option) -> (distribution, the
# plugin's module, extra). Hydra itself only says the option is not found, which does not tell
# a user that a pip install is all that is missing.
PLUGIN_EXTRAS = {
    ("hydra/launcher", "joblib"): ("hydra-joblib-launcher", "hydra_plugins.hydra_joblib_launcher", "parallel"),
    ("hydra/launcher", "ray"): ("hydra-ray-launcher", "hydra_plugins.hydra_ray_launcher", "ray"),
    ("hydra/launcher", "submitit_slurm"): ("hydra-submitit-launcher", "hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/launcher", "submitit_local"): ("hydra-submitit-launcher", "hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/sweeper", "optuna"): ("hydra-optuna-sweeper", "hydra_plugins.hydra_optuna_sweeper", "optuna"),
}
_NOT_FOUND = re.compile(r"Could not find '(hydra/(?:launcher|sweeper))/([^'/]+)'")


def missing_plugin(group: str, option: str) -> str | None:
    """The error text for choosing ``group=option`` when its plugin is not installed; None when
    the option is not one of an extra's, or its plugin is installed."""
    entry = PLUGIN_EXTRAS.get((group, option))
    if entry is None:
        return None
    module = entry[1]
    try:
        installed = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        installed = False
    if installed:
        return None
    return plugin_hint(group, option)


def plugin_hint(group: str, option: str) -> str:
    distribution, _module, extra = PLUGIN_EXTRAS[(group, option)]
    return (
        f"{group}={option} needs the Hydra plugin {distribution}, which is not installed; "
        f'install it with: pip install "backproplab[{extra}]"'
    )


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
        found = _NOT_FOUND.search(str(exc))
        if found and (found.group(1), found.group(2)) in PLUGIN_EXTRAS:  # e.g. from an experiment's defaults
            return plugin_hint(found.group(1), found.group(2))
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "config not found"
        options = getattr(exc, "options", None)
        return f"{first}; available: {', '.join(options)}" if options else first
    if isinstance(exc, HydraException):
        cause = exc.__cause__
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(cause, "full_key", None):
            key = cause.full_key
            parent = getattr(cause, "parent_node", None)
            keys = [str(k) for k in parent.keys()] if parent is not None and hasattr(parent, "keys") else None
            typed = re.search(r"Could not override '([^']+)'", str(exc))
            unchosen = _unchosen_option(str(key), typed.group(1) if typed else str(key), keys)
            if unchosen is not None:
                return unchosen
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


def describe(exc: BaseException, overrides: Sequence[str] = ()) -> tuple[str, int]:
    """(one line, exit code) for an exception that reached the command line. ``overrides``:
    those that were being composed (the command line's, or a job's), for the schema error whose
    value OmegaConf does not carry."""
    if isinstance(exc, Terminated):  # SIGTERM (143), SIGUSR1, SIGUSR2: 128 + the signal
        return f"interrupted ({signal_name(exc.signum)})", exit_code(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    if not isinstance(exc, BackproplabError):
        # A value a generated component schema refused while Hydra composed the config: the
        # same ConfigError (and words) as the run's own check of that value.
        exc = schema_config_error(exc, overrides) or exc
    if isinstance(exc, ConfigError):
        return f"error: {one_line(exc)}", EXIT_CONFIG
    if isinstance(exc, BackproplabError):
        return f"error: {one_line(exc)}", EXIT_FAILED
    hydra_line = _hydra_line(exc)
    if hydra_line is not None:
        return f"error: {hydra_line}", EXIT_CONFIG
    return f"error: {exception_line(exc)} (set HYDRA_FULL_ERROR=1 for the traceback)", EXIT_FAILED


def stdout_closed() -> int:
    """stdout's reader went away (``backproplab --help | head -1``): end quietly, as Unix tools
    do, with the status a shell reports for a process ended by SIGPIPE (128 + 13). A run cut
    short this way has already been recorded as failed (result.json, MLflow)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit must not fail again
    except (OSError, ValueError):
        pass
    return EXIT_STDOUT_CLOSED


def _unchosen_option(missing: str, key: str, keys: list[str] | None) -> str | None:
    """``callbacks.early_stopping.patience=3`` before ``callbacks=[early_stopping]`` chose it:
    an option's keys in a several-options group exist once it is chosen, which the line says.
    ``missing``: the key the config lacks (``callbacks`` or ``callbacks.early_stopping``);
    ``key``: the override's key as typed; ``keys``: those of the node it was missing from (the
    config's top level, or the group's node holding the options already chosen)."""
    from .config_store import MULTI_COMPONENT_GROUPS

    group, _, rest = key.partition(".")
    name = rest.split(".", 1)[0]
    if group not in MULTI_COMPONENT_GROUPS or not name or keys is None or missing not in (group, f"{group}.{name}"):
        return None
    chosen = [] if group in keys or "model" in keys else keys  # at the top level none is chosen yet
    return (
        f"{key} is not a key of the config: {group}.{name} exists once it is chosen, "
        f"e.g. '{group}=[{','.join([*chosen, name])}]' {key}=VALUE"
    )
