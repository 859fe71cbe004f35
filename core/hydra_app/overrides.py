"""Group choices on the command line (``optimizer=adamm``, sweeps included), checked against the
registered components and config options before Hydra composes anything, so the error can list
the registered names and the closest one instead of Hydra's search-path report. Shared by the
``backproplab`` command and ``backproplab explain``."""

from __future__ import annotations

from typing import Sequence


def _override_args(args: Sequence[str]) -> list[str]:
    """The overrides among Hydra's command-line arguments (``--cfg job`` etc. are not ones)."""
    from .preflight import hydra_args

    namespace = hydra_args(args)
    return [] if namespace is None else list(namespace.overrides or [])


def _short(text: str) -> str:
    """An override quoted in a message, cut like a long value so that the line stays readable."""
    return repr(text) if len(text) <= 80 else f"{text[:60]!r}...({len(text)} characters)"


def check_overrides(args: Sequence[str]) -> None:
    """Unknown group choices (``optimizer=adamm``, sweeps included), and a launcher or sweeper
    whose plugin is not installed (``hydra/launcher=ray``), as a one-line ConfigError."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from .config_store import COMPONENT_GROUPS, MULTI_COMPONENT_GROUPS, group_options
    from .error_report import missing_plugin
    from .preflight import shorten_key
    from backproplab.errors import ConfigError, closest
    from backproplab.components.loading import get_registry

    parser = OverridesParser.create()
    parsed = []
    for text in _override_args(args):
        try:
            parsed += parser.parse_overrides([text])
        except OverrideParseException as exc:
            reason = " ".join(str(exc).split()).replace("See https", "see https")
            if len(text) > 80:  # Hydra quotes the whole text, which may be a pasted file
                reason = reason.replace(text, shorten_key(text))
            raise ConfigError(f"cannot parse the override {_short(text)}: {reason}") from None
    from .preflight import hydra_args, unusable_key_error

    texts = _override_args(args)
    unusable = unusable_key_error(texts, parsed) if len(parsed) == len(texts) else None
    if unusable is not None:
        raise unusable
    groups = set(COMPONENT_GROUPS) | set(MULTI_COMPONENT_GROUPS) | {"model", "data", "trainer", "logger", "experiment"}
    registry = get_registry()
    namespace = hydra_args(args)
    config_dir = None if namespace is None else namespace.config_dir
    for ov in parsed:
        group = ov.key_or_group.lstrip("+~")
        if group in ("hydra/launcher", "hydra/sweeper") and not ov.is_sweep_override() and isinstance(ov.value(), str):
            missing = missing_plugin(group, ov.value())
            if missing:
                raise ConfigError(missing)
            _check_hydra_plugin_option(group, ov.value())
            continue
        if group not in groups or ov.package is not None or ov.is_delete():
            continue
        if ov.is_sweep_override():
            try:
                values = list(ov.sweep_string_iterator())
            except Exception:  # glob/range sweeps: Hydra checks those itself
                continue
        else:
            value = ov.value()
            if value is None and group in MULTI_COMPONENT_GROUPS:  # Hydra would say "must be a string or a list"
                raise ConfigError(f"{group}=null is not a selection of {group}; valid: {group}=[] (or ~{group}) for none, {group}=[NAME,...]")
            if value is None:  # group=null removes the group; validation names what is missing
                continue
            values = [value]
        if group in MULTI_COMPONENT_GROUPS:  # callbacks=[a,b]: each chosen name must be registered
            kind = MULTI_COMPONENT_GROUPS[group]
            values = [name for value in values for name in (value if isinstance(value, list) else [value])]
        for value in values:
            if group in MULTI_COMPONENT_GROUPS:
                if not isinstance(value, str) or value not in registry.names(kind):
                    raise ConfigError(
                        key=group,
                        value=value,
                        problem=f"is not a registered {kind}",
                        valid=registry.names(kind),
                        valid_label="available",
                        hint=closest(str(value), registry.names(kind)),
                    )
                continue
            if group in COMPONENT_GROUPS:
                if not isinstance(value, str):
                    raise ConfigError(key=group, value=value, problem="is not a name", valid=registry.names(group), valid_label="available")
                try:
                    registry.get(group, value)
                except ConfigError as exc:
                    raise ConfigError(f"{group}={value}: {exc}", key=group, value=value, valid=exc.valid, hint=exc.hint) from None
                continue
            options = group_options(group, config_dir=config_dir)
            if group == "data" and value not in options:
                from backproplab.run.data import unknown_data_set

                raise unknown_data_set(value, options)
            if value not in options:
                raise ConfigError(
                    key=group, value=value, problem="is unknown", valid=options, valid_label="available", hint=closest(str(value), options)
                )
            if group == "experiment":
                _experiment_plugins(str(value), config_dir)


def _check_hydra_plugin_option(group: str, option: str) -> None:
    """``hydra/sweeper=optuan``: the options Hydra finds for the group (its own and those of the
    installed plugins), and the closest one, also among the plugins an extra installs."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from backproplab.errors import ConfigError, closest

    from .compat import version_base
    from .config_store import CONF_PACKAGE, register_configs
    from .error_report import PLUGIN_EXTRAS

    installable = {name for (kind, name) in PLUGIN_EXTRAS if kind == group}
    if option == "basic" or option in installable:  # Hydra's own, or an installed extra's plugin
        return
    register_configs()
    if GlobalHydra.instance().is_initialized():
        options = sorted(GlobalHydra.instance().config_loader().get_group_options(group))
    else:
        with initialize_config_module(CONF_PACKAGE, **version_base()):
            options = sorted(GlobalHydra.instance().config_loader().get_group_options(group))
    if option not in options:
        raise ConfigError(
            key=group, value=option, problem="is unknown", valid=options, valid_label="available",
            hint=closest(option, set(options) | installable),
        )


def _experiment_plugins(name: str, config_dir: str | None = None) -> None:
    """An experiment whose defaults choose a launcher or sweeper (``hpo_moons``: optuna) whose
    plugin is not installed: the same one line as choosing it on the command line. Hydra would
    only fail later, and in its own words, once it composes or instantiates the plugin."""
    from backproplab.errors import ConfigError

    from .config_store import read_experiment
    from .error_report import missing_plugin

    # Read here also to refuse a broken file, naming it and its line, before Hydra composes.
    for entry in read_experiment(name, config_dir).get("defaults") or []:
        if not isinstance(entry, dict):
            continue
        for key, option in entry.items():
            group = str(key).removeprefix("override ").strip().lstrip("/")
            if group in ("hydra/launcher", "hydra/sweeper") and isinstance(option, str):
                missing = missing_plugin(group, option)
                if missing:
                    raise ConfigError(missing)
