"""Every job a command line would run, composed and checked before Hydra runs anything.

Hydra launches a multirun job by job: without this check a bad value in a sweep list
(``optimizer.lr=0.5,abc``) or a typo'd key (``modl.x=1,2``) is only found when its job comes
up, after earlier jobs have trained and after the MLflow parent run exists. Here the launching
process, before Hydra runs anything, expands the sweep exactly as the configured sweeper does
(its own ``split_arguments``, over ``hydra.sweeper.params`` and the command line), composes each
job exactly as the launcher will (``ConfigLoader.load_sweep_config``), and runs the single run's
own checks on it (``check_job``: ``backproplab.run.job.prepare``'s config validation, data and
components, then the ``logger`` node). The first bad job becomes one error line; nothing has
been trained, tracked or written.

A single run gets the same: its one job is composed as ``Hydra.run`` will compose it and
checked before Hydra creates ``outputs/DATE/TIME/``, so a rejected run leaves no folder; its
error is the one the run itself would raise.

Sweepers that choose their jobs while they run (e.g. Optuna) have no ``split_arguments``: for
them only the composition of the sweep as a whole is checked here.
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from backproplab.tracking.parent import swept_overrides  # no mlflow: plain strings

from .error_report import EXIT_CONFIG, describe
from backproplab.errors import BackproplabError, ConfigError

CONF_MODULE = "backproplab.conf"
CONFIG_NAME = "config"


@dataclass(frozen=True)
class Job:
    num: int  # hydra.job.num
    overrides: tuple[str, ...]  # the job's overrides, as the launcher passes them


class FlagError(Exception):
    """A malformed flag on the command line, in argparse's own words (``argument --cfg/-c: ...``)."""


def flag_parser() -> Any:
    """Hydra's own argument parser, raising ``FlagError`` instead of printing its usage and exiting."""
    # Private, but it is the parser hydra.main itself uses: the flags mean exactly what Hydra
    # will make of them.
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def error(message: str) -> Any:
        raise FlagError(message)

    parser.error = error  # type: ignore[method-assign]
    return parser


def hydra_args(args: Sequence[str]) -> Any | None:
    """Hydra's own reading of the command line (flags, overrides); None if it is malformed."""
    try:
        namespace, _unknown = flag_parser().parse_known_args(list(args))
    except FlagError:  # the CLI reports a malformed flag before any check runs
        return None
    return namespace


def task_overrides(master: DictConfig) -> list[str]:
    """The command line's overrides as typed, interpolations unresolved (as Hydra's sweeper reads them)."""
    node = OmegaConf.select(master, "hydra.overrides.task")
    return [] if node is None else [str(o) for o in OmegaConf.to_container(node, resolve=False)]  # type: ignore[union-attr]


def expand(master: DictConfig, config_loader: Any) -> list[Job] | None:
    """The jobs of the multirun ``master`` describes, numbered as Hydra numbers them; None when
    the configured sweeper decides its jobs only while it runs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.utils import get_class

    target = OmegaConf.select(master, "hydra.sweeper._target_")
    try:
        sweeper = get_class(str(target))
    except Exception:  # noqa: BLE001 - Hydra reports an unknown sweeper itself
        return None
    split = getattr(sweeper, "split_arguments", None)
    if split is None:
        return None
    params = OmegaConf.select(master, "hydra.sweeper.params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += task_overrides(master)
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(arguments)
    batches = split(parsed, None)
    return [Job(num, tuple(job)) for num, job in enumerate(job for batch in batches for job in batch)]


def swept_parameters(master: DictConfig) -> dict[str, str]:
    """Swept key -> the values as typed, from ``hydra.sweeper.params`` and the command line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    swept = {str(key): str(value) for key, value in (OmegaConf.select(master, "hydra.sweeper.params") or {}).items()}
    for override in OverridesParser.create().parse_overrides(task_overrides(master)):
        if override.is_sweep_override():
            swept[override.get_key_element().lstrip("+~")] = override.input_line.split("=", 1)[1]
    return swept


