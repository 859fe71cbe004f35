"""The ``Launch``: one ``backproplab`` command as its command line and its Hydra callback
(``command``) share it. A module of its own, importing nothing of Hydra's: the command line opens
a Launch before its checks of the command line, which must run before any Hydra plugin or the
app's config store is loaded."""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator


@dataclass
class Launch:
    """One ``backproplab`` command as its command line and its Hydra callback share it:
    ``stop_reason`` is the one-line error that stopped a multirun before its end (a launcher
    that could not start its jobs), which the command line learns when ``hydra.main`` raises and
    the callback records as why the sweep's parent FAILED, at exit."""

    stop_reason: str | None = None


# Hydra builds its callbacks from the config and passes them nothing from its own caller: the
# command line opens a Launch for its call of hydra.main, and the callback takes it when a sweep
# starts and keeps it.
CURRENT_LAUNCH: ContextVar[Launch | None] = ContextVar("backproplab_launch", default=None)


@contextlib.contextmanager
def launching() -> Iterator[Launch]:
    """A Launch that the command's callback finds, for the block (the command line's)."""
    launch = Launch()
    token = CURRENT_LAUNCH.set(launch)
    try:
        yield launch
    finally:
        CURRENT_LAUNCH.reset(token)
