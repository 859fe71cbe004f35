"""Every job a command line would run, composed and checked before anything is written.

Hydra launches a multirun job by job: without this check a bad value in a sweep list
(``optimizer.lr=0.5,abc``) or a typo'd key (``modl.x=1,2``) is only found when its job comes
up, after earlier jobs have trained and after the MLflow parent run exists. The app's Hydra
callback (``command.CommandCallback``) therefore calls ``check_sweep`` from ``on_multirun_start``,
on the master config Hydra composed, before the sweeper writes anything: it expands the sweep as
the basic sweeper does (``expand``: Hydra's public override parser over ``hydra.sweeper.params``
and the command line), composes each job with Hydra's own config loader as the launcher will
(``load_sweep_config``), and runs the single run's own checks on it (``check_job``:
``backproplab.run.job.prepare``'s config validation, data and components, then the ``logger``
node). The first bad job becomes one error line naming every bad job's number; nothing has been
trained, tracked or written.

A single run gets the same from ``on_run_start`` (``check_run``), on the config Hydra composed
for it, before ``run_job`` creates ``outputs/DATE/TIME/``, so a rejected run leaves no folder;
the run then trains what the check prepared (the command's callback hands it to the task).

``for_hydra`` rewrites two spellings Hydra cannot compose into equivalent ones it can (see
there); the CLI hands Hydra the rewritten command line, and everything here composes that.

Sweepers that choose their jobs while they run (e.g. Optuna) cannot be expanded: for them the
search space is checked on a representative trial (``search_trials``: every searched key at its
interval's low end or its first choice, plus the fixed overrides) and on one more trial per other
value of each choice, which catches a typo'd key, a bad fixed value or a bad choice before any
trial or MLflow run exists; an interval's other values are only met by the trials themselves. ``for_launch`` sets the Optuna
sweeper's direction from ``trainer.objective`` (or refuses a contradicting one).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from backproplab.run.sweep import Job, swept_overrides

from .error_report import EXIT_CONFIG, describe
from .compat import info_choices, version_base
from backproplab.errors import BackproplabError, ConfigError

CONF_MODULE = "backproplab.conf"
CONFIG_NAME = "config"


class FlagError(Exception):
    """A malformed flag on the command line, in argparse's own words (``argument --cfg/-c: ...``)."""


def flag_parser() -> argparse.ArgumentParser:
    """The flags ``hydra.main`` accepts, as Hydra 1.3 documents them (``--help`` of any Hydra
    app), raising ``FlagError`` instead of printing a usage text and exiting. Hydra has no public
    API for its parser (``get_args_parser`` is in ``hydra._internal``), so this is a copy, which
    ``tests/test_cli_sweep.py`` compares with Hydra's own."""

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # type: ignore[override]
            raise FlagError(message)

    parser = Parser(add_help=False, prog="backproplab")
    parser.add_argument("--help", "-h", action="store_true")
    parser.add_argument("--hydra-help", action="store_true")
    # The CLI answers a lone --version itself; among other arguments it is Hydra's to handle.
    parser.add_argument("--version", action="store_true")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--cfg", "-c", choices=["job", "hydra", "all"])
    parser.add_argument("--resolve", action="store_true")
    parser.add_argument("--package", "-p")
    parser.add_argument("--run", "-r", action="store_true")
    parser.add_argument("--multirun", "-m", action="store_true")
    parser.add_argument("--shell-completion", "-sc", action="store_true")
    parser.add_argument("--config-path", "-cp")
    parser.add_argument("--config-name", "-cn")
    parser.add_argument("--config-dir", "-cd")
    parser.add_argument("--experimental-rerun")
    parser.add_argument("--info", "-i", const="all", nargs="?", choices=info_choices())
    return parser


def options_first(args: Sequence[str]) -> list[str]:
    """``args`` with Hydra's flags (each with its value) ahead of the overrides, each group in its
    own order. Hydra's parser reads the overrides as one positional list, so overrides on both
    sides of a flag (``backproplab data=xor --config-dir conf experiment=mine``) would end in its
    usage text; the flags' place on the command line means nothing to Hydra."""
    actions = {name: action for action in flag_parser()._actions for name in action.option_strings}
    flags: list[str] = []
    overrides: list[str] = []
    tokens = list(args)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        action = actions.get(token.split("=", 1)[0]) if token.startswith("-") else None
        i += 1
        if action is None:
            overrides.append(token)
            continue
        flags.append(token)
        if "=" in token or action.nargs == 0 or i >= len(tokens):
            continue
        following = tokens[i]
        if action.nargs is None or (action.nargs == "?" and action.choices is not None and following in action.choices):
            flags.append(following)
            i += 1
    return flags + overrides


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


