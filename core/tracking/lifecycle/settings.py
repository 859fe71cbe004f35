"""The ``logger`` config node, validated once before a run starts.

Every bad value is reported as one line naming the key, the value and what is allowed, so a
typo in ``logger.*`` never surfaces as an MLflow stack trace halfway through training.
"""

from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass
from typing import Any, Mapping

from backproplab.errors import ConfigError

LOGGER_NAMES = ("mlflow", "none")
_KNOWN_KEYS = {
    "name",
    "tracking_uri",
    "experiment_name",
    "run_name",
    "every_n_iterations",
    "max_points_per_metric",
    "elementwise_max_params",
    "trace",
    "buffer",
    "upgrade_store",
    "on_server_loss",
    "log_model",
    "register_model",
    "images",
}
_IMAGES_KEYS = {"enabled", "max_per_key"}
_BUFFER_KEYS = {"max_metrics", "flush_interval_s", "background", "writer"}
# auto: SQL inserts into MLflow's tables for sqlite and PostgreSQL stores, log_batch for every other store.
WRITERS = ("auto", "sql", "log_batch")
# What a run does when its tracking server stops answering mid-run: keep training and spool the
# metrics to a local file (continue), or end the run FAILED at once (stop). Nothing is lost either way.
ON_SERVER_LOSS = ("continue", "stop")
# flush_interval_s=auto: a kill -9 loses at most the metrics since the last flush, so the cheap
# direct writer (sqlite, PostgreSQL) flushes every second; a server's log_batch costs more, so
# every 15 s there. The "sqlite" entry is the direct writer's.
AUTO_FLUSH_INTERVAL_S = {"sqlite": 1.0, "other": 15.0}
# max_points_per_metric=auto: a single run keeps every point; a sweep's child at most this many
# per metric, because a sweep multiplies a run's share of the store by its jobs (README "Store growth").
SWEEP_CHILD_MAX_POINTS = 50


def _section(logger: Mapping[str, Any], key: str, known: set[str], shape: str = "") -> Mapping[str, Any]:
    """``logger.<key>``, a nested mapping of the ``known`` keys (``{}`` when unset)."""
    node = logger.get(key) or {}
    if not isinstance(node, Mapping):
        raise ConfigError(f"logger.{key} must be a mapping{shape}, got {node!r}")
    unknown = sorted(set(node) - known)
    if unknown:
        raise ConfigError(f"logger.{key} has no key {unknown[0]!r}; valid: {', '.join(sorted(known))}")
    return node


def _int(key: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"logger.{key} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"logger.{key} must be an integer in [{minimum}, {maximum}], got {value!r}")
    return int(value)


# The metric buffer is allocated whole when the run starts (8 bytes a value, plus its step): a
# bound (about 0.8 GB) that keeps a typo'd extra digit from asking for tens of gigabytes, which
# fails as a MemoryError before the first iteration rather than as one config line.
MAX_BUFFERED_METRICS = 100_000_000


def _points_cap(value: Any) -> int | str | None:
    if value == "auto":
        return "auto"
    if value is None or (not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= 1):
        return None if value is None else int(value)
    raise ConfigError(
        f"logger.max_points_per_metric must be an integer >= 1, auto (at most {SWEEP_CHILD_MAX_POINTS} for a sweep's child, "
        f"no limit for a single run) or null (no limit), got {value!r}"
    )


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"logger.{key} must be true or false, got {value!r}")
    return value


def _optional_str(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"logger.{key} must be a non-empty string or null, got {value!r}")
    return value.strip()


def registered_model_name(value: Any, key: str = "logger.register_model", nullable: bool = True) -> str | None:
    """``value`` as a Model Registry name (``key`` names it in the error; None passes when
    ``nullable``). The Registry's own rule (mlflow.utils.validation._validate_model_name), checked
    here so that a bad name stops the run before training instead of failing its registration at
    the end."""
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "/:") or value.strip() == "." or value.strip().startswith(".."):
        null = " or null" if nullable else ""
        raise ConfigError(
            f"{key} must be a registered model name (non-empty, without '/' or ':', not '.' or starting with '..'){null}, got {value!r}"
        )
    return value.strip()


