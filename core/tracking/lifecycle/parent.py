"""A sweep's parent run as a job's tracking sees it.

The parent itself is plain data on the sweep's one object (``backproplab.run.sweep``): the
launching process creates it, and each job receives it with the sweep's record in the sweep
folder (``hydra_app.task`` hands it to ``track_run``).
"""

from __future__ import annotations

from backproplab.run.sweep import ParentRun, swept_overrides

__all__ = ["ParentRun", "elementwise_limit", "swept_overrides", "stop_reason"]

# The one-line error that stopped a multirun before its end (a launcher that could not start its
# jobs), set by the command line; an unfinished sweep's parent then says why it FAILED. The
# command line hands Hydra its arguments and gets back only the exception, while the sweep's
# parent is ended by the app's callback at exit: Hydra passes no object between the two.
stop_reason: str | None = None


def elementwise_limit(parent: ParentRun | None, own_limit: int, n_parameters: int) -> int:
    """The ``elementwise_max_params`` a run applies: its own, unless its sweep decided for every
    child (then one that gives the sweep's answer for this network)."""
    if parent is None or parent.elementwise is None:
        return own_limit
    return n_parameters if parent.elementwise else n_parameters - 1