def job_config(config_loader: Any, master: DictConfig, job: Job) -> DictConfig:
    """The job's task config, composed and completed the way Hydra's launcher and ``run_job``
    do it (job number, output dir, ``HydraConfig``), so interpolations resolve as in the job."""
    cfg = config_loader.load_sweep_config(master_config=master, sweep_overrides=list(job.overrides))
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.job.id = f"preflight_{job.num}"
        cfg.hydra.job.num = job.num
    output_dir = os.path.join(str(OmegaConf.select(cfg, "hydra.sweep.dir")), str(OmegaConf.select(cfg, "hydra.sweep.subdir")))
    return _task_config(cfg, output_dir)


def _task_config(cfg: DictConfig, output_dir: str) -> DictConfig:
    """``cfg`` as ``run_job`` hands it to the task: the output dir (never created) set, the
    ``HydraConfig`` singleton set, and the ``hydra`` node removed."""
    from hydra.core.hydra_config import HydraConfig

    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = os.path.abspath(output_dir)
    HydraConfig.instance().set_config(cfg)
    task_cfg = copy.deepcopy(cfg)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    return task_cfg


def _label(job: Job, keys: Iterable[str]) -> str:
    return " ".join(swept_overrides(job.overrides, keys) or job.overrides)


@dataclass(frozen=True)
class _Session:
    loader: Any  # Hydra's config loader, as hydra.main initialises it
    overrides: list[str]  # the command line's overrides plus the hydra.mode Hydra will add
    multirun: bool


