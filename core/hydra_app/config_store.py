"""Config nodes that cannot be YAML files: one per registered component, and the experiments.

Third-party components ship no YAML, so at start-up every registered loss, optimizer,
initializer and schedule becomes a ConfigStore option in its group (``optimizer=adam``,
``schedule=step``), and every callback an option of the ``callbacks`` group that places its node
under its own name, so that several are chosen at once (``callbacks=[early_stopping]``, then
``callbacks.early_stopping.patience=3``), as Hydra's list of group options does: the structured-config
schema generated from its constructor's signature (``backproplab.run.schema.schema_of``), whose
keys are the keyword parameters with their defaults (``optimizer.beta1=0.95``), typed from their
annotations, so that OmegaConf refuses ``optimizer.lr=abc`` while composing. A YAML file of the
same name in ``conf/`` comes first on Hydra's search path and shadows the generated node; the
built-in package only does that for ``legacy_randn``, to link its seed to ``trainer.seed`` (its
values are checked against the same schema when the run is validated).

Data sets are the same: every registered data set is an option of group ``data`` (``data=moons``),
its schema generated from its factory's signature (``data.n_samples=``) plus the options every data
set has (``data.batch_size=``...), at the defaults the data set declares
(``backproplab.components.datasets.option_defaults``). Those common options are typed ``Any`` here
and checked when the data set is loaded, whose messages name their ranges.

Experiments live in ``experiments/`` (outside ``conf/``, so that they read as a catalogue of
runs rather than as config plumbing) and are stored as group ``experiment`` in the global
package, exactly as ``# @package _global_`` files in ``conf/experiment/`` would be.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf.errors import OmegaConfBaseException

from backproplab.components.datasets import option_defaults
from backproplab.components.loading import get_registry
from backproplab.errors import ConfigError, exception_line, one_line
from .compat import store_options
from backproplab.components.registry import MULTI_GROUPS, SINGLE_GROUPS, Registry
from backproplab.run.schema import COMPONENT_ATTR, DEFAULTS_ATTR, schema_of, yaml_value

COMPONENT_GROUPS = tuple(SINGLE_GROUPS)
# Groups that select several components at once, each node under the option's own name.
MULTI_COMPONENT_GROUPS = MULTI_GROUPS
# The config group of the registered data sets, and their kind in the registry.
DATA_GROUP, DATA_KIND = "data", "dataset"
EXPERIMENTS_PACKAGE = "backproplab.experiments"
CONF_PACKAGE = "backproplab.conf"

_registered = False


def component_node(registry: Registry, kind: str, name: str) -> dict[str, Any]:
    """``{"name": name, **keyword defaults}`` for one registered component, as plain values
    (``???`` where the constructor requires the argument): the keys and defaults of its schema."""
    node: dict[str, Any] = {"name": name}
    for key, default in registry.get(kind, name).hyperparameters().items():
        ok, value = yaml_value(default)
        if ok and key != "name":
            node[key] = value
    return node


def component_schema(registry: Registry, kind: str, name: str) -> type:
    """The structured-config schema that is stored as the option ``kind=name``."""
    registration = registry.get(kind, name)
    return schema_of(kind, name, registration.factory)


def data_node(registry: Registry, name: str) -> dict[str, Any]:
    """``{"name": name, **factory defaults, **common options}`` for one registered data set."""
    registration = registry.get(DATA_KIND, name)
    parameters = registration.hyperparameters()
    node: dict[str, Any] = {"name": name}
    for key, default in parameters.items():
        ok, value = yaml_value(default)
        if ok and key != "name":
            node[key] = value
    for key, default in option_defaults(registration.factory, parameters).items():
        node.setdefault(key, default)
    return node


def data_schema(registry: Registry, name: str) -> type:
    """The structured-config schema stored as the option ``data=name``: the factory's schema
    (``data.n_samples`` typed from its signature) and the common options."""
    registration = registry.get(DATA_KIND, name)
    base = schema_of(DATA_GROUP, name, registration.factory)
    options = option_defaults(registration.factory, registration.hyperparameters())
    # Untyped even where the factory declares one (a generator's seed: int): loading the data
    # set checks them, in the words that name their ranges.
    extra = [(key, Any, dataclasses.field(default=value)) for key, value in options.items()]
    return dataclasses.make_dataclass(
        base.__name__, extra, bases=(base,),
        namespace={COMPONENT_ATTR: getattr(base, COMPONENT_ATTR), DEFAULTS_ATTR: getattr(base, DEFAULTS_ATTR)},
    )


def experiment_files(config_dir: str | None = None) -> dict[str, Any]:
    """Experiment name -> its YAML file: the shipped ones, then a user's in ``--config-dir``'s
    ``experiment/`` folder, which come first on Hydra's search path and so shadow a shipped one
    of the same name."""
    root = resources.files(EXPERIMENTS_PACKAGE)
    found: dict[str, Any] = {p.name[: -len(".yaml")]: p for p in root.iterdir() if p.name.endswith(".yaml")}
    if config_dir:
        user = Path(config_dir).expanduser() / "experiment"
        if user.is_dir():
            found.update({p.stem: p for p in user.glob("*.yaml")})
    return dict(sorted(found.items()))


def experiment_names(config_dir: str | None = None) -> list[str]:
    return list(experiment_files(config_dir))


def read_experiment(name: str, config_dir: str | None = None) -> dict[str, Any]:
    """The experiment's YAML as a mapping; a ConfigError naming ``experiment=name``, its file and
    the line when the file cannot be read as one."""
    files = experiment_files(config_dir)
    path = files.get(name, resources.files(EXPERIMENTS_PACKAGE).joinpath(f"{name}.yaml"))
    try:
        node = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"experiment={name}: cannot read {path}: {exception_line(exc)}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or one_line(exc)
        raise ConfigError(f"experiment={name}: {where}: not valid YAML: {problem}; fix the file or choose another experiment") from None
    if not isinstance(node, dict):
        raise ConfigError(f"experiment={name}: {path} must hold a mapping of config keys, got {type(node).__name__}")
    return node


def yaml_options(group: str) -> list[str]:
    """Option names that ship as YAML files in ``conf/<group>/``."""
    folder = resources.files(CONF_PACKAGE).joinpath(group)
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def register_configs(registry: Registry | None = None) -> None:
    """Store component and experiment nodes in Hydra's ConfigStore (idempotent per process)."""
    global _registered
    if _registered and registry is None:
        return
    registry = registry or get_registry()
    cs = ConfigStore.instance()
    replace = store_options()
    groups = [(group, kind, None) for group, kind in SINGLE_GROUPS.items()]
    groups += [(group, kind, group) for group, kind in MULTI_GROUPS.items()]
    for group, kind, under in groups:
        shipped = set(yaml_options(group))
        for name in registry.names(kind):
            if name in shipped:  # the YAML file wins on the search path; two nodes would warn
                continue
            # An option of a several-options group lives at ``group.name``, so options add up.
            package = None if under is None else f"{under}.{name}"
            try:
                node: Any = component_schema(registry, kind, name)
                cs.store(group=group, name=name, node=node, package=package, provider="backproplab", **replace)
            except OmegaConfBaseException:  # a default OmegaConf cannot hold as typed: the plain values
                node = component_node(registry, kind, name)
                cs.store(group=group, name=name, node=node, package=package, provider="backproplab", **replace)
    for name in registry.names(DATA_KIND):
        try:
            cs.store(group=DATA_GROUP, name=name, node=data_schema(registry, name), provider="backproplab", **replace)
        except OmegaConfBaseException:
            cs.store(group=DATA_GROUP, name=name, node=data_node(registry, name), provider="backproplab", **replace)
    for name in experiment_names():
        # A broken file costs only the command that chooses it: ``check_overrides`` reads it
        # again for that command and reports its file and line.
        try:
            node = read_experiment(name)
        except ConfigError:
            continue
        cs.store(group="experiment", name=name, node=node, package="_global_", provider="backproplab", **replace)
    _store_launcher_defaults(cs, replace)
    _registered = True