@dataclass(frozen=True)
class TrackingSettings:
    name: str = "mlflow"
    tracking_uri: str | None = None  # None: MLflow's own default (MLFLOW_TRACKING_URI, else ./mlflow.db)
    experiment_name: str = "backproplab"
    run_name: str | None = None
    every_n_iterations: int = 1
    # None: every point every_n_iterations gives. N: at most N points per metric over the run
    # (a long run at one row per iteration grows the sqlite store by ~260 bytes per point).
    # "auto": None for a single run, SWEEP_CHILD_MAX_POINTS for a sweep's child.
    max_points_per_metric: int | str | None = "auto"
    elementwise_max_params: int = 64
    trace: bool = False
    # Flushing: a full buffer or an elapsed interval triggers one flush of log_batch calls.
    max_metrics: int = 10_000
    flush_interval_s: float | None = None  # None: auto, see flush_interval_for
    background: bool = False
    writer: str = "auto"
    # true: a sqlite store of an older MLflow is upgraded to the installed MLflow's schema (after
    # a copy to <file>.bak-<revision>); false: such a store is refused, the upgrade is the user's call.
    upgrade_store: bool = False
    on_server_loss: str = "continue"
    # The trained network as an MLflow pyfunc model at artifact path "model" (tracking/records/model.py),
    # and registered under this name in the Model Registry when one is given.
    log_model: bool = True
    register_model: str | None = None
    # Decision-boundary and histogram pictures through log_image (tracking/records/images.py): at most
    # images_max_per_key per image key, so the store and the end of a run stay bounded.
    images_enabled: bool = True
    images_max_per_key: int = 10

    @property
    def enabled(self) -> bool:
        return self.name == "mlflow"

    def flush_interval_for(self, sqlite: bool) -> float:
        """The interval in seconds: the configured one, or auto's choice for this kind of store."""
        if self.flush_interval_s is not None:
            return self.flush_interval_s
        return AUTO_FLUSH_INTERVAL_S["sqlite" if sqlite else "other"]

    def points_cap(self, sweep_child: bool) -> int | None:
        """The points per metric a run keeps at most (None: every one), ``auto`` resolved."""
        if self.max_points_per_metric == "auto":
            return SWEEP_CHILD_MAX_POINTS if sweep_child else None
        return self.max_points_per_metric  # type: ignore[return-value]

    def strides(self, epochs: int, iterations_per_epoch: int, sweep_child: bool = False) -> tuple[int, int]:
        """(iteration stride, epoch stride) for a run of ``epochs`` x ``iterations_per_epoch``.

        Iteration metrics are logged at iterations 0, s, 2s, ... (as with every_n_iterations
        alone); epoch metrics at every e-th epoch counted back from the last one, so the final
        epoch, which the sweep summary reads, is always stored. Either way a metric gets at most
        ``max_points_per_metric`` points.
        """
        cap = self.points_cap(sweep_child)
        if cap is None:
            return self.every_n_iterations, 1
        total = epochs * iterations_per_epoch
        if total <= 0:
            raise ConfigError(
                "logger.max_points_per_metric needs the run's length to choose a stride, "
                f"but it is unknown (epochs={epochs}, iterations_per_epoch={iterations_per_epoch})"
            )
        return max(self.every_n_iterations, math.ceil(total / cap)), max(1, math.ceil(epochs / cap))

    @classmethod
    def from_mapping(cls, logger: Mapping[str, Any] | None) -> "TrackingSettings":
        if logger is None:
            return cls(name="none")
        if not isinstance(logger, Mapping):
            raise ConfigError(f"logger must be a mapping with a 'name' ({', '.join(LOGGER_NAMES)}), got {logger!r}")
        name = logger.get("name", "mlflow")
        if name not in LOGGER_NAMES:
            raise ConfigError(key="logger.name", value=name, subject=f"unknown logger {name!r} (logger.name)", problem="", valid=LOGGER_NAMES)
        if name == "none":
            return cls(name="none")
        unknown = sorted(set(logger) - _KNOWN_KEYS)
        if unknown:
            raise ConfigError(f"logger has no key {unknown[0]!r}; valid: {', '.join(sorted(_KNOWN_KEYS))}")
        buffer = _section(logger, "buffer", _BUFFER_KEYS)
        interval = buffer.get("flush_interval_s", "auto")
        if interval == "auto" or interval is None:
            interval = None
        elif isinstance(interval, bool) or not isinstance(interval, numbers.Real) or not 0 < interval <= sys.float_info.max:  # float() must not overflow
            raise ConfigError(
                f"logger.buffer.flush_interval_s must be a number > 0 or auto (1 s on sqlite, 15 s on a server), got {interval!r}"
            )
        on_loss = logger.get("on_server_loss", cls.on_server_loss)
        if on_loss not in ON_SERVER_LOSS:
            raise ConfigError(f"logger.on_server_loss must be one of {', '.join(ON_SERVER_LOSS)}, got {on_loss!r}")
        writer = buffer.get("writer", cls.writer)
        if writer not in WRITERS:
            raise ConfigError(f"logger.buffer.writer must be one of {', '.join(WRITERS)}, got {writer!r}")
        images = _section(logger, "images", _IMAGES_KEYS, shape=" (enabled, max_per_key)")
        if logger.get("register_model") is not None and logger.get("log_model", True) is False:
            raise ConfigError(
                f"logger.register_model={logger.get('register_model')!r} registers the logged model, but logger.log_model=false; "
                "valid: logger.log_model=true, or logger.register_model=null"
            )
        experiment = _optional_str("experiment_name", logger.get("experiment_name", cls.experiment_name))
        if experiment is None:
            raise ConfigError("logger.experiment_name must be a non-empty string, got None")
        return cls(
            name=name,
            tracking_uri=_optional_str("tracking_uri", logger.get("tracking_uri")),
            experiment_name=experiment,
            run_name=_optional_str("run_name", logger.get("run_name")),
            every_n_iterations=_int("every_n_iterations", logger.get("every_n_iterations", 1), 1),
            max_points_per_metric=_points_cap(logger.get("max_points_per_metric", cls.max_points_per_metric)),
            elementwise_max_params=_int("elementwise_max_params", logger.get("elementwise_max_params", 64), 0),
            trace=_bool("trace", logger.get("trace", False)),
            max_metrics=_int("buffer.max_metrics", buffer.get("max_metrics", cls.max_metrics), 1000, MAX_BUFFERED_METRICS),
            flush_interval_s=None if interval is None else float(interval),
            background=_bool("buffer.background", buffer.get("background", False)),
            writer=writer,
            upgrade_store=_bool("upgrade_store", logger.get("upgrade_store", False)),
            on_server_loss=on_loss,
            log_model=_bool("log_model", logger.get("log_model", True)),
            register_model=registered_model_name(logger.get("register_model")),
            images_enabled=_bool("images.enabled", images.get("enabled", True)),
            images_max_per_key=_int("images.max_per_key", images.get("max_per_key", cls.images_max_per_key), 1),
        )
