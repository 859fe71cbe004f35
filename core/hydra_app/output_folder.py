"""Which rule of ``backproplab.run.output_dir`` applies to a command's output folder.

``hydra.run.dir`` (a run) or ``hydra.sweep.dir`` (a multirun) as composed, before interpolation:

- named by the clock (it uses ``${now:...}``, as Hydra's and backproplab's defaults do): the
  folder is claimed under a name of its own, and that name is written back into the config, so
  that Hydra, the launcher and every job (a job's config is composed again from the hydra
  overrides: ``load_sweep_config``) use it;
- named by the user: it keeps its name and is locked while the command lives.

Called by the command's callback once the command has passed its checks and before Hydra
creates any folder; the callback keeps the returned lock for the command's life.
"""

from __future__ import annotations

from pathlib import Path

from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, read_write

from backproplab.run.output_dir import FolderLock, claim_unique, lock_folder

CLOCK = "${now:"


def _key(mode: RunMode) -> str:
    return "hydra.sweep.dir" if mode == RunMode.MULTIRUN else "hydra.run.dir"


def quoted(value: str) -> str:
    """``value`` as a quoted string of Hydra's override grammar."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def take_output_folder(config: DictConfig, mode: RunMode) -> FolderLock | None:
    """Claim or lock the command's folder (see the module docstring); the lock to hold, or None
    when the folder was claimed under a fresh name."""
    key = _key(mode)
    node = config.hydra.sweep if mode == RunMode.MULTIRUN else config.hydra.run
    raw = OmegaConf.to_container(node, resolve=False)["dir"]  # type: ignore[index]
    resolved = str(node.dir)
    if CLOCK not in str(raw):
        cwd = OmegaConf.select(config, "hydra.runtime.cwd", default=None)
        folder = Path(resolved) if Path(resolved).is_absolute() or not cwd else Path(str(cwd)) / resolved
        return lock_folder(folder, key=key)
    claimed = str(claim_unique(Path(resolved)))
    with read_write(node):
        node.dir = claimed
    if mode == RunMode.MULTIRUN:
        # Always, also when the first name was free: a job then never reads the clock again.
        overrides = config.hydra.overrides
        with read_write(overrides):
            overrides.hydra.append(f"{key}={quoted(claimed)}")
    return None
