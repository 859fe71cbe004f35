"""Run tags: which code and which plugins produced a run, and how it was invoked."""

from __future__ import annotations

import functools
import getpass
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

from ..transport.credentials import redact
from ..mlflow_private import MAX_TAG_VAL_LENGTH
from ..transport.limits import truncate

GIT_COMMIT_TAG = "mlflow.source.git.commit"
OWN_COMMIT_TAG = "backproplab.git_commit"


@functools.lru_cache(maxsize=None)
def git_commit(directory: str | None = None) -> str | None:
    """HEAD of the git repository holding ``directory`` (default: backproplab's own source tree,
    i.e. an editable install), else None.

    Best effort by design: no git, no repository or a slow filesystem all mean "unknown".
    """
    where = Path(directory) if directory else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


def base_tags(version: str, workdir: str | None = None) -> dict[str, str]:
    """``mlflow.source.git.commit`` is the user's project (the repository of the directory the
    run was started from), as MLflow records it for a script; backproplab's own checkout, when it
    is one, goes to ``backproplab.git_commit``."""
    tags = {
        "backproplab.version": version,
        "mlflow.user": _user(),
        "mlflow.source.name": "backproplab",
        "mlflow.source.type": "LOCAL",
    }
    project = git_commit(str(Path(workdir or Path.cwd()).resolve()))
    if project:
        tags[GIT_COMMIT_TAG] = project
    own = git_commit()
    if own:
        tags[OWN_COMMIT_TAG] = own
    return tags


def component_tags(components: Iterable) -> dict[str, str]:
    """``component.<role>`` = registered name; ``component.<role>.plugin`` = distribution and version."""
    tags: dict[str, str] = {}
    for info in components:
        tags[f"component.{info.role}"] = info.name
        tags[f"component.{info.role}.plugin"] = f"{info.source.distribution} {info.source.version}"
    return tags


def overrides_tag(overrides: Sequence[str]) -> str:
    return truncate(redact(" ".join(overrides)), MAX_TAG_VAL_LENGTH)


def one_line(exc: BaseException) -> str:
    """The reason as the console states it, cut to fit a tag; no password of a URI in it."""
    from backproplab.errors import exception_line

    return truncate(redact(exception_line(exc)), 1000)


HOST_TAG = "backproplab.host"
PID_TAG = "backproplab.pid"
PID_START_TAG = "backproplab.pid_start"


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (field 22 of /proc/PID/stat), or
    None where /proc does not exist. With the PID it names one process even after PID reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ')'.
    return stat[stat.rindex(")") + 2 :].split()[19]


def process_tags() -> dict[str, str]:
    """Which process owns the run, so ``backproplab runs reap`` can tell a run whose process was
    killed (kill -9, OOM, power loss) from one still training."""
    import os
    import socket

    pid = os.getpid()
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(pid)}
    start = process_start(pid)
    if start is not None:
        tags[PID_START_TAG] = start
    return tags