def sweeper_choice(master: DictConfig) -> str | None:
    """The ``hydra/sweeper`` option the config chose (``basic``, ``optuna``...), from Hydra's
    public record of the defaults list's choices (``hydra.runtime.choices``)."""
    choice = OmegaConf.select(master, "hydra.runtime.choices", default=None)
    value = None if choice is None else choice.get("hydra/sweeper")
    return None if value is None else str(value)


def sweep_arguments(master: DictConfig) -> list[str]:
    """What the basic sweeper expands: ``hydra.sweeper.params`` first, then the command line."""
    params = OmegaConf.select(master, "hydra.sweeper.params") or {}
    return [f"{key}={value}" for key, value in params.items()] + task_overrides(master)


def basic_sweeper() -> Any:
    """Hydra's basic sweeper class, found through Hydra's public plugin registry (its module is
    under ``hydra._internal``)."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    return next(c for c in Plugins.instance().discover(Sweeper) if c.__name__ == "BasicSweeper")


def expand(master: DictConfig, config_loader: Any) -> list[Job] | None:
    """The jobs of the multirun ``master`` describes, in the basic sweeper's order and numbering
    (``hydra.job.num``); None for another sweeper, which decides its jobs only while it runs.
    The basic sweeper's own ``split_arguments`` over Hydra's public override parser."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if sweeper_choice(master) not in (None, "basic"):
        return None
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(sweep_arguments(master))
    (batch,) = basic_sweeper().split_arguments(parsed, None)
    return [Job(num, tuple(job)) for num, job in enumerate(batch)]


def swept_parameters(master: DictConfig, *, single: bool = False) -> dict[str, str]:
    """Swept key -> the values as typed, from ``hydra.sweeper.params`` and the command line.
    A one-value sweep (``optimizer.beta1=choice(0.95)``, how ``for_hydra`` hands a value under a
    swept group to Hydra) varies nothing and is left out unless ``single``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    swept = {str(key): str(value) for key, value in (OmegaConf.select(master, "hydra.sweeper.params") or {}).items()}
    for override in OverridesParser.create().parse_overrides(task_overrides(master)):
        if override.is_sweep_override():
            if not single and _one_value(override):
                continue
            swept[override.get_key_element().lstrip("+~")] = override.input_line.split("=", 1)[1]
    return swept


def _one_value(override: Any) -> bool:
    try:
        return len(list(override.sweep_string_iterator())) == 1
    except Exception:  # noqa: BLE001 - glob and interval sweeps need more than the parser has
        return False


# -- the command line as Hydra is given it ------------------------------------------------------
# Two spellings Hydra cannot compose are rewritten into equivalent ones it can, before anything
# (preflight or Hydra) composes them:
#
# - ``model.activation=leaky_relu model.activation.alpha=0.2``: the activation is a plain name,
#   which has no keys to set; it becomes ``model.activation={name:leaky_relu,alpha:0.2}``, the
#   node form the config takes. The same for ``model.output_activation``.
# - ``-m optimizer=adam,adamw optimizer.beta1=0.95``: Hydra applies a non-swept override to the
#   multirun's primary config, where ``optimizer`` is still the default (sgd, no ``beta1``), and
#   refuses the sweep although every job would compose. A value set under a swept group is
#   therefore handed to Hydra as a one-value sweep (``optimizer.beta1=choice(0.95)``), which
#   Hydra applies to each job only; each job's overrides are then exactly what they would have
#   been, and each job is checked on its own config below.

ACTIVATION_KEYS = ("model.activation", "model.output_activation")
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def _bare(key: str) -> str:
    return key.lstrip("+~")


def _value_text(override: Any) -> str:
    return override.input_line.split("=", 1)[1] if "=" in override.input_line else ""


def _probe(overrides: list[str], parsed: list[Any]) -> tuple[Any, DictConfig | None]:
    """(config loader, the primary config without the dotted overrides under config groups);
    the config is None if even that does not compose (the checks that follow report why)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    loader = GlobalHydra.instance().config_loader()
    kept = [
        text for text, ov in zip(overrides, parsed)
        if ov.is_sweep_override() or "." not in _bare(ov.key_or_group) or _bare(ov.key_or_group).startswith("hydra.")
    ]
    try:
        return loader, loader.load_configuration(CONFIG_NAME, kept, run_mode=RunMode.MULTIRUN, from_shell=True, validate_sweep_overrides=False)
    except Exception:  # noqa: BLE001 - the run's own composition reports it
        return loader, None


