"""The signals that stop a run, as the exceptions that carry them out of training.

SIGINT is Ctrl-C, raised as Python's own ``KeyboardInterrupt``. SIGTERM, SIGUSR1 and SIGUSR2 are
what schedulers send before they end a job (``kill``, SLURM's preemption and time limit,
submitit's requeue signal); each is raised as ``Terminated``, a ``KeyboardInterrupt`` too, so
every handler of Ctrl-C handles them, and the command exits 128 + the signal's number as a
shell reports a process ended by it. Free of MLflow and Hydra: the checkpoint callback raises
these, tracking records them, the command turns them into its exit code.
"""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Terminated(KeyboardInterrupt):
    """A stop signal other than SIGINT arrived (SIGTERM unless ``signum`` says otherwise)."""

    def __init__(self, signum: int | str = signal.SIGTERM) -> None:
        # The name is the only argument, so that the exception pickles back from a worker.
        number = signal.Signals[signum] if isinstance(signum, str) else signal.Signals(signum)
        super().__init__(number.name)
        self.signum = int(number)


def interrupt_for(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def signal_of(interrupt: KeyboardInterrupt) -> int:
    """The signal an interrupt stands for: Ctrl-C unless it is a ``Terminated``."""
    return getattr(interrupt, "signum", signal.SIGINT)


def describe_signal(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal_name(signum)


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number: what a shell reports for a process that signal ended."""
    return 128 + signal_of(interrupt)
