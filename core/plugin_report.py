"""``backproplab plugins [--json]``: which plugin distributions are installed, what each one
registers, and which failed to load and why (after ``llm plugins``).

Discovery runs afresh here rather than reusing the cached plugin set, so the report reflects the
environment variables of this invocation. Load failures are reported in the listing instead of
as warnings; with ``BACKPROPLAB_STRICT_PLUGINS=1`` the first failure is an error (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Any, Iterable

from .errors import PluginError
from .plugin_manager import BUILTIN_DISTRIBUTION, PLUGINS_ENV, STRICT_ENV, PluginSet, load_plugins
from .registry import KINDS

EXIT_OK = 0
EXIT_PLUGIN_ERROR = 1


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
    for dist in distributions.values():
        dist["components"] = {kind: sorted(names) for kind, names in dist["components"].items()}
    plugins = sorted(distributions.values(), key=lambda d: (not d["builtin"], d["distribution"]))
    return {
        "plugins": plugins,
        "failed": failed,
        "environment": {
            PLUGINS_ENV: os.environ.get(PLUGINS_ENV),
            STRICT_ENV: os.environ.get(STRICT_ENV),
        },
    }


def format_text(report: dict[str, Any]) -> str:
    lines: list[str] = []
    width = max(len(kind) for kind in KINDS)
    for dist in report["plugins"]:
        eps = ", ".join(ep["name"] for ep in dist["entry_points"])
        suffix = " (built-in)" if dist["builtin"] else ""
        lines.append(f"{dist['distribution']} {dist['version']}{suffix}  entry points: {eps}")
        registered = [(kind, names) for kind, names in dist["components"].items() if names]
        for kind, names in registered:
            lines.append(f"  {kind:<{width}}  {', '.join(names)}")
        if not registered:
            lines.append("  (registers no components)")
    if report["failed"]:
        lines.append("")
        lines.append("failed to load:")
        for f in report["failed"]:
            lines.append(f"  {f['distribution']} {f['version']} (entry point {f['entry_point']!r} = {f['value']}): {f['error']}")
    wanted = report["environment"].get(PLUGINS_ENV)
    if wanted is not None:
        lines.append("")
        lines.append(f"{PLUGINS_ENV}={wanted!r}: only these third-party plugins were loaded; built-ins always load")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
            plugin_set = load_plugins(extra=extra)
    except PluginError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_PLUGIN_ERROR
    report = collect(plugin_set)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_text(report))
    return EXIT_OK
