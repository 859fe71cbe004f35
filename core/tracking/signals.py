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