def _activation_nodes(parsed: list[Any], out: list[list[str]], probe: DictConfig | None) -> None:
    """``model.activation.KEY=V`` merged into one ``model.activation={name:...,KEY:V}`` (in ``out``,
    the replacement of each override)."""
    for key in ACTIVATION_KEYS:
        dotted = [
            i for i, ov in enumerate(parsed)
            if ov.package is None and not ov.is_delete() and _bare(ov.key_or_group).startswith(key + ".")
            and "." not in _bare(ov.key_or_group)[len(key) + 1:]
        ]
        if not dotted:
            continue
        bases = [i for i, ov in enumerate(parsed) if _bare(ov.key_or_group) == key and not ov.is_delete() and ov.package is None]
        if bases:
            base = parsed[bases[-1]]
            names = list(base.sweep_string_iterator()) if base.is_sweep_override() else [_value_text(base)]
        else:
            current = None if probe is None else OmegaConf.select(probe, key, default=None)
            if not isinstance(current, str):
                continue  # a node already (its own keys can be set), or unknown: Hydra's message stands
            names = [current if _PLAIN_NAME.fullmatch(current) else repr(current)]
        if not all(_PLAIN_NAME.fullmatch(n) for n in names):
            continue  # {name:...,...} given already: its keys are set inside it
        columns = [[f"name:{n}" for n in names]]
        for i in dotted:
            ov = parsed[i]
            param = _bare(ov.key_or_group)[len(key) + 1:]
            values = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [_value_text(ov)]
            columns.append([f"{param}:{v}" for v in values])
        nodes = ["{" + ",".join(items) + "}" for items in itertools.product(*columns)]
        first = min([*bases, *dotted])
        for i in [*bases, *dotted]:
            out[i] = []
        out[first] = [f"{key}={','.join(nodes)}"]


def _defer_to_jobs(loader: Any, parsed: list[Any], out: list[list[str]], probe: DictConfig | None) -> None:
    """Non-swept values under a swept config group, as one-value sweeps (see above)."""
    candidates = {_bare(ov.key_or_group) for ov in parsed if ov.is_sweep_override()}
    params = None if probe is None else OmegaConf.select(probe, "hydra.sweeper.params")
    candidates |= {str(k) for k in (params or {})}
    groups = {g for g in candidates if "." not in g and not g.startswith("hydra") and loader.get_group_options(g)}
    for i, ov in enumerate(parsed):
        key = _bare(ov.key_or_group)
        if len(out[i]) != 1 or out[i][0] != ov.input_line:
            continue  # rewritten already
        if ov.is_sweep_override() or ov.is_delete() or ov.package is not None or key.split(".", 1)[0] not in groups:
            continue
        if "." not in key or not _value_text(ov):
            continue
        prefix = ov.key_or_group[: len(ov.key_or_group) - len(key)]
        out[i] = [f"{prefix}{key}=choice({_value_text(ov)})"]


# Hydra looks every override's key up as a config group, a path under each config source
# (``.../hydra/conf/KEY``): a key longer than a file name may be (NAME_MAX, 255 bytes on Linux
# and macOS) fails there with ``OSError: File name too long`` and the path of Hydra's install.
NAME_MAX = 255


def _unusable_key(key: str) -> bool:
    return any(len(part.encode("utf-8", "surrogatepass")) > NAME_MAX for part in key.split("/"))


def shorten_key(key: str) -> str:
    """A key as the user typed it, cut like a long value (``errors._show``) to stay readable."""
    return key if len(key) <= 80 else f"{key[:60]}...({len(key)} characters)"


def unusable_key_error(overrides: Sequence[str], parsed: Sequence[Any]) -> ConfigError | None:
    """The "not a key of the config" error for an override whose key Hydra cannot look up (see
    ``NAME_MAX``), naming the first part of it that is no key and the valid keys there, as
    Hydra's own message for a short unknown key does; None when every key is usable."""
    bad = [i for i, ov in enumerate(parsed) if _unusable_key(_bare(ov.key_or_group))]
    if not bad:
        return None
    from hydra import initialize_config_module

    from .config_store import register_configs

    register_configs()
    kept = [text for i, text in enumerate(overrides) if i not in bad]
    key = _bare(parsed[bad[0]].key_or_group)
    with initialize_config_module(CONF_MODULE, version_base="1.3"):
        _loader, node = _probe(kept, [ov for i, ov in enumerate(parsed) if i not in bad])
    for part in re.finditer(r"[^./]+", key):
        keys = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else None
        if keys is None or part.group() not in keys:
            from backproplab.errors import closest

            hint = closest(part.group(), keys) if keys and len(part.group()) <= NAME_MAX else None
            return ConfigError(
                key=shorten_key(key[: part.end()]), problem="is not a key of the config", valid=keys, valid_label="valid keys", hint=hint
            )
        node = node[part.group()]
    return ConfigError(key=shorten_key(key), problem="is not a key of the config")


