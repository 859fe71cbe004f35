"""``backproplab plugins [--json]``: which plugin distributions are installed, what each one
registers, and which failed to load and why (after ``llm plugins``).

Discovery runs afresh here rather than reusing the cached plugin set, so the report reflects the
environment variables of this invocation. Load failures are reported in the listing instead of
as warnings; with ``BACKPROPLAB_STRICT_PLUGINS=1`` the first failure is an error (exit 1).

A name registered by more than one plugin (a conflict) makes every other command fail, so this
command must keep working then: it lists everything, marks each conflicting name, lists every
conflict with the distributions and versions that claim it, and exits 1 with the same one-line
error that a training command prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Any, Iterable

from backproplab.errors import PluginError
from .loading import BUILTIN_DISTRIBUTION, PLUGINS_ENV, STRICT_ENV, PluginSet, load_plugins
from .registry import KINDS

EXIT_OK = 0
EXIT_PLUGIN_ERROR = 1
CONFLICT_MARK = "[conflict]"


def collect(plugin_set: PluginSet) -> dict[str, Any]:
    """The report as plain data: one entry per distribution, and one per failed entry point."""
    distributions: dict[str, dict[str, Any]] = {}
    failed: list[dict[str, Any]] = []
    for info in plugin_set.plugins:
        if not info.loaded:
            failed.append({
                "distribution": info.distribution,
                "version": info.version,
                "entry_point": info.name,
                "value": info.value,
                "error": info.error,
            })
            continue
        dist = distributions.setdefault(info.distribution, {
            "distribution": info.distribution,
            "version": info.version,
            "builtin": info.distribution == BUILTIN_DISTRIBUTION,
            "entry_points": [],
            "components": {kind: [] for kind in KINDS},
        })
        dist["entry_points"].append({"name": info.name, "value": info.value, "hooks": list(info.hooks)})
        for kind in KINDS:
            dist["components"][kind].extend(info.components.get(kind, []))
    registry = plugin_set.registry
    for dist in distributions.values():
        dist["components"] = {kind: sorted(names) for kind, names in dist["components"].items()}
        # alias -> the name it stands for, for the names this distribution itself holds
        dist["aliases"] = {
            kind: {
                name: registration.alias_of
                for name in names
                for registration in [registry.get(kind, name)] if name in registry.names(kind)
                if registration.alias_of is not None and registration.source.distribution == dist["distribution"]
            }
            for kind, names in dist["components"].items()
        }
    plugins = sorted(distributions.values(), key=lambda d: (not d["builtin"], d["distribution"]))
    conflicts = [
        {
            "kind": conflict.kind,
            "name": conflict.name,
            "claimants": [
                {"distribution": s.distribution, "version": s.version, "entry_point": s.plugin}
                for s in conflict.sources
            ],
        }
        for conflict in plugin_set.conflicts
    ]
    return {
        "plugins": plugins,
        "failed": failed,
        "conflicts": conflicts,
        "settle_with": plugin_set.settle_with() if plugin_set.conflicts else None,
        "environment": {
            PLUGINS_ENV: os.environ.get(PLUGINS_ENV),
            STRICT_ENV: os.environ.get(STRICT_ENV),
        },
    }


def format_text(report: dict[str, Any]) -> str:
    lines: list[str] = []
    width = max(len(kind) for kind in KINDS)
    clashing = {(c["kind"], c["name"]) for c in report.get("conflicts", [])}

    def shown(kind: str, name: str) -> str:
        return f"{name} {CONFLICT_MARK}" if (kind, name) in clashing else name

    for dist in report["plugins"]:
        eps = ", ".join(ep["name"] for ep in dist["entry_points"])
        suffix = " (built-in)" if dist["builtin"] else ""
        lines.append(f"{dist['distribution']} {dist['version']}{suffix}  entry points: {eps}")
        registered = [(kind, names) for kind, names in dist["components"].items() if names]
        for kind, names in registered:
            aliases = dist.get("aliases", {}).get(kind, {})
            entries = []
            for name in names:
                if name in aliases:
                    continue  # shown beside the name it stands for
                others = [shown(kind, a) for a, target in aliases.items() if target == name]
                entries.append(shown(kind, name) + (f" ({', '.join(others)})" if others else ""))
            lines.append(f"  {kind:<{width}}  {', '.join(entries)}")
        if not registered:
            lines.append("  (registers no components)")
    if report["failed"]:
        lines.append("")
        lines.append("failed to load:")
        for f in report["failed"]:
            lines.append(f"  {f['distribution']} {f['version']} (entry point {f['entry_point']!r} = {f['value']}): {f['error']}")
    if report.get("conflicts"):
        lines.append("")
        lines.append(f"conflicts {CONFLICT_MARK}: names registered by more than one plugin; every other command fails until each is settled:")
        for c in report["conflicts"]:
            claimants = ", ".join(f"{x['distribution']} {x['version']} (entry point {x['entry_point']!r})" for x in c["claimants"])
            lines.append(f"  {c['kind']} {c['name']!r}: {claimants}")
        settle = report.get("settle_with") or '""'
        lines.append(f"  settle them: uninstall one plugin of each, or load only some with {PLUGINS_ENV} "
                     f"(built-ins always load), e.g. {PLUGINS_ENV}={settle}")
    wanted = report["environment"].get(PLUGINS_ENV)
    if wanted is not None:
        lines.append("")
        lines.append(f"{PLUGINS_ENV}={wanted!r}: only these third-party plugins were loaded; built-ins always load")
    return "\n".join(lines)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        # One line naming what is valid, as the other subcommands report a bad option.
        self.exit(2, f"error: {message} for 'backproplab plugins'; valid: -h/--help, --json\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="backproplab plugins",
        description="List installed plugin distributions, the components each registers, and plugins that failed to load.",
        epilog=f"{PLUGINS_ENV}=a,b loads only those third-party plugins (entry-point or distribution names; "
        f"empty: none). {STRICT_ENV}=1 makes a plugin that fails to load an error.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON, for scripts")
    return parser


def main(argv: list[str], *, extra: Iterable[tuple[Any, Any]] = ()) -> int:
    """Run the command; ``extra`` adds in-process plugins exactly as ``load_plugins`` does."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option (argparse printed the usage line)
        return int(exc.code or 0)
    try:
        with warnings.catch_warnings():
            # Failures are part of the report below, not noise on stderr.
            warnings.simplefilter("ignore", RuntimeWarning)
            plugin_set = load_plugins(extra=extra, on_conflict="report")
    except PluginError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_PLUGIN_ERROR
    report = collect(plugin_set)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_text(report))
    if plugin_set.conflicts:
        # The listing above shows every conflict; the exit code and this line make it fail in CI.
        print(f"error: {plugin_set.conflict_message()}", file=sys.stderr)
        return EXIT_PLUGIN_ERROR
    return EXIT_OK