@contextlib.contextmanager
def _session(args: Sequence[str]) -> Iterator[_Session | None]:
    """Hydra initialised as ``hydra.main`` will initialise it, and its choice of mode; None when
    ``args`` do not start a run of the app's own config (--help, --cfg, another config...)."""
    ns = hydra_args(args)
    if ns is None or ns.help or ns.hydra_help or ns.cfg or ns.info or ns.shell_completion:
        yield None
        return
    if ns.config_path or ns.config_name or ns.config_dir or getattr(ns, "experimental_rerun", None):
        yield None  # another primary config: Hydra's own checks only
        return
    if ns.run and ns.multirun:
        yield None  # Hydra refuses the pair itself
        return
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .config_store import register_configs

    register_configs()

    overrides = list(ns.overrides or [])
    saved = HydraConfig.instance().cfg  # job configs set it, as run_job does
    try:
        with initialize_config_module(CONF_MODULE, version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            # Hydra's own choice of mode (hydra.main: get_mode, then _run_app): --multirun, or
            # hydra.mode in the config (experiments such as lr_sweep set it).
            try:
                probe = loader.load_configuration(
                    CONFIG_NAME, list(overrides), run_mode=RunMode.MULTIRUN, from_shell=True, validate_sweep_overrides=False
                )
                mode = probe.hydra.mode
            except Exception:  # noqa: BLE001 - the run itself will report it
                mode = None
            multirun = bool(ns.multirun) or mode == RunMode.MULTIRUN
            if multirun and (mode is None or (ns.multirun and mode == RunMode.RUN)):
                overrides.append("hydra.mode=MULTIRUN")
            elif not multirun and mode is None:
                overrides.append("hydra.mode=RUN")
            yield _Session(loader, overrides, multirun)
    finally:
        HydraConfig.instance().cfg = saved


@contextlib.contextmanager
def _multirun(args: Sequence[str]) -> Iterator[tuple[Any, DictConfig, list[Job]] | None]:
    """(config loader, master config, jobs) while Hydra is initialised as ``hydra.main`` will
    initialise it; None when ``args`` do not start a multirun whose jobs are known up front."""
    with _session(args) as session:
        if session is None or not session.multirun:
            yield None
            return
        yield _sweep(session)


def _sweep(session: _Session) -> tuple[Any, DictConfig, list[Job]] | None:
    from hydra.types import RunMode

    master = session.loader.load_configuration(CONFIG_NAME, session.overrides, run_mode=RunMode.MULTIRUN, from_shell=True)
    jobs = expand(master, session.loader)
    return None if jobs is None else (session.loader, master, jobs)


def run_config(session: _Session) -> DictConfig:
    """The single run's task config, composed and completed the way ``Hydra.run`` and ``run_job``
    do it (output dir, ``HydraConfig``), but without creating the output directory."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    cfg = session.loader.load_configuration(CONFIG_NAME, session.overrides, run_mode=RunMode.RUN, from_shell=True)
    HydraConfig.instance().set_config(cfg)  # as Hydra.run does before it reads hydra.run.dir
    return _task_config(cfg, str(OmegaConf.select(cfg, "hydra.run.dir")))


def check_job(cfg: DictConfig) -> Any:
    """The checks a run makes before it trains, on one composed job: ``app.prepare`` (config,
    data, components), then the ``logger`` node as ``track_run`` reads it. Whether the tracking
    store is reachable is checked once per command: by ``check`` for a single run, by the sweep
    callback for a multirun. Returns the job's ``TrackingSettings``."""
    from backproplab.run.job import prepare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the job shows its own warnings when it runs
        logger = prepare(cfg).config.logger
    from backproplab.tracking.settings import TrackingSettings  # no mlflow import: settings are plain checks

    return TrackingSettings.from_mapping(logger)


def sweep_jobs(args: Sequence[str]) -> list[Job] | None:
    """The jobs the command line ``args`` would launch, in Hydra's order and numbering; None
    when they are not a multirun (or the sweeper picks its jobs as it goes)."""
    with _multirun(args) as sweep:
        return None if sweep is None else sweep[2]


def check(args: Sequence[str]) -> int | None:
    """Everything the command line ``args`` would run, checked before Hydra runs it (and before
    it creates an output directory): every job of a multirun (``check_multirun``), or the one
    job of a single run, whose error is the exception the run itself would raise. The number of
    jobs checked; None when ``args`` run nothing (``--help``, ``--cfg``) or their jobs are only
    known as the sweeper runs."""
    with _session(args) as session:
        if session is None:
            return None
        if session.multirun:
            return _check_sweep(_sweep(session))
        settings = check_job(run_config(session))
        if settings.enabled:
            # Before Hydra creates outputs/DATE/TIME/: a dead server leaves nothing behind.
            from backproplab.tracking.reachability import check_reachable

            check_reachable(settings.tracking_uri)
        return 1


def check_multirun(args: Sequence[str]) -> int | None:
    """If ``args`` start a multirun, compose and validate every job; the number of jobs checked
    (None when ``args`` are not a multirun). Raises a one-line ``ConfigError`` naming the
    first job that cannot run (or the composition error of the sweep as a whole)."""
    with _multirun(args) as sweep:
        return None if sweep is None else _check_sweep(sweep)


def _check_sweep(sweep: tuple[Any, DictConfig, list[Job]] | None) -> int | None:
    if sweep is None:
        return None
    loader, master, jobs = sweep
    keys = swept_parameters(master)
    bad: list[tuple[Job, BaseException]] = []
    for job in jobs:
        try:
            check_job(job_config(loader, master, job))
        except Exception as exc:  # noqa: BLE001 - reported below, as the job would
            bad.append((job, exc))
    if bad:
        job, exc = bad[0]
        line, code = describe(exc)
        reason = line.removeprefix("error: ")
        if len(bad) == 1:
            message = f"sweep job #{job.num} of {len(jobs)} ({_label(job, keys)}) is invalid, so no job was started: {reason}"
        else:
            message = (
                f"{len(bad)} of {len(jobs)} sweep jobs are invalid, so no job was started; "
                f"the first, #{job.num} ({_label(job, keys)}): {reason}"
            )
        # A config mistake keeps exit code 2; anything else (a plugin raising) is a failure, 1.
        raise (ConfigError if code == EXIT_CONFIG else BackproplabError)(message)
    return len(jobs)


__all__ = [
    "FlagError", "flag_parser", "check", "check_job", "check_multirun", "run_config", "sweep_jobs", "expand",
    "hydra_args", "job_config", "swept_parameters", "swept_overrides", "Job",
]
