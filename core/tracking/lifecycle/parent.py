"""A sweep's parent run as a job's tracking sees it.

The parent itself is plain data on the sweep's one object (``backproplab.run.sweep``): the
launching process creates it, and each job receives it with the sweep's record in the sweep
folder (``hydra_app.task`` hands it to ``track_run``).
"""

from __future__ import annotations

from backproplab.run.sweep import ParentRun, swept_overrides

__all__ = ["ParentRun", "elementwise_limit", "swept_overrides"]


def elementwise_limit(parent: ParentRun | None, own_limit: int, n_parameters: int) -> int:
    """The ``elementwise_max_params`` a run applies: its own, unless its sweep decided for every
    child (then one that gives the sweep's answer for this network)."""
    if parent is None or parent.elementwise is None:
        return own_limit
    return n_parameters if parent.elementwise else n_parameters - 1
