"""MLflow tracking: params, per-iteration metrics in the article's notation, artifacts, sweeps.

``track_run(context, logger_cfg)`` is the one entry point for a run; ``check_tracking`` lets the
app prove the store is reachable before it loads data. The Hydra sweep callback lives in
``backproplab.tracking.sweep`` and is registered by ``conf/logger/mlflow.yaml``.
"""

from .run import check_tracking, track_run
from .settings import TrackingSettings

__all__ = ["track_run", "check_tracking", "TrackingSettings"]
