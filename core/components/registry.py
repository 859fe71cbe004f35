"""Names to components: what plugins registered, under which distribution, and how to build it.

The registry is filled once at start-up by the plugin manager. After that, names become
objects (``create``/``resolve``) before any training loop starts; the loop never looks up a name.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from backproplab.errors import BackproplabError, ComponentError, ConfigError, PluginError, UnknownComponentError, closest, exception_line



@dataclass(frozen=True)
class Kind:
    """One kind of component: the hook that registers it and how a run's config selects it.

    ``group`` is the config group a run chooses it from (``optimizer=adam``), or None for a kind
    chosen inside another node (``model.activation``); with ``several`` the group selects any
    number of options at once (``callbacks=[early_stopping]``), each under its own key
    (``callbacks.early_stopping.patience=3``). Adding a kind is one entry here, its hookspec and
    its Protocol; the plugin manager, ``backproplab plugins``, the generated configs and the
    run's validation all read this table."""

    name: str
    hook: str
    group: str | None = None
    several: bool = False


KIND_TABLE = (
    Kind("activation", "register_activations"),
    Kind("loss", "register_losses", group="loss"),
    Kind("initializer", "register_initializers", group="initializer"),
    Kind("optimizer", "register_optimizers", group="optimizer"),
    Kind("schedule", "register_schedules", group="schedule"),
    Kind("callback", "register_callbacks", group="callbacks", several=True),
    # ``data=NAME`` selects one, but its node holds the framework's options beside the
    # factory's, so the data layer composes and checks it rather than the component groups.
    Kind("dataset", "register_datasets"),
)
KINDS = tuple(kind.name for kind in KIND_TABLE)
HOOK_FOR_KIND = {kind.name: kind.hook for kind in KIND_TABLE}
# Config group -> kind, for the kinds a run selects one of by group (``optimizer=adam``).
SINGLE_GROUPS = {kind.group: kind.name for kind in KIND_TABLE if kind.group is not None and not kind.several}
# Config group -> kind, for the kinds a run selects several of (``callbacks=[early_stopping]``).
MULTI_GROUPS = {kind.group: kind.name for kind in KIND_TABLE if kind.group is not None and kind.several}


@dataclass(frozen=True)
class Source:
    """Where a component came from: a plugin entry point inside an installed distribution."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version} (entry point {self.plugin!r})"


@dataclass(frozen=True)
class Registration:
    kind: str
    name: str
    factory: Callable[..., Any]
    source: Source
    alias_of: str | None = None  # the component's first name, when ``name`` is an alias

    def hyperparameters(self) -> dict[str, Any]:
        """Keyword hyperparameters and their defaults (``inspect.Parameter.empty`` if required)."""
        return hyperparameters_of(self.factory)


def hyperparameters_of(factory: Callable[..., Any]) -> dict[str, Any]:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def accepts_any_keyword(factory: Callable[..., Any]) -> bool:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


class Registry:
    """Component registrations, one namespace per kind."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        # (kind, name) -> why a plugin left out by BACKPROPLAB_PLUGINS would have it, or None.
        self.left_out: Callable[[str, str], str | None] | None = None

    @classmethod
    def validate(cls, kind: str, name: Any, factory: Any, source: Source) -> None:
        """Raise PluginError if a registration breaks the contract (whatever else is registered)."""
        cls._check_kind(kind)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{source} registered a {kind} with invalid name {name!r}; names are non-empty strings")
        if not callable(factory):
            raise PluginError(f"{source} registered {kind} {name!r} with a non-callable factory {factory!r}")

    def add(self, kind: str, name: str, factory: Callable[..., Any], source: Source, alias_of: str | None = None) -> None:
        self.validate(kind, name, factory, source)
        existing = self._entries[kind].get(name)
        if existing is not None:
            raise PluginError(
                f"{kind} {name!r} is registered twice: by {existing.source} and by {source}; "
                "uninstall one of them or restrict loading with BACKPROPLAB_PLUGINS"
            )
        self._entries[kind][name] = Registration(kind, name, factory, source, alias_of)

    def owner(self, kind: str, name: str) -> Source | None:
        """The source that registered ``name`` (None if nobody did)."""
        self._check_kind(kind)
        entry = self._entries[kind].get(name)
        return None if entry is None else entry.source

    def names(self, kind: str) -> list[str]:
        self._check_kind(kind)
        return sorted(self._entries[kind])

    def __iter__(self) -> Iterator[Registration]:
        for kind in KINDS:
            yield from (self._entries[kind][n] for n in sorted(self._entries[kind]))

    def get(self, kind: str, name: str) -> Registration:
        self._check_kind(kind)
        try:
            return self._entries[kind][name]
        except (KeyError, TypeError):
            available = self.names(kind)
            hidden = self.left_out(kind, name) if self.left_out is not None and isinstance(name, str) else None
            raise UnknownComponentError(
                key=kind,
                value=name,
                subject=f"unknown {kind} {name!r}",
                problem=f"({hidden})" if hidden else "",
                valid=available,
                valid_label="available",
                hint=closest(str(name), available, cutoff=0.5),
            ) from None

    def create(self, kind: str, name: str, **hyperparameters: Any) -> Any:
        """Build a component from its registered name and keyword hyperparameters."""
        registration = self.get(kind, name)
        accepted = registration.hyperparameters()
        if not accepts_any_keyword(registration.factory):
            unknown = sorted(set(hyperparameters) - set(accepted))
            if unknown:
                raise ConfigError(
                    key=f"{kind}.{unknown[0]}",
                    value=hyperparameters[unknown[0]],
                    subject=f"{kind} {name!r} has no hyperparameter {unknown[0]!r}",
                    problem="",
                    valid=list(accepted),
                    hint=closest(unknown[0], list(accepted)),
                )
        try:
            return registration.factory(**hyperparameters)
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: an int too large for a float
            raise ConfigError(f"{kind} {name!r}: {exc}") from None
        except BackproplabError:
            raise
        except Exception as exc:  # the plugin's own code failed, not a hyperparameter
            raise ComponentError(f"{kind} {name!r} from {registration.source}: its constructor raised {exception_line(exc)}") from exc

    def resolve(self, kind: str, spec: Any) -> Any:
        """Turn a name, a ``{"name": ..., **hyperparameters}`` mapping or an instance into a component."""
        if isinstance(spec, str):
            return self.create(kind, spec)
        if isinstance(spec, Mapping):
            params = dict(spec)
            name = params.pop("name", None)
            if name is None:
                raise ConfigError(f"{kind} spec {dict(spec)!r} has no 'name'; available: {', '.join(self.names(kind))}")
            return self.create(kind, name, **params)
        if isinstance(spec, type):
            return spec()
        return spec

    def names_of(self, kind: str, factory: Any) -> list[str]:
        """The names ``factory`` is registered under: its first names, then its aliases."""
        self._check_kind(kind)
        entries = [r for r in self._entries[kind].values() if r.factory is factory]
        return [r.name for r in sorted(entries, key=lambda r: r.alias_of is not None)]

    def aliases(self, kind: str, name: str) -> list[str]:
        """The aliases declared for the component registered as ``name``."""
        self._check_kind(kind)
        return [r.name for r in self._entries[kind].values() if r.alias_of == name]

    def source_of(self, kind: str, name: str) -> Source:
        return self.get(kind, name).source

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}; valid: {', '.join(KINDS)}")
