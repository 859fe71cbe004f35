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

Experiments live in ``experiments/`` (outside ``conf/``, so that they read as a catalogue of
runs rather than as config plumbing) and are stored as group ``experiment`` in the global
package, exactly as ``# @package _global_`` files in ``conf/experiment/`` would be.
"""

from __future__ import annotations

import importlib.util
from importlib import resources
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf.errors import OmegaConfBaseException

from backproplab.components.loading import get_registry
from .compat import store_options
from backproplab.components.registry import MULTI_GROUPS, SINGLE_GROUPS, Registry
from backproplab.run.schema import schema_of, yaml_value

COMPONENT_GROUPS = tuple(SINGLE_GROUPS)
# Groups that select several components at once, each node under the option's own name.
MULTI_COMPONENT_GROUPS = MULTI_GROUPS
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


def experiment_names() -> list[str]:
    root = resources.files(EXPERIMENTS_PACKAGE)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def read_experiment(name: str) -> dict[str, Any]:
    text = resources.files(EXPERIMENTS_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    node = yaml.safe_load(text) or {}
    if not isinstance(node, dict):
        raise ValueError(f"experiment {name!r} must be a mapping, got {type(node).__name__}")
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
    for name in experiment_names():
        cs.store(group="experiment", name=name, node=read_experiment(name), package="_global_", provider="backproplab", **replace)
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


def group_options(group: str, registry: Registry | None = None) -> list[str]:
    """Every option of a config group: generated component nodes plus YAML files."""
    kind = SINGLE_GROUPS.get(group) or MULTI_GROUPS.get(group)
    if kind is not None:
        return sorted(set((registry or get_registry()).names(kind)) | set(yaml_options(group)))
    if group == "experiment":
        return experiment_names()
    return yaml_options(group)
