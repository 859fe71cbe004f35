"""Plugin discovery: every entry point in the ``backproplab`` group, built-ins included.

Each entry point is loaded in isolation: a plugin that fails to import, registers a hook that
matches no hookspec, or raises inside a registration hook is recorded as a failure (with its
distribution and entry point) and everything else keeps working. Discovery runs once per process.

Environment:
    BACKPROPLAB_PLUGINS         comma-separated entry-point or distribution names of third-party
                                plugins to load (unset: all; empty: none). Built-ins always load.
    BACKPROPLAB_STRICT_PLUGINS  "1" makes any plugin failure an error instead of a warning.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Callable, Iterable

import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import HOOK_FOR_KIND, KINDS, Registry, Source

BUILTIN_DISTRIBUTION = "backproplab"
PLUGINS_ENV = "BACKPROPLAB_PLUGINS"
STRICT_ENV = "BACKPROPLAB_STRICT_PLUGINS"


@dataclass
class PluginInfo:
    """One entry point of the ``backproplab`` group, loaded or not."""

    name: str
    distribution: str
    version: str
    value: str
    components: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def loaded(self) -> bool:
        return self.error is None

    @property
    def source(self) -> Source:
        return Source(self.name, self.distribution, self.version)


@dataclass
class PluginSet:
    """The outcome of discovery: the pluggy manager, the filled registry and a report per plugin."""

    manager: pluggy.PluginManager
    registry: Registry
    plugins: list[PluginInfo]

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins if not p.loaded]


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _wanted(env_value: str | None, info: PluginInfo) -> bool:
    if info.distribution == BUILTIN_DISTRIBUTION or env_value is None:
        return True
    wanted = {item.strip() for item in env_value.split(",") if item.strip()}
    return info.name in wanted or info.distribution in wanted


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(
        metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP),
        # Built-ins first, so a clash is reported against the built-in as the first owner.
        key=lambda ep: (_dist_name(ep) != BUILTIN_DISTRIBUTION, _dist_name(ep), ep.name),
    )


def _dist_name(ep: metadata.EntryPoint) -> str:
    return ep.dist.metadata["Name"] if ep.dist is not None else "<unknown distribution>"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_plugins(
    extra: Iterable[tuple[ModuleType | object, Source]] = (),
    *,
    entry_points: bool = True,
    strict: bool | None = None,
) -> PluginSet:
    """Discover and register every plugin, then let each register its components.

    ``extra`` adds in-process plugins (module or object, with the Source to report them under),
    which is how tests exercise the same path without installing a distribution.
    """
    if strict is None:
        strict = os.environ.get(STRICT_ENV, "") not in ("", "0", "false", "False")
    env_value = os.environ.get(PLUGINS_ENV)
    pm = new_manager()
    registry = Registry()
    infos: list[PluginInfo] = []

    candidates: list[tuple[PluginInfo, Callable[[], Any]]] = []
    if entry_points:
        for ep in _entry_points():
            dist = ep.dist
            info = PluginInfo(ep.name, _dist_name(ep), dist.version if dist is not None else "?", ep.value)
            if _wanted(env_value, info):
                candidates.append((info, ep.load))
    for obj, source in extra:
        info = PluginInfo(source.plugin, source.distribution, source.version, getattr(obj, "__name__", repr(obj)))
        candidates.append((info, lambda obj=obj: obj))

    for info, load in candidates:
        infos.append(info)
        _register_one(pm, info, load, strict)

    for info in infos:
        if info.loaded:
            _collect_components(pm, registry, info, strict)
    return PluginSet(pm, registry, infos)


def _fail(info: PluginInfo, message: str, strict: bool) -> None:
    info.error = message
    text = f"plugin {info.name!r} from distribution {info.distribution} {info.version} failed to load: {message}"
    if strict:
        raise PluginError(text)
    warnings.warn(text, RuntimeWarning, stacklevel=3)


def _register_one(pm: pluggy.PluginManager, info: PluginInfo, load: Callable[[], Any], strict: bool) -> None:
    try:
        plugin = load()
    except Exception as exc:  # an isolated import failure must not take the others down
        _fail(info, _one_line(exc), strict)
        return
    plugin_name = f"{info.distribution}:{info.name}"
    try:
        pm.register(plugin, name=plugin_name)
    except Exception as exc:  # pluggy.PluginValidationError, or a name clash
        _fail(info, _one_line(exc), strict)
        return
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(plugin)
        _fail(info, f"{_one_line(exc)}; known hooks: {', '.join(HOOK_FOR_KIND.values())}", strict)
        return
    info.hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])


def _collect_components(pm: pluggy.PluginManager, registry: Registry, info: PluginInfo, strict: bool) -> None:
    """Run the plugin's registration hooks; its components are added only if every hook succeeds,
    so a plugin reported as failed never leaves half of its components behind."""
    plugin = pm.get_plugin(f"{info.distribution}:{info.name}")
    staged: list[tuple[str, str, Callable[..., Any]]] = []
    for kind in KINDS:
        caller = getattr(pm.hook, HOOK_FOR_KIND[kind])
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue

            def register(name: str, factory: Callable[..., Any], kind: str = kind) -> None:
                Registry.validate(kind, name, factory, info.source)
                staged.append((kind, name, factory))

            try:
                impl.function(register=register)
            except Exception as exc:  # includes a malformed registration (PluginError)
                _fail(info, f"{HOOK_FOR_KIND[kind]} raised {_one_line(exc)}", strict)
                return
    for kind, name, factory in staged:
        # A duplicate name raises here: an error for the whole set, naming both owners.
        registry.add(kind, name, factory, info.source)
        info.components[kind].append(name)


_default: PluginSet | None = None


def get_plugins() -> PluginSet:
    """The process-wide plugin set, discovered on first use."""
    global _default
    if _default is None:
        _default = load_plugins()
    return _default


def get_registry() -> Registry:
    return get_plugins().registry


def reset_plugins() -> None:
    """Forget the cached discovery (for tests and long-lived processes that install plugins)."""
    global _default
    _default = None
