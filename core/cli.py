"""The ``backproplab`` command: the Hydra app, plus ``explain`` and ``plugins`` sub-commands.

Hydra reports errors as multi-line messages with exit code 1. Here every error becomes one line
naming the key, the bad value and the valid choices, with exit code 2 for a wrong config and 1
for a failed run; ``HYDRA_FULL_ERROR=1`` brings the traceback back. Group choices such as
``optimizer=adamm`` are checked before Hydra runs, so the message can list the registered
names and the closest match rather than Hydra's search-path report. A multirun has every job
composed and validated first (``backproplab.preflight``), so a bad value anywhere in a sweep
stops it before any job trains and before any MLflow run exists. A first argument that is
neither a sub-command nor an override (``backproplab explian``) gets a "did you mean" line.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from typing import Sequence

from .error_report import EXIT_CONFIG, TRACEBACK_ENV, describe, one_line_warnings, tracebacks_wanted

SUBCOMMANDS = ("explain", "plugins")
# A bare word: not a flag (-m), not an override (key=value, ~key, +key=value, group@pkg=...).
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def _override_args(args: Sequence[str]) -> list[str]:
    """The overrides among Hydra's command-line arguments (``--cfg job`` etc. are not ones)."""
    from .preflight import hydra_args

    namespace = hydra_args(args)
    return [] if namespace is None else list(namespace.overrides or [])


def check_overrides(args: Sequence[str]) -> None:
    """Unknown group choices (``optimizer=adamm``, sweeps included) as a one-line ConfigError."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from .config_store import COMPONENT_GROUPS, group_options
    from .errors import ConfigError
    from .plugin_manager import get_registry
    from .registry import closest

    parser = OverridesParser.create()
    parsed = []
    for text in _override_args(args):
        try:
            parsed += parser.parse_overrides([text])
        except OverrideParseException as exc:
            reason = " ".join(str(exc).split()).replace("See https", "see https")
            raise ConfigError(f"cannot parse the override {text!r}: {reason}") from None
    groups = set(COMPONENT_GROUPS) | {"model", "data", "trainer", "logger", "experiment"}
    registry = get_registry()
    for ov in parsed:
        group = ov.key_or_group.lstrip("+~")
        if group not in groups or ov.package is not None or ov.is_delete():
            continue
        if ov.is_sweep_override():
            try:
                values = list(ov.sweep_string_iterator())
            except Exception:  # glob/range sweeps: Hydra checks those itself
                continue
        else:
            value = ov.value()
            if value is None:  # group=null removes the group; validation names what is missing
                continue
            values = [value]
        for value in values:
            if group in COMPONENT_GROUPS:
                if not isinstance(value, str):
                    raise ConfigError(f"{group}={value!r} is not a name; available: {', '.join(registry.names(group))}")
                try:
                    registry.get(group, value)
                except ConfigError as exc:
                    raise ConfigError(f"{group}={value}: {exc}") from None
                continue
            options = group_options(group)
            if value not in options:
                hint = closest(str(value), options)
                did_you_mean = f"; did you mean {hint!r}?" if hint else ""
                raise ConfigError(f"{group}={value!r} is unknown; available: {', '.join(options)}{did_you_mean}")


def _plugins(argv: list[str]) -> int:
    try:
        from .plugin_report import main as report_main
    except ImportError as exc:
        print(f"error: 'backproplab plugins' is not available in this build ({exc})", file=sys.stderr)
        return 1
    return report_main(argv)


def _run_hydra(argv: list[str]) -> int:
    from . import preflight, sweep_status

    try:
        check_overrides(argv)
        # A multirun: every job composed and validated before the first starts (and before
        # the MLflow parent run exists); the first bad one is the one error line.
        preflight.check_multirun(argv)
        from .hydra_app import main as hydra_main

        sys.argv = [sys.argv[0] if sys.argv else "backproplab", *argv]
        sweep_status.finished = False
        hydra_main()
        from . import hydra_app

        if hydra_app.last_error is not None:
            error, hydra_app.last_error = hydra_app.last_error, None
            raise error
    except SystemExit:
        raise
    except BaseException as exc:
        if tracebacks_wanted() and not isinstance(exc, KeyboardInterrupt):
            raise
        line, code = describe(exc)
        print(line, file=sys.stderr, flush=True)
        return code
    if sweep_status.finished and sweep_status.failures:
        n = len(sweep_status.failures)
        job, error = sweep_status.failures[0]
        print(f"error: {n} job(s) of the multirun failed; first: {job}: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


def _explain_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backproplab explain",
        description="Print the article's tables for the first iteration of the configured run: the inputs, each "
        "layer's parameters, the forward values z and f, the loss, and for every parameter its value, its "
        "gradient dE/dparam and its value after the optimizer step. Nothing is tracked.",
        epilog="Overrides are those of 'backproplab' itself, e.g. "
        "'backproplab explain optimizer=adam model.hidden=[8] data=xor'.",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides of the run's config")
    return parser


def _explain(argv: list[str]) -> int:
    if any(arg in ("-h", "--help") for arg in argv):
        _explain_parser().print_help()
        return 0
    from .explain import main as explain_main

    return explain_main(argv)


def unknown_command(word: str) -> str | None:
    """The error line for a first argument that is neither a sub-command nor an override
    (``backproplab explian``); None if ``word`` may be an override or a flag for Hydra."""
    if word in SUBCOMMANDS or not _WORD.fullmatch(word):
        return None
    hint = difflib.get_close_matches(word, SUBCOMMANDS, n=1, cutoff=0.6)
    if hint:
        return f"error: unknown command {word!r}; did you mean {hint[0]!r}? (commands: {', '.join(SUBCOMMANDS)})"
    return (
        f"error: {word!r} is neither a command ({', '.join(SUBCOMMANDS)}) nor an override (KEY=VALUE, e.g. "
        "optimizer.lr=0.1); see backproplab --help"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script and of ``python -m backproplab``."""
    args = list(sys.argv[1:] if argv is None else argv)
    one_line_warnings()
    if args and args[0] == "plugins":
        sys.exit(_plugins(args[1:]))  # argparse: --help / -h print its usage
    if args and args[0] == "explain":
        sys.exit(_explain(args[1:]))
    if args and (line := unknown_command(args[0])) is not None:
        print(line, file=sys.stderr, flush=True)
        sys.exit(EXIT_CONFIG)
    # Hydra then hands every exception back to us (see module docstring); the user's own
    # choice is remembered for tracebacks_wanted(), also in joblib worker processes.
    os.environ.setdefault(TRACEBACK_ENV, "1" if os.environ.get("HYDRA_FULL_ERROR") == "1" else "0")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.exit(_run_hydra(args))


__all__ = ["main", "check_overrides", "EXIT_CONFIG"]
