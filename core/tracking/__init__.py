"""MLflow tracking: params, per-iteration metrics in the article's notation, artifacts, sweeps.

``track_run(context, logger_cfg)`` is the one entry point for a run; ``check_tracking`` lets the
app prove the store is reachable before it loads data. The Hydra sweep callback lives in
``backproplab.hydra_app.mlflow_sweep`` and is registered by ``conf/logger/mlflow.yaml``.

Three sub-packages, each importing only those below it (contracts in pyproject.toml):

- ``lifecycle``: a tracked run's life, from ``track_run`` to ``backproplab runs`` repairing it;
- ``records``: what is written about a run (params, tags, metric names, description, model, ...);
- ``transport``: how it reaches the store (store checks, writers, uploads, the spool).

``mlflow_private`` stands beside them: the one module that uses MLflow's internals.
"""

from typing import Any

__all__ = ["track_run", "check_tracking", "TrackingSettings"]


def __getattr__(name: str) -> Any:
    # Lazy: importing mlflow takes about a second, and ``backproplab.tracking.lifecycle.settings``
    # (pure validation) is needed by runs that track nothing.
    if name in ("track_run", "check_tracking"):
        from .lifecycle import run

        return getattr(run, name)
    if name == "TrackingSettings":
        from .lifecycle.settings import TrackingSettings

        return TrackingSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
