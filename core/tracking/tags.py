"""Run tags: which code and which plugins produced a run, and how it was invoked."""

from __future__ import annotations

import functools
import getpass
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from .params import truncate

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


def _launch_dir() -> str:
    """Where the user started the command: Hydra's original cwd even when a job changed directory."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return HydraConfig.get().runtime.cwd
    except Exception:  # noqa: BLE001 - outside a Hydra app
        pass
    return str(Path.cwd())


def hydra_job_num() -> str | None:
    """The running Hydra job's number in its multirun, else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return str(HydraConfig.get().job.num)
    except Exception:  # noqa: BLE001 - outside a Hydra app
        pass
    return None


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
    project = git_commit(str(Path(workdir or _launch_dir()).resolve()))
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
    return truncate(" ".join(overrides), MAX_TAG_VAL_LENGTH)


def one_line(exc: BaseException) -> str:
    """The reason as the console states it: backproplab's own errors are written for users and
    read the same in MLflow; anything else keeps its type, which is often the only clue."""
    from backproplab.errors import BackproplabError

    text = " ".join(str(exc).split()) or "(no message)"
    if isinstance(exc, BackproplabError):
        return truncate(text, 1000)
    return truncate(f"{type(exc).__name__}: {text}", 1000)
