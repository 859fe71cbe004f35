"""The ``backproplab`` command: the Hydra app, plus ``explain``, ``plugins`` and ``runs`` sub-commands.

Hydra reports errors as multi-line messages with exit code 1. Here every error becomes one line
naming the key, the bad value and the valid choices, with exit code 2 for a wrong config and 1
for a failed run; ``HYDRA_FULL_ERROR=1`` brings the traceback back. Group choices such as
``optimizer=adamm`` are checked before Hydra runs, so the message can list the registered
names and the closest match rather than Hydra's search-path report. A multirun has every job
composed and validated first (``backproplab.hydra_app.command``, Hydra's callback, on the config Hydra
composed), so a bad value anywhere in a sweep stops it before any job trains and before any MLflow
run exists. A first argument that is
neither a sub-command nor an override (``backproplab explian``) gets a "did you mean" line.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import TYPE_CHECKING, Sequence

from backproplab.errors import closest
from backproplab.hydra_app.error_report import EXIT_CONFIG, TRACEBACK_ENV, describe, one_line_warnings, stdout_closed, tracebacks_wanted

if TYPE_CHECKING:  # Hydra's app is imported only for a command that runs it
    from backproplab.hydra_app.launch import Launch

SUBCOMMANDS = ("explain", "plugins", "runs")
# A bare word: not a flag (-m), not an override (key=value, ~key, +key=value, group@pkg=...).
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def _version() -> int:
    """backproplab's own version first: Hydra's --version would name only Hydra's."""
    from importlib.metadata import version

    from backproplab import __version__

    print(f"backproplab {__version__} (hydra-core {version('hydra-core')}, mlflow {version('mlflow')}, numpy {version('numpy')})")
    return 0


def _plugins(argv: list[str]) -> int:
    try:
        from backproplab.components.report import main as report_main
    except ImportError as exc:
        print(f"error: 'backproplab plugins' is not available in this build ({exc})", file=sys.stderr)
        return 1
    return report_main(argv)


def _runs(argv: list[str]) -> int:
    # Imported only here: mlflow costs seconds that explain, plugins and logger=none never pay.
    from backproplab.tracking.lifecycle.maintenance import main as runs_main

    return runs_main(argv)


def _run_hydra(argv: list[str]) -> int:
    from backproplab.hydra_app.launch import launching

    with launching() as launch:
        return _launched(argv, launch)