def for_hydra(args: Sequence[str], *, single_run: bool = False) -> list[str]:
    """The command line ``args`` as backproplab hands it to Hydra (and composes it itself): the
    spellings above rewritten, everything else unchanged. ``single_run``: the overrides are
    composed as one run whatever the config's ``hydra.mode`` (``explain``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = list(args)
    ns = hydra_args(args)
    if ns is None or not ns.overrides or ns.config_path or ns.config_name or ns.config_dir or ns.experimental_rerun:
        return args
    overrides = list(ns.overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - check_overrides reports a malformed override
        return args
    activation = any(_bare(ov.key_or_group).startswith(tuple(k + "." for k in ACTIVATION_KEYS)) for ov in parsed)
    maybe_multirun = ns.multirun or any(_bare(ov.key_or_group) in ("experiment", "hydra.mode") for ov in parsed)
    under_group = any(
        not ov.is_sweep_override() and "." in _bare(ov.key_or_group) and not _bare(ov.key_or_group).startswith("hydra.")
        for ov in parsed
    )
    if not activation and (single_run or not (maybe_multirun and under_group)):
        return args
    from hydra import initialize_config_module
    from hydra.types import RunMode

    from .config_store import register_configs

    register_configs()

    out = [[text] for text in overrides]
    with initialize_config_module(CONF_MODULE, **version_base()):
        loader, probe = _probe(overrides, parsed)
        multirun = (ns.multirun or (probe is not None and probe.hydra.mode == RunMode.MULTIRUN)) and not (ns.run or single_run)
        # A sweep of a single run is Hydra's to refuse, in the user's own words: merged into
        # one model.activation={...},{...} node it would name a key the user never typed.
        if activation and (multirun or not any(ov.is_sweep_override() for ov in parsed)):
            _activation_nodes(parsed, out, probe)
        if multirun and not ns.cfg:
            _defer_to_jobs(loader, parsed, out, probe)
    rewritten, position = [], 0
    for arg in args:
        if position < len(overrides) and arg == overrides[position]:
            rewritten += out[position]
            position += 1
        else:
            rewritten.append(arg)
    return rewritten


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
    # Each override cut like a long value: a 1000-digit number is named once, in the reason.
    return " ".join(shorten_key(o) for o in (swept_overrides(job.overrides, keys) or job.overrides))


@dataclass(frozen=True)
class _Session:
    loader: Any  # Hydra's config loader, as hydra.main initialises it
    overrides: list[str]  # the command line's overrides plus the hydra.mode Hydra will add
    multirun: bool
    probe: DictConfig | None = None  # composed as a run, sweep values not validated; None if it did not compose


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
        with initialize_config_module(CONF_MODULE, **version_base()):
            loader = GlobalHydra.instance().config_loader()
            # Hydra's own choice of mode (hydra.main: get_mode, then _run_app): --multirun, or
            # hydra.mode in the config (experiments such as lr_sweep set it). Composed as a run,
            # sweep values not yet validated. Hydra has no public API for this choice (its
            # get_mode is in hydra._internal), so it is made here as Hydra documents it.
            try:
                probe = loader.load_configuration(
                    CONFIG_NAME, list(overrides), run_mode=RunMode.RUN, from_shell=True, validate_sweep_overrides=False
                )
                mode = probe.hydra.mode
            except Exception:  # noqa: BLE001 - the run itself will report it
                probe, mode = None, None
            multirun = bool(ns.multirun) or mode == RunMode.MULTIRUN
            if multirun and (mode is None or (ns.multirun and mode == RunMode.RUN)):
                overrides.append("hydra.mode=MULTIRUN")
            elif not multirun and mode is None:
                overrides.append("hydra.mode=RUN")
            yield _Session(loader, overrides, multirun, probe)
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


def check_job(cfg: DictConfig, *, sizes: list[tuple[int, int]] | None = None, loaded: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """The checks a run makes before it trains, on one composed job: ``app.prepare`` (config,
    data, components), then the ``logger`` node as ``track_run`` reads it. Whether the tracking
    store is reachable is checked once per command: by ``check_run`` for a single run, by the
    sweep's parent for a multirun. ``loaded``: the data sets the sweep's check has loaded so far
    (``app.prepare``), so that a sweep over a hundred learning rates loads its data once.
    Returns (the ``PreparedRun``, the job's ``TrackingSettings``)."""
    from backproplab.run.job import prepare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the job shows its own warnings when it runs
        prepared = prepare(cfg, loaded=loaded)
    from backproplab.tracking.lifecycle.settings import TrackingSettings  # no mlflow import: settings are plain checks

    settings = TrackingSettings.from_mapping(prepared.config.logger)
    if sizes is not None:
        sizes.append((prepared.network.n_parameters, settings.elementwise_max_params))
    return prepared, settings


@dataclass(frozen=True)
class SweepPlan:
    """What the check learnt about a multirun's networks, for the sweep's one element-wise
    decision (``mlflow_sweep``): each job's (parameter count, ``logger.elementwise_max_params``),
    or why they are not known up front (a search over a key that changes the network)."""

    sizes: tuple[tuple[int, int], ...] = ()
    unknown: str | None = None
    # Job number -> the run the check prepared for it, handed to the job when it runs in this
    # process (the basic launcher), so its data are loaded once; kept only while the data of
    # all jobs together stay within ``KEPT_DATA_BYTES``.
    prepared: dict[int, Any] = field(default_factory=dict, compare=False, repr=False)


KEPT_DATA_BYTES = 256 * 2**20


def _data_bytes(prepared: Any, counted: Any = ()) -> int:
    """The memory ``prepared`` adds to the runs ``counted``: its data set only if none of them
    shares it (jobs of one data set share its arrays), its encoded targets always."""
    data = prepared.dataset
    own = sum(getattr(a, "nbytes", 0) for a in (prepared.y_train, prepared.y_val))
    if any(other.dataset is data for other in counted):
        return own
    return own + sum(getattr(a, "nbytes", 0) for a in (data.X_train, data.y_train, data.X_val, data.y_val))


# Searched keys that leave every network's size alone; a search over any other key (model.hidden,
# data, loss, logger.elementwise_max_params...) makes the sizes unknown up front.
SIZE_NEUTRAL = (
    "optimizer", "trainer", "initializer", "schedule", "callbacks", "model.activation", "model.output_activation", "model.dtype",
    "data.batch_size", "data.shuffle", "data.seed", "data.noise", "data.n_samples", "data.val_fraction", "data.standardize",
)


def _size_neutral(key: str) -> bool:
    if key.startswith("logger.") and key != "logger.elementwise_max_params":
        return True
    return any(key == k or key.startswith(k + ".") for k in SIZE_NEUTRAL)


def identity(resolved: Any) -> str:
    """What tells one resolved config from another, for handing a prepared run to its job."""
    return json.dumps(resolved, sort_keys=True, default=repr)


# -- search sweepers (Optuna) ------------------------------------------------------------------

# Keys of the Optuna sweeper's config that backproplab sets when the user did not: the direction
# follows trainer.objective, and a failed trial must not end the study (the plugin's default
# max_failure_rate 0 re-raises the first failure and stops every trial after it), as a failed
# job does not end a basic sweep.
OPTUNA = "optuna"


def _set_by_user(master: DictConfig, args: Sequence[str], key: str) -> bool:
    """Whether ``hydra.sweeper.<key>`` was set on the command line or by the chosen experiment,
    rather than left at the sweeper's default (which the composed config cannot tell apart)."""
    ns = hydra_args(args)
    for text in (ns.overrides or []) if ns is not None else []:
        if text.split("=", 1)[0].lstrip("+~") == f"hydra.sweeper.{key}":
            return True
    experiment = OmegaConf.select(master, "hydra.runtime.choices.experiment", default=None)
    if experiment:
        from .config_store import read_experiment

        try:
            node = OmegaConf.create(read_experiment(str(experiment)))
        except Exception:  # noqa: BLE001 - not one of ours (a user's config dir): composed only
            return False
        return OmegaConf.select(node, f"hydra.sweeper.{key}", default=None) is not None
    return False


def _direction_names(value: Any) -> list[str]:
    items = list(value) if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else [value]
    return [str(getattr(item, "name", item)) for item in items]


# Keys whose value can make a command line a multirun without -m: the primary config itself never
# sets hydra.mode or the sweeper, an experiment may.
_MODE_KEYS = ("experiment", "hydra.mode", "hydra/sweeper")


def _may_be_multirun(args: Sequence[str]) -> bool:
    ns = hydra_args(args)
    if ns is None:
        return True  # malformed: Hydra's own error follows
    if ns.multirun:
        return True
    return any(text.split("=", 1)[0].lstrip("+~").split("@", 1)[0] in _MODE_KEYS for text in ns.overrides or [])


def for_launch(args: Sequence[str]) -> list[str]:
    """``args`` plus what Hydra needs told on the command line:

    - ``hydra.mode=MULTIRUN`` when the config chose it (``experiment=lr_sweep``) and the command
      line did not: Hydra 1.4 takes the mode from the primary config and the command line only,
      and refuses a mode an experiment changes while composing.
    - for an Optuna search, ``hydra.sweeper.direction`` from ``trainer.objective`` and
      ``hydra.sweeper.max_failure_rate=1.0``, each unless the user set it. A direction that
      contradicts the objective (maximising a loss) is a ConfigError.

    Anything else (a single run, a config that does not compose) is handed back unchanged for
    ``check`` and Hydra to report."""
    from hydra.types import RunMode

    from backproplab.run.config import OBJECTIVES, objective_direction

    args = list(args)
    if not _may_be_multirun(args):
        return args  # a plain single run is composed by Hydra alone
    with _session(args) as session:
        if session is None or not session.multirun:
            return args
        ns = hydra_args(args)
        extra = []
        if not (ns is not None and ns.multirun) and not any(
            text.split("=", 1)[0].lstrip("+~") == "hydra.mode" for text in (ns.overrides or [] if ns is not None else [])
        ):
            extra.append("hydra.mode=MULTIRUN")
        if session.probe is not None and sweeper_choice(session.probe) != OPTUNA:
            return args + extra  # the sweeper is chosen alike in a run's config: no need to compose the master
        try:
            master = session.loader.load_configuration(CONFIG_NAME, session.overrides, run_mode=RunMode.MULTIRUN, from_shell=True)
        except Exception:  # noqa: BLE001 - check() reports it as the sweep would
            return args + extra
        if sweeper_choice(master) != OPTUNA:
            return args + extra
        objective = OmegaConf.select(master, "trainer.objective", default="auto")
        if objective not in OBJECTIVES:
            return args + extra  # the job check names the valid objectives
        wanted = objective_direction(str(objective))
        if _set_by_user(master, args, "direction"):
            names = _direction_names(OmegaConf.select(master, "hydra.sweeper.direction"))
            if names != [wanted]:
                raise ConfigError(
                    f"hydra.sweeper.direction={names[0] if len(names) == 1 else names} contradicts trainer.objective={objective}, "
                    f"which is to {wanted}; drop hydra.sweeper.direction (it follows the objective) or set it to {wanted}"
                )
        else:
            extra.append(f"hydra.sweeper.direction={wanted}")
        if not _set_by_user(master, args, "max_failure_rate"):
            extra.append("hydra.sweeper.max_failure_rate=1.0")
    return args + extra


def search_trials(master: DictConfig, config_loader: Any) -> list[Job] | None:
    """Trials a search sweeper could launch, numbered from 0: first the representative one,
    each searched key at a value of its space (an interval's low end, a range's start, the first
    choice), the fixed overrides as given; then one more per other value of each choice or
    range, that key alone changed. So every value a trial can be given from a list is checked
    up front, not only the first; an interval is checked at its low end. None when ``master``
    is the basic sweeper's (``expand`` covers it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if sweeper_choice(master) in (None, "basic"):
        return None
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(sweep_arguments(master))
    chosen: dict[str, str] = {}
    others: list[tuple[str, str]] = []
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            chosen[key] = f"{key}={override.get_value_element_as_str()}"
        elif override.is_interval_sweep():
            chosen[key] = f"{key}={override.value().start}"
        else:
            first, *rest = list(override.sweep_string_iterator())
            chosen[key] = f"{key}={first}"
            others = [(k, v) for k, v in others if k != key] + [(key, f"{key}={value}") for value in rest]
    trials = [Job(0, tuple(chosen.values()))]
    for key, text in others:
        trials.append(Job(len(trials), tuple({**chosen, key: text}.values())))
    return trials


RAY_ADDRESS_KEY = "hydra.launcher.ray.init.address"
RAY_CONNECT_TIMEOUT_S = 5.0


def check_launcher(master: DictConfig) -> None:
    """The launcher's own target, checked before the sweep's parent run exists: the Ray
    cluster that ``hydra.launcher.ray.init.address=HOST:PORT`` names must accept a connection.
    Ray itself retries an unreachable address for many minutes, with a warning every few
    seconds, and only after the parent run was created."""
    import socket

    choices = OmegaConf.select(master, "hydra.runtime.choices", default=None) or {}
    if choices.get("hydra/launcher") != "ray":
        return
    address = OmegaConf.select(master, RAY_ADDRESS_KEY, default=None)
    # null starts a Ray on this machine, "auto" finds the one started here (Ray's own message
    # if there is none); "ray://HOST:PORT" is Ray Client, also plain TCP.
    if address is None or str(address) in ("auto", "local"):
        return
    text = str(address)
    bare = text.removeprefix("ray://")
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(key=RAY_ADDRESS_KEY, value=text, problem="is not an address", valid="HOST:PORT of a Ray head (its ray start --port), auto, or null to start Ray here")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConfigError(
            f"{RAY_ADDRESS_KEY}={text}: no Ray cluster answers there ({reason.lower()}), so no job was started; "
            f"start its head with: ray start --head --port={port}, or correct the address"
        ) from None


STORAGE_KEY = "hydra.sweeper.storage"


def study_storage_problem(optuna_version: str, sqlalchemy_version: str) -> str | None:
    """Why Optuna cannot keep a study in a database here, or None. Optuna before 3.0 (the only
    Optuna hydra-optuna-sweeper 1.3 accepts) stamps its schema version on a connection it never
    commits, which SQLAlchemy 2 rolls back: ``create_study`` then fails on an assertion."""
    def major(version: str) -> int:
        head = version.split(".", 1)[0]
        return int(head) if head.isdigit() else 0

    if major(optuna_version) < 3 and major(sqlalchemy_version) >= 2:
        return (
            f"Optuna {optuna_version} (the Optuna hydra-optuna-sweeper 1.3 accepts) cannot create its database "
            f"storage under SQLAlchemy {sqlalchemy_version}"
        )
    return None


def check_study_storage(master: DictConfig) -> None:
    """An Optuna search's ``hydra.sweeper.storage`` (a database URL) usable by the installed
    Optuna, checked before the sweep's parent run exists (Optuna's own failure is a bare
    AssertionError after it)."""
    storage = OmegaConf.select(master, STORAGE_KEY, default=None)
    if sweeper_choice(master) != OPTUNA or storage is None or "://" not in str(storage):
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        problem = study_storage_problem(version("optuna"), version("sqlalchemy"))
    except PackageNotFoundError:
        return  # the sweeper's own import reports a missing Optuna
    if problem is not None:
        raise ConfigError(
            key=STORAGE_KEY, value=storage, problem=f"cannot be used: {problem}",
            valid='no storage (each search a new study), or pip install "sqlalchemy<2" (MLflow accepts >=1.4)',
        )


def _check_search(loader: Any, master: DictConfig) -> SweepPlan | None:
    """A search sweep's launcher and one representative trial; None for the basic sweeper."""
    check_launcher(master)
    check_study_storage(master)
    trials = search_trials(master, loader)
    if trials is None:
        return None
    sizes: list[tuple[int, int]] = []
    for trial in trials:
        try:
            check_job(job_config(loader, master, trial), sizes=sizes if trial.num == 0 else None)
        except Exception as exc:  # noqa: BLE001 - reported as one line, as a job would
            line, code = describe(exc, overrides=trial.overrides)
            keys = swept_parameters(master, single=True)
            message = (
                f"the search space of hydra/sweeper={sweeper_choice(master)} is invalid, so no trial was started; "
                f"checked on the trial {_label(trial, keys)}: {line.removeprefix('error: ')}"
            )
            raise (ConfigError if code == EXIT_CONFIG else BackproplabError)(message) from None
    varying = [k for k in swept_parameters(master, single=True) if not _size_neutral(k.lstrip("+~"))]
    return SweepPlan(unknown=f"the search varies {', '.join(varying)}") if varying else SweepPlan(tuple(sizes))


