"""SIGTERM treated like Ctrl-C while a run is tracked.

Schedulers and ``kill`` send SIGTERM; Python's default would end the process without running
``finally`` blocks, leaving buffered metrics unwritten and the run RUNNING forever. Raising an
exception instead lets the tracking context flush and mark the run KILLED.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; a KeyboardInterrupt so every handler of Ctrl-C handles it too."""


def _raise_terminated(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Terminated("SIGTERM")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Install the handler for the duration of the block; handlers only exist in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver the first one that came.

    For a write that must not be cut in half: an exception raised inside a sqlite transaction
    can leave the file locked, and the run could then neither be flushed nor marked KILLED. The
    block is a single short transaction, so the signal waits milliseconds. Main thread only:
    other threads never receive signals.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum, frame):  # noqa: ARG001 - signal handler signature
        caught.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            signum = caught[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler != signal.SIG_IGN:
                signal.raise_signal(signum)  # the default action, now that it is restored