# Hydra's Ray launcher as its plugin defines it (``RayLauncherConf``), but for
# ``init.object_store_memory: null``. The plugin fills in 75 MB when that key is absent, and Ray
# refuses any value when it joins an existing cluster (``hydra.launcher.ray.init.address=HOST:PORT``):
# "When connecting to an existing cluster, object_store_memory must not be provided". null lets
# a joined cluster keep its own object store, and a Ray that the sweep starts on this machine
# (address null) size it as Ray does by default. ``hydra.launcher.ray.init.object_store_memory=N``
# still sets it for a Ray started by the sweep.
RAY_LAUNCHER_NODE = {
    "_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
    "ray": {"init": {"address": None, "object_store_memory": None}, "remote": {}},
}


def _store_launcher_defaults(cs: ConfigStore, replace: dict[str, Any]) -> None:
    """``hydra/launcher=ray`` as backproplab configures it, when the plugin is installed.

    The plugin stores its own node when Hydra scans the plugins, so Hydra scans them first
    (``Plugins.instance()``, which ``hydra.main`` would do next anyway) and this node then
    replaces it. A YAML file ``conf/hydra/launcher/ray.yaml`` would shadow it too, but Hydra
    merges a file with the ConfigStore node of the same name and warns that this is deprecated.
    """
    try:
        installed = importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        return
    import warnings

    from hydra.core.plugins import Plugins

    with warnings.catch_warnings():
        # The plugin's config module calls OmegaConf.register_new_resolver, which OmegaConf 2.4
        # deprecates: a warning about the plugin's code on every command, nothing a user can act
        # on. The scan imports the plugin once per process, so this is the only place it shows.
        warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated")
        Plugins.instance()
    cs.store(group="hydra/launcher", name="ray", node=RAY_LAUNCHER_NODE, provider="backproplab", **replace)


def group_options(group: str, registry: Registry | None = None, config_dir: str | None = None) -> list[str]:
    """Every option of a config group: generated component nodes plus YAML files (for
    experiments, also those of the user's ``--config-dir``)."""
    kind = SINGLE_GROUPS.get(group) or MULTI_GROUPS.get(group)
    if kind is not None:
        return sorted(set((registry or get_registry()).names(kind)) | set(yaml_options(group)))
    if group == DATA_GROUP:
        return (registry or get_registry()).names(DATA_KIND)
    if group == "experiment":
        return experiment_names(config_dir)
    return yaml_options(group)
