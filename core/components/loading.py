"""Plugin discovery: every entry point in the ``backproplab`` group, built-ins included.

Each entry point is loaded in isolation: a plugin that fails to import, registers a hook that
matches no hookspec, or raises inside a registration hook is recorded as a failure (with its
distribution and entry point) and everything else keeps working. Discovery runs once per process.

Two plugins that register the same name within a kind are a conflict. Every conflict is
collected first; then ``load_plugins`` raises one PluginError naming the first conflict's
providers and how to settle it, unless it is called with ``on_conflict="report"`` (which
``backproplab plugins`` does, so that the command that should show the conflict still works).

Environment:
    BACKPROPLAB_PLUGINS         comma-separated entry-point or distribution names of third-party
                                plugins to load (unset: all; empty: none). Built-ins always load.
    BACKPROPLAB_STRICT_PLUGINS  "1" makes any plugin failure an error instead of a warning.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Callable, Iterable

import pluggy

from . import hookspecs
from backproplab.errors import PluginError, exception_line
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


@dataclass(frozen=True)
class Conflict:
    """One name of one kind registered by more than one plugin; ``sources`` in loading order
    (built-ins first, then by distribution name), so the first is the one that kept the name."""

    kind: str
    name: str
    sources: tuple[Source, ...]

    def describe(self) -> str:
        times = "twice" if len(self.sources) == 2 else f"{len(self.sources)} times"
        owners = [f"by {source}" for source in self.sources]
        listed = owners[0] if len(owners) == 1 else f"{', '.join(owners[:-1])} and {owners[-1]}"
        return f"{self.kind} {self.name!r} is registered {times}: {listed}"


@dataclass
class PluginSet:
    """The outcome of discovery: the pluggy manager, the filled registry and a report per plugin."""

    manager: pluggy.PluginManager
    registry: Registry
    plugins: list[PluginInfo]
    conflicts: list[Conflict] = field(default_factory=list)

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins if not p.loaded]

    def settle_with(self) -> str:
        """A BACKPROPLAB_PLUGINS value that settles every conflict, leaving out as few plugins as
        it can: built-ins always load, so a third-party plugin in the most unsettled conflicts is
        left out first (the later-loaded one on a tie) until each name has one claimant left."""
        dropped: set[Source] = set()

        def unsettled() -> list[Conflict]:
            return [c for c in self.conflicts if len([s for s in c.sources if s not in dropped]) > 1]

        order = {p.source: i for i, p in enumerate(self.plugins)}
        while open_ := unsettled():
            counts: dict[Source, int] = {}
            for conflict in open_:
                for source in conflict.sources:
                    if source not in dropped and source.distribution != BUILTIN_DISTRIBUTION:
                        counts[source] = counts.get(source, 0) + 1
            if not counts:  # only built-ins left in a clash: nothing BACKPROPLAB_PLUGINS can do
                break
            dropped.add(max(counts, key=lambda s: (counts[s], order.get(s, -1))))
        third_party = [p for p in self.plugins if p.loaded and p.distribution != BUILTIN_DISTRIBUTION]
        kept = [p for p in third_party if p.source not in dropped]
        kept_ids = {id(p) for p in kept}
        names: list[str] = []
        for info in kept:
            whole = all(id(q) in kept_ids for q in third_party if q.distribution == info.distribution)
            item = info.distribution if whole else info.name
            if item not in names:
                names.append(item)
        return ",".join(names)

    def conflict_message(self) -> str:
        """One line: the first conflict with both providers, how to settle it, how many more."""
        first = self.conflicts[0]
        value = self.settle_with() or '""'
        text = (
            f"{first.describe()}; uninstall one of them or leave one out with {PLUGINS_ENV} "
            f"(built-ins always load), e.g. {PLUGINS_ENV}={value}"
        )
        more = len(self.conflicts) - 1
        if more:
            text += f"; {more} more name conflict{'s' if more > 1 else ''}, all listed by 'backproplab plugins'"
        return text


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _normal(name: str) -> str:
    """A distribution's name as pip compares it (PEP 503): ``Backproplab_Example`` = ``backproplab-example``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _listed(env_value: str) -> set[str]:
    return {_normal(item.strip()) for item in env_value.split(",") if item.strip()}


def _wanted(env_value: str | None, info: PluginInfo) -> bool:
    if info.distribution == BUILTIN_DISTRIBUTION or env_value is None:
        return True
    wanted = _listed(env_value)
    return _normal(info.name) in wanted or _normal(info.distribution) in wanted


def _warn_unknown_names(env_value: str, infos: list[PluginInfo]) -> None:
    """A name in BACKPROPLAB_PLUGINS that is no installed plugin's: a typo would otherwise leave
    the plugin out without a word."""
    known = {_normal(n) for info in infos for n in (info.name, info.distribution)}
    unknown = sorted({item.strip() for item in env_value.split(",") if item.strip() and _normal(item.strip()) not in known})
    if unknown:
        installed = sorted({i.distribution for i in infos if i.distribution != BUILTIN_DISTRIBUTION}) or ["(none)"]
        warnings.warn(
            f"{PLUGINS_ENV}={env_value!r} names {', '.join(map(repr, unknown))}, which is no installed plugin's "
            f"distribution or entry point; installed plugin distributions: {', '.join(installed)}",
            RuntimeWarning,
            stacklevel=3,
        )