def sweep_jobs(args: Sequence[str]) -> list[Job] | None:
    """The jobs the command line ``args`` would launch, in Hydra's order and numbering; None
    when they are not a multirun (or the sweeper picks its jobs as it goes)."""
    with _multirun(for_hydra(args)) as sweep:
        return None if sweep is None else sweep[2]


@contextlib.contextmanager
def _hydra_config_kept() -> Iterator[None]:
    """Composing jobs sets Hydra's ``HydraConfig`` singleton, as ``run_job`` does; Hydra's own
    value is put back afterwards."""
    from hydra.core.hydra_config import HydraConfig

    saved = HydraConfig.instance().cfg
    try:
        yield
    finally:
        HydraConfig.instance().cfg = saved


def check_no_secrets(config: DictConfig) -> None:
    """Refuse a password or token that a config file puts into the config, written out or through
    an interpolation (``${oc.env:...}``): Hydra copies the composed config into
    ``.hydra/config.yaml``, and the run's checkpoint and records hold it resolved. The command
    line's are gone by now: ``credentials.take_credentials`` moved them into the environment."""
    from backproplab.tracking.transport.credentials import redact

    def walk(node: Any, key: str, how: str) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                walk(value, f"{key}.{name}" if key else str(name), how)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{key}[{i}]", how)
        elif isinstance(node, str) and redact(node) != node:
            raise ConfigError(
                f"{key}={redact(node)} puts a secret into the config{how}; valid: the URI on the command line (backproplab "
                "moves its password into the environment), MLFLOW_TRACKING_PASSWORD for a server, PGPASSWORD or "
                "~/.pgpass for PostgreSQL"
            )

    walk(OmegaConf.to_container(config, resolve=False), "", " from a config file, which Hydra copies into the run's .hydra/config.yaml")
    run_keys = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    try:
        resolved = OmegaConf.to_container(run_keys, resolve=True)
    except Exception:  # noqa: BLE001 - a broken interpolation is the run's own check's to report
        return
    walk(resolved, "", " through an interpolation, which the run's checkpoint keeps resolved")


