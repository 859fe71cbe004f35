"""SIGINT and SIGTERM while a run is tracked.

Schedulers and ``kill`` send SIGTERM; Python's default would end the process without running
``finally`` blocks, leaving buffered metrics unwritten and the run RUNNING forever. While a run
trains, either signal raises (``KeyboardInterrupt``, or ``Terminated`` for SIGTERM), so the
tracking context can flush and mark the run KILLED. While the run is being created or ended
(final flush, artifacts, status), a signal must not cut that work in half: it is recorded, the
work completes, the run ends KILLED, and the interrupt is raised afterwards, so the process still
exits 130 (SIGINT) or 143 (SIGTERM) as shells and schedulers expect.

While the trainer runs, the checkpoint callback (``backproplab.run.checkpointing``) holds these
signals and SIGUSR1/SIGUSR2 instead: it stops training at the next iteration boundary, after
writing a checkpoint, so the run can be resumed exactly; the guard's handlers are back in place
while the run is ended.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

# Re-exported: the exceptions a stop signal becomes live in the run layer, which the checkpoint
# callback (a run-layer callback) raises too.
from backproplab.run.stopping import Terminated, describe_signal, interrupt_for  # noqa: F401


class InterruptGuard:
    """SIGINT and SIGTERM handlers for the life of one tracked run (main thread only).

    The guard starts *recording*: signals are noted, nothing is raised. ``interrupting()`` makes
    the next signal raise (training); ``recording()`` goes back (ending the run). ``caught`` holds
    every signal received, in order; any number of them never leaves the run half-recorded.
    """

    def __init__(self) -> None:
        self.caught: list[int] = []
        self._raise = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002 - signal handler signature
        self.caught.append(signum)
        if self._raise:
            self._raise = False  # one interrupt ends training; later signals are recorded
            raise interrupt_for(signum)

    def interrupting(self) -> None:
        """From now on a signal raises; one that came while recording is raised at once."""
        if self.caught:
            raise interrupt_for(self.caught[0])
        self._raise = True

    def recording(self) -> None:
        self._raise = False


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