def _hidden_provider(left_out: list[tuple[PluginInfo, Callable[[], Any]]], env_value: str, kind: str, name: str) -> str | None:
    """Why ``name`` is unknown when a plugin that BACKPROPLAB_PLUGINS leaves out registers it;
    None when none does. Asked only for an unknown name: the left-out plugins are loaded then,
    quietly, into a registry of their own."""
    for info, load in left_out:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                found = load_plugins([(load(), info.source)], entry_points=False, strict=False, on_conflict="report")
            except Exception:  # noqa: BLE001 - a plugin that does not load provides nothing
                continue
        if found.registry.owner(kind, name) is not None:
            return f"{info.source} registers it, but {PLUGINS_ENV}={env_value!r} leaves that plugin out"
    return None


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(
        metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP),
        # Built-ins first, so a clash is reported against the built-in as the first owner.
        key=lambda ep: (_dist_name(ep) != BUILTIN_DISTRIBUTION, _dist_name(ep), ep.name),
    )


def _dist_name(ep: metadata.EntryPoint) -> str:
    return ep.dist.metadata["Name"] if ep.dist is not None else "<unknown distribution>"


def load_plugins(
    extra: Iterable[tuple[ModuleType | object, Source]] = (),
    *,
    entry_points: bool = True,
    strict: bool | None = None,
    on_conflict: str = "raise",
) -> PluginSet:
    """Discover and register every plugin, then let each register its components.

    ``extra`` adds in-process plugins (module or object, with the Source to report them under),
    which is how tests exercise the same path without installing a distribution.
    ``on_conflict="raise"`` (the default) makes a name registered by two plugins a PluginError
    once every plugin has registered; ``"report"`` keeps the first claimant's registration and
    lists every conflict in ``PluginSet.conflicts``.
    """
    if on_conflict not in ("raise", "report"):
        raise ValueError(f"on_conflict must be 'raise' or 'report', got {on_conflict!r}")
    if strict is None:
        strict = os.environ.get(STRICT_ENV, "") not in ("", "0", "false", "False")
    env_value = os.environ.get(PLUGINS_ENV)
    pm = new_manager()
    registry = Registry()
    infos: list[PluginInfo] = []

    candidates: list[tuple[PluginInfo, Callable[[], Any]]] = []
    left_out: list[tuple[PluginInfo, Callable[[], Any]]] = []
    if entry_points:
        for ep in _entry_points():
            dist = ep.dist
            info = PluginInfo(ep.name, _dist_name(ep), dist.version if dist is not None else "?", ep.value)
            (candidates if _wanted(env_value, info) else left_out).append((info, ep.load))
        if env_value is not None:
            _warn_unknown_names(env_value, [info for info, _ in candidates + left_out])
            if left_out:
                registry.left_out = functools.partial(_hidden_provider, left_out, env_value)
    for obj, source in extra:
        info = PluginInfo(source.plugin, source.distribution, source.version, getattr(obj, "__name__", repr(obj)))
        candidates.append((info, lambda obj=obj: obj))

    for info, load in candidates:
        infos.append(info)
        _register_one(pm, info, load, strict)

    claims: dict[tuple[str, str], list[Source]] = {}
    for info in infos:
        if info.loaded:
            _collect_components(pm, registry, info, strict, claims)
    conflicts = [Conflict(kind, name, tuple(sources)) for (kind, name), sources in claims.items() if len(sources) > 1]
    plugin_set = PluginSet(pm, registry, infos, sorted(conflicts, key=lambda c: (KINDS.index(c.kind), c.name)))
    if plugin_set.conflicts and on_conflict == "raise":
        raise PluginError(plugin_set.conflict_message())
    return plugin_set


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
        _fail(info, exception_line(exc, with_type=True), strict)
        return
    plugin_name = f"{info.distribution}:{info.name}"
    try:
        pm.register(plugin, name=plugin_name)
    except Exception as exc:  # pluggy.PluginValidationError, or a name clash
        _fail(info, exception_line(exc, with_type=True), strict)
        return
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(plugin)
        _fail(info, f"{exception_line(exc, with_type=True)}; known hooks: {', '.join(HOOK_FOR_KIND.values())}", strict)
        return
    info.hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])


def _collect_components(
    pm: pluggy.PluginManager,
    registry: Registry,
    info: PluginInfo,
    strict: bool,
    claims: dict[tuple[str, str], list[Source]],
) -> None:
    """Run the plugin's registration hooks; its components are added only if every hook succeeds,
    so a plugin reported as failed never leaves half of its components behind. A name already
    taken by another plugin is recorded in ``claims`` (the first claimant keeps it)."""
    plugin = pm.get_plugin(f"{info.distribution}:{info.name}")
    staged: list[tuple[str, str, Callable[..., Any], str | None]] = []
    for kind in KINDS:
        caller = getattr(pm.hook, HOOK_FOR_KIND[kind])
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue

            def register(name: str, factory: Callable[..., Any], *, aliases: Iterable[str] = (), kind: str = kind) -> None:
                if isinstance(aliases, str):  # aliases="logistic" would register l, o, g, ...
                    aliases = (aliases,)
                for each, alias_of in [(name, None), *((alias, name) for alias in aliases)]:
                    Registry.validate(kind, each, factory, info.source)
                    if any(k == kind and n == each for k, n, _, _ in staged):
                        raise PluginError(f"{kind} {each!r} registered twice by this plugin; register each name once")
                    staged.append((kind, each, factory, alias_of))

            try:
                impl.function(register=register)
            except Exception as exc:  # includes a malformed registration (PluginError)
                _fail(info, f"{HOOK_FOR_KIND[kind]} raised {exception_line(exc, with_type=True)}", strict)
                return
    for kind, name, factory, alias_of in staged:
        claims.setdefault((kind, name), []).append(info.source)
        if registry.owner(kind, name) is None:
            registry.add(kind, name, factory, info.source, alias_of)
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