def check_run(config: DictConfig) -> Any:
    """A single run's checks on the config Hydra composed for it (``on_run_start``, before
    ``run_job`` creates its output folder): the run's own preparation, returned for the job to
    train (the command's callback hands it over, so the data are loaded once), then whether the
    tracking store answers."""
    check_no_secrets(config)
    with _hydra_config_kept():
        from hydra.core.hydra_config import HydraConfig

        cfg = copy.deepcopy(config)  # Hydra's own goes on to run_job unchanged
        HydraConfig.instance().set_config(cfg)  # as run_job does before it reads hydra.run.dir
        prepared, settings = check_job(_task_config(cfg, str(OmegaConf.select(cfg, "hydra.run.dir"))))
    if settings.enabled:
        from backproplab.tracking.transport.reachability import check_reachable

        check_reachable(settings.tracking_uri, upgrade_store=settings.upgrade_store)
    return prepared


def check_store(config: DictConfig) -> None:
    """Whether a tracked sweep's store answers and is sound (the cheap half, without mlflow),
    before the sweep's folder is claimed: a refused store leaves nothing behind, as for a run."""
    from backproplab.tracking.transport.reachability import check_reachable
    from backproplab.tracking.lifecycle.settings import TrackingSettings  # no mlflow import: settings are plain checks

    logger = OmegaConf.to_container(config.logger, resolve=True) if "logger" in config else None
    settings = TrackingSettings.from_mapping(logger)  # type: ignore[arg-type]
    if settings.enabled:
        check_reachable(settings.tracking_uri, upgrade_store=settings.upgrade_store)