def _launched(argv: list[str], launch: Launch) -> int:
    from backproplab.hydra_app import preflight
    from backproplab.hydra_app.overrides import check_overrides
    from backproplab.tracking.transport.credentials import redact, take_credentials

    try:
        # First, before Hydra copies the overrides into .hydra/, the config, job names and tags.
        argv = take_credentials(argv)
        check_overrides(argv)
        argv = preflight.for_hydra(argv)
        # The multirun mode an experiment chose, and an Optuna search's direction (from
        # trainer.objective), said on the command line, where every Hydra version reads them.
        argv = preflight.for_launch(argv)
        from backproplab.hydra_app import show_config

        if show_config.wanted(argv):  # -m --cfg: the multirun's config, which Hydra refuses to show
            return show_config.show(argv)
        from backproplab.hydra_app.task import main as hydra_main

        # The run, or every job of a sweep, is checked by the app's Hydra callback on the config
        # Hydra composed, before anything is written (backproplab.hydra_app.command); a rejected
        # command, a failed single run and a sweep with failed jobs end with SystemExit and
        # their code, their one line already printed.
        # hydra.main reads its command line from sys.argv only: Hydra has no public API that
        # takes the arguments of a run or multirun any other way.
        sys.argv = [sys.argv[0] if sys.argv else "backproplab", *argv]
        hydra_main()
    except (SystemExit, BrokenPipeError):
        raise  # a closed stdout ends quietly (main)
    except BaseException as exc:
        if tracebacks_wanted() and not isinstance(exc, KeyboardInterrupt):
            raise
        line, code = describe(exc, overrides=argv)
        line = redact(line)
        print(line, file=sys.stderr, flush=True)
        # A sweep parent left open (the launcher raised: Ray lost, a job's worker died) is ended
        # FAILED at exit with this reason; before the multirun started there is none to end.
        launch.stop_reason = line.removeprefix("error: ")
        return code
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
    options = [arg for arg in argv if arg.startswith("-")]
    if options:  # Hydra's override grammar would call it a LexerNoViableAltException
        print(
            f"error: unknown option {options[0]!r} for 'backproplab explain'; valid: overrides KEY=VALUE "
            "(e.g. optimizer=adam), -h/--help",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_CONFIG
    from .explain import main as explain_main

    return explain_main(argv)


def unknown_command(word: str) -> str | None:
    """The error line for a first argument that is neither a sub-command nor an override
    (``backproplab explian``); None if ``word`` may be an override or a flag for Hydra."""
    if word in SUBCOMMANDS or not _WORD.fullmatch(word):
        return None
    hint = closest(word, SUBCOMMANDS)
    if hint:
        return f"error: unknown command {word!r}; did you mean {hint!r}? (commands: {', '.join(SUBCOMMANDS)})"
    return (
        f"error: {word!r} is neither a command ({', '.join(SUBCOMMANDS)}) nor an override (KEY=VALUE, e.g. "
        "optimizer.lr=0.1); see backproplab --help"
    )


def flag_error(args: Sequence[str]) -> str | None:
    """The error line for a flag Hydra's parser rejects (``--cfg bogus``) or does not know
    (``--bogus``), instead of Hydra's usage text; None if the flags are fine."""
    from backproplab.hydra_app.preflight import FlagError, flag_parser

    parser = flag_parser()
    try:
        _namespace, unknown = parser.parse_known_args(list(args))
    except FlagError as exc:
        return f"error: {exc}; see backproplab --help"
    flags = [arg for arg in unknown if arg.startswith("-")]
    if not flags:
        return None
    flag = flags[0].split("=", 1)[0]
    valid = ["/".join(sorted(a.option_strings, key=len)) for a in parser._actions if a.option_strings]
    known = [name for a in parser._actions for name in a.option_strings]
    hint = closest(flag, known)
    did_you_mean = f"; did you mean {hint!r}?" if hint else ""
    return f"error: unknown option {flags[0]!r}; valid: {', '.join(valid)}, and overrides KEY=VALUE{did_you_mean}"


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script and of ``python -m backproplab``."""
    try:
        code = _main(argv)
    except BrokenPipeError:
        code = stdout_closed()
    sys.exit(code)


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    one_line_warnings()
    if args in (["--version"], ["-V"]):
        return _version()
    if args and args[0] == "plugins":
        return _plugins(args[1:])  # argparse: --help / -h print its usage
    if args and args[0] == "runs":
        return _runs(args[1:])  # reap / replay / register; argparse: --help / -h print its usage
    if args and args[0] == "explain":
        return _explain(args[1:])
    line = unknown_command(args[0]) if args else None
    if line is None:
        line = flag_error(args)
    if line is not None:
        print(line, file=sys.stderr, flush=True)
        return EXIT_CONFIG
    # Hydra then hands every exception back to us (see module docstring); the user's own
    # choice is remembered for tracebacks_wanted(), also in joblib worker processes.
    os.environ.setdefault(TRACEBACK_ENV, "1" if os.environ.get("HYDRA_FULL_ERROR") == "1" else "0")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    # Hydra prints --info (and its [HYDRA] lines) through logging, whose handlers report a write
    # to a closed stdout with a traceback of their own; the command's own errors are not logged.
    logging.raiseExceptions = False
    from backproplab.hydra_app.preflight import options_first

    return _run_hydra(options_first(args))


__all__ = ["main", "EXIT_CONFIG"]
