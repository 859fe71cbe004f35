"""``backproplab -m ... --cfg job|hydra|all [-p PACKAGE] [--resolve]``: the config a multirun
composes, printed as Hydra's ``--cfg`` prints a single run's.

Hydra refuses ``--cfg`` beside ``--multirun`` ("Only one of --run, --multirun, --cfg ..."), and
without ``-m`` composes as a single run, where a sweep (``optimizer.lr=0.1,0.5``) is an error. But
what a user checks before a sweep is the sweep's own config: the launcher's settings
(``hydra/launcher=submitit_slurm --cfg hydra -p hydra.launcher``), the sweeper's, ``hydra.mode``.
So it is composed here as Hydra composes a multirun's config (the sweep values left to the
sweeper), and printed in Hydra's format.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from omegaconf import Container, OmegaConf, open_dict, read_write

from .preflight import CONF_MODULE, CONFIG_NAME, hydra_args


def wanted(args: Sequence[str]) -> bool:
    """Whether ``args`` ask for a multirun's config (``-m`` with ``--cfg``) of the app's own config."""
    ns = hydra_args(args)
    if ns is None or not ns.multirun or ns.cfg is None:
        return False
    return not (ns.run or ns.info or ns.shell_completion or ns.help or ns.hydra_help or ns.config_path or ns.config_name or ns.config_dir)


def _selected(cfg: Any, cfg_type: str) -> Any:
    """What Hydra's ``--cfg`` shows of a composed config: the job's part, Hydra's part (without
    its help texts) or all of it."""
    with read_write(cfg), open_dict(cfg):
        if cfg_type == "job":
            del cfg["hydra"]
        elif cfg_type == "hydra":
            for key in [k for k in cfg.keys() if k != "hydra"]:
                del cfg[key]
            with open_dict(cfg.hydra):
                del cfg.hydra["hydra_help"]
                del cfg.hydra["help"]
    return cfg


def show(args: Sequence[str]) -> int:
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from .compat import version_base
    from .config_store import register_configs

    ns = hydra_args(args)
    overrides = list(ns.overrides or [])
    if not any(text.split("=", 1)[0].lstrip("+~") == "hydra.mode" for text in overrides):
        overrides.append("hydra.mode=MULTIRUN")  # as Hydra adds it for -m
    register_configs()
    with initialize_config_module(CONF_MODULE, **version_base()):
        cfg = GlobalHydra.instance().config_loader().load_configuration(CONFIG_NAME, overrides, run_mode=RunMode.MULTIRUN, from_shell=True)
    cfg = _selected(cfg, ns.cfg)
    package = None if ns.package in (None, "_global_") else ns.package
    absent = object()
    shown = cfg if package is None else OmegaConf.select(cfg, package, default=absent)
    if shown is absent:
        print(f"error: package '{package}' is not in the --cfg {ns.cfg} config", file=sys.stderr, flush=True)
        return 2
    if not isinstance(shown, Container):
        print(shown)
        return 0
    if package is not None:
        print(f"# @package {package}")
    if ns.resolve:
        OmegaConf.resolve(shown)
    sys.stdout.write(OmegaConf.to_yaml(shown))
    return 0