def check_sweep(master: DictConfig) -> SweepPlan | None:
    """Every job of the multirun Hydra composed as ``master`` (``on_multirun_start``, before the
    sweeper writes anything), composed with Hydra's own config loader and checked as the job
    will check itself; or, for a sweeper that picks its jobs as it runs, one representative
    trial. The sizes the sweep's element-wise decision needs; None when nothing was checked."""
    from hydra.core.global_hydra import GlobalHydra

    check_no_secrets(master)
    loader = GlobalHydra.instance().config_loader()
    with _hydra_config_kept():
        jobs = expand(master, loader)
        if jobs is None:
            return _check_search(loader, master)
        return _check_sweep((loader, master, jobs))


def check_multirun(args: Sequence[str]) -> int | None:
    """If ``args`` start a multirun, compose and validate every job, as the command does once
    Hydra has composed it; the number of jobs checked (None when ``args`` are not a multirun).
    Raises a one-line ``ConfigError`` naming the first job that cannot run (or the composition
    error of the sweep as a whole). For tools and tests: the command itself composes nothing."""
    with _multirun(for_hydra(args)) as sweep:
        if sweep is None:
            return None
        _check_sweep(sweep)
        return len(sweep[2])


def _check_sweep(sweep: tuple[Any, DictConfig, list[Job]] | None) -> SweepPlan | None:
    if sweep is None:
        return None
    loader, master, jobs = sweep
    keys = swept_parameters(master, single=True)
    bad: list[tuple[Job, BaseException]] = []
    sizes: list[tuple[int, int]] = []
    kept: dict[int, Any] = {}
    loaded: dict[str, Any] = {}
    held = 0
    for job in jobs:
        try:
            prepared, _ = check_job(job_config(loader, master, job), sizes=sizes, loaded=loaded)
        except Exception as exc:  # noqa: BLE001 - reported below, as the job would
            bad.append((job, exc))
            continue
        held += _data_bytes(prepared, counted=kept.values())
        if held <= KEPT_DATA_BYTES:
            kept[job.num] = prepared
    if bad:
        job, exc = bad[0]
        line, code = describe(exc, overrides=job.overrides)
        reason = line.removeprefix("error: ")
        if len(bad) == 1:
            message = f"sweep job #{job.num} of {len(jobs)} ({_label(job, keys)}) is invalid, so no job was started: {reason}"
        else:
            numbers = ", ".join(f"#{j.num}" for j, _ in bad[:10]) + (", ..." if len(bad) > 10 else "")
            message = (
                f"{len(bad)} of {len(jobs)} sweep jobs are invalid ({numbers}), so no job was started; "
                f"the first, #{job.num} ({_label(job, keys)}): {reason}"
            )
        # A config mistake keeps exit code 2; anything else (a plugin raising) is a failure, 1.
        raise (ConfigError if code == EXIT_CONFIG else BackproplabError)(message)
    check_launcher(master)
    return SweepPlan(tuple(sizes), prepared=kept)


__all__ = [
    "FlagError", "flag_parser", "check_run", "check_sweep", "check_job", "check_multirun", "sweep_jobs", "expand",
    "hydra_args", "job_config", "swept_parameters", "swept_overrides", "Job",
]
