"""MLflow tracking: params, per-iteration metrics in the article's notation, artifacts, sweeps.

``track_run(context, logger_cfg)`` is the one entry point for a run; ``check_tracking`` lets the
app prove the store is reachable before it loads data. The Hydra sweep callback lives in
``backproplab.hydra_app.mlflow_sweep`` and is registered by ``conf/logger/mlflow.yaml``.
"""

from typing import Any

__all__ = ["track_run", "check_tracking", "TrackingSettings"]


def __getattr__(name: str) -> Any:
    # Lazy: importing mlflow takes about a second, and ``backproplab.tracking.settings`` (pure
    # validation) is needed by runs that track nothing.
    if name in ("track_run", "check_tracking"):
        from . import run

        return getattr(run, name)
    if name == "TrackingSettings":
        from .settings import TrackingSettings

        return TrackingSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
