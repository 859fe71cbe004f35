"""The Hydra side of a sweep's one object (``backproplab.run.sweep.Sweep``): filled from the
config Hydra composed, continued from the sweep folder's record, and its closing lines.

A failed job must not stop the sweep, so the task function returns instead of raising, and its
``result.json`` records the outcome with its job number (``hydra.job.num``) and the sweep's id.
When the sweep ends, the launching process (basic or joblib launcher, whose workers are other
processes, or Ray's, on other machines: the files are what reaches back) reads those records,
and the tracked children when there are any, writes ``sweep_summary.csv`` into the sweep folder
and prints the closing block (``command.CommandCallback``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from backproplab.errors import ConfigError
from backproplab.run.sweep import RESULT_FILE, SUMMARY_FILE, Sweep, SweepMismatch

from .preflight import expand, sweeper_choice, swept_parameters

__all__ = ["RESULT_FILE", "SUMMARY_FILE", "sweep_dir_of", "sweep_of"]


def sweep_dir_of(config: DictConfig) -> Path:
    """``hydra.sweep.dir`` as an absolute path: relative to where Hydra was started, even if
    the job has since changed directory."""
    path = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
    cwd = OmegaConf.select(config, "hydra.runtime.cwd")
    return path if path.is_absolute() or not cwd else Path(str(cwd)) / path


def sweep_of(config: DictConfig) -> Sweep:
    """The sweep Hydra composed as ``config`` (the multirun's master config), continuing the
    one recorded in its folder when there is one; a ``ConfigError`` naming the first differing
    job when that folder holds another sweep."""
    try:
        jobs = expand(config, None)
    except Exception:  # noqa: BLE001 - the sweeper reports a sweep it cannot expand
        jobs = None
    sampled = sweeper_choice(config) not in (None, "basic")
    sweep = Sweep(
        sweep_dir_of(config),
        None if jobs is None else list(jobs),
        swept_parameters(config),
        str(OmegaConf.select(config, "trainer.objective", default="auto")),
        sampled,
    )
    earlier = Sweep.read(sweep.sweep_dir)
    if earlier is not None:
        try:
            sweep.continue_from(earlier)
        except SweepMismatch as exc:
            raise ConfigError(str(exc)) from None
    return sweep


def ensure_record(sweep: Any, config: DictConfig) -> None:
    """In a job's process: the sweep's record in the sweep folder as this machine sees it. A Ray
    worker on another machine has no copy of the launching machine's folder; the job reads its
    part of the sweep (its decision, the parent run) from there."""
    recorded = Sweep.read(sweep.sweep_dir)
    if recorded is None or recorded.sweep_id != sweep.sweep_id:
        sweep.write()
