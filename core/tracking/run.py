"""``track_run``: one training run as one MLflow run, from store check to final status.

Status semantics:
- FINISHED: the block ended normally; metrics flushed, artifacts logged.
- FAILED: the block raised (including NonFiniteLossError); what was buffered is flushed, the
  ``failure_reason`` tag holds the exception in one line, and the exception propagates.
- KILLED: Ctrl-C (KeyboardInterrupt) or SIGTERM; flushed, then the interrupt propagates.
An unreachable store is a ConfigError before any run exists and before any training.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Any, Iterator, Mapping

from mlflow.entities import RunStatus

from .. import __version__
from ..errors import ConfigError
from ..preflight import swept_overrides
from ..run_context import RunContext
from ..trainer import Callback
from . import parent as sweep_parent
from .artifacts import PlotThread, log_run_artifacts
from .buffer import BatchWriter, LogBatchSink
from .callback import MlflowTracker
from .metric_names import MetricLayout
from .params import log_params, truncate
from .settings import TrackingSettings
from .signals import Terminated, sigterm_as_interrupt
from .sql_writer import SqlMetricSink, supports_sql_writer
from .store import connect, resolve_uri
from .tags import base_tags, component_tags, hydra_job_num, one_line, overrides_tag
from .trace import TraceRecorder

PARENT_TAG = "mlflow.parentRunId"
FAILURE_TAG = "failure_reason"
MAX_RUN_NAME = 250


def check_tracking(logger: Mapping[str, Any] | None) -> str | None:
    """Validate ``logger`` and prove its store is usable; the resolved URI, or None when off.

    The app may call this early (before loading data) to fail fast; ``track_run`` does it anyway.
    """
    settings = TrackingSettings.from_mapping(logger)
    if not settings.enabled:
        return None
    uri = _uri_for(settings, sweep_parent.current())
    _check_writer(settings, uri)
    connect(uri, settings.experiment_name)
    return uri


def _check_writer(settings: TrackingSettings, uri: str) -> None:
    if settings.writer == "sql" and not supports_sql_writer(uri):
        raise ConfigError(
            f"logger.buffer.writer=sql writes into a sqlite store's tables, but the tracking URI is {uri}; "
            "use logger.buffer.writer=auto or log_batch"
        )


def _sink(settings: TrackingSettings, uri: str, client: Any, run_id: str) -> LogBatchSink | SqlMetricSink:
    if settings.writer == "log_batch" or not supports_sql_writer(uri):
        return LogBatchSink(client, run_id)
    return SqlMetricSink(uri, run_id, client)


def _uri_for(settings: TrackingSettings, parent: sweep_parent.ParentRun | None) -> str:
    # A job whose logger.tracking_uri is null follows its sweep parent, so that a job that
    # changed directory (hydra.job.chdir=true) still lands in the parent's store.
    if settings.tracking_uri is None and parent is not None:
        return parent.tracking_uri
    return resolve_uri(settings.tracking_uri)


def _run_name(settings: TrackingSettings, context: RunContext, parent: sweep_parent.ParentRun | None) -> str | None:
    if settings.run_name:
        return truncate(settings.run_name, MAX_RUN_NAME)
    if parent is not None and context.overrides:
        swept = swept_overrides(context.overrides, parent.swept_keys)
        return truncate(",".join(swept or context.overrides), MAX_RUN_NAME)
    return None  # MLflow picks a memorable name


@contextlib.contextmanager
def track_run(context: RunContext, logger: Mapping[str, Any] | None) -> Iterator[Callback]:
    """Track one run; yields the Callback to hand to the Trainer.

    With ``logger.name == "none"`` it yields a no-op Callback and touches no store.
    """
    settings = TrackingSettings.from_mapping(logger)
    if not settings.enabled:
        yield Callback()
        return

    parent = sweep_parent.current()
    uri = _uri_for(settings, parent)
    _check_writer(settings, uri)
    # Before the store: a stride that cannot be chosen must not leave a run behind.
    every_iteration, every_epoch = settings.strides(context.epochs, context.iterations_per_epoch)
    client, experiment_id = connect(uri, settings.experiment_name)
    network = context.network
    layout = MetricLayout.for_params(network.params, settings.elementwise_max_params)

    tags = base_tags(__version__)
    tags.update(component_tags(context.components))
    tags["hydra.overrides"] = overrides_tag(context.overrides)
    tags["backproplab.task"] = context.task
    tags["backproplab.elementwise_metrics"] = "true" if layout.elementwise else "false"
    tags["backproplab.n_parameters"] = str(network.n_parameters)
    if settings.max_points_per_metric is not None:
        # The stride the cap chose, so a reader knows the stored curves are thinned and by what.
        tags["backproplab.iteration_stride"] = str(every_iteration)
        tags["backproplab.epoch_stride"] = str(every_epoch)
    if parent is not None:
        tags[PARENT_TAG] = parent.run_id
        job = hydra_job_num()
        if job is not None:
            tags["hydra.job.num"] = job  # lets the sweep summary place the run without guessing
    run = client.create_run(experiment_id, run_name=_run_name(settings, context, parent), tags=tags)
    run_id = run.info.run_id

    tracker: MlflowTracker | None = None
    try:
        log_params(client, run_id, context.config)
        trace = None
        if settings.trace:
            trace = TraceRecorder(network.params, context.epochs * context.iterations_per_epoch)
        tracker = MlflowTracker(
            layout,
            BatchWriter(_sink(settings, uri, client, run_id), run_id, background=settings.background),
            max_metrics=settings.max_metrics,
            every_n_iterations=every_iteration,
            every_n_epochs=every_epoch,
            total_epochs=context.epochs,
            flush_interval_s=settings.flush_interval_s,
            trace=trace,
        )
        with sigterm_as_interrupt():
            yield tracker
    except KeyboardInterrupt as exc:
        sweep_parent.interrupted = True
        _finish(client, run_id, context, tracker, RunStatus.KILLED, "interrupted by SIGTERM" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)")
        raise
    except BaseException as exc:
        _finish(client, run_id, context, tracker, RunStatus.FAILED, one_line(exc))
        raise
    else:
        plots: PlotThread | None = None
        try:
            if tracker is not None:
                def start_plots() -> None:
                    nonlocal plots
                    plots = PlotThread(tracker.layout, tracker.summary(), tracker.epochs)

                tracker.close(before_write=start_plots)
            _log_artifacts(client, run_id, context, tracker, plots)
        except BaseException as exc:
            if plots is not None:
                plots.cleanup()
            _finish(client, run_id, context, None, RunStatus.FAILED, f"could not record the run: {one_line(exc)}")
            raise
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))


def _close(tracker: MlflowTracker | None) -> None:
    if tracker is not None:
        tracker.close()


def _log_artifacts(client: Any, run_id: str, context: RunContext, tracker: MlflowTracker | None, plots: PlotThread | None = None) -> None:
    if tracker is None:
        return
    log_run_artifacts(
        client,
        run_id,
        config=context.config,
        params=context.network.params,
        layout=tracker.layout,
        summary=tracker.summary(),
        epochs=tracker.epochs,
        trace=tracker.trace,
        input_scaling=context.input_scaling,
        plots=plots,
    )


def _finish(client: Any, run_id: str, context: RunContext, tracker: MlflowTracker | None, status: int, reason: str | None) -> None:
    """End a run that did not finish normally; never masks the exception being handled.

    Each step is attempted on its own: metrics first (they are what the user lost time for),
    then the artifacts that explain the failure, then the status.
    """
    for action in (
        lambda: _close(tracker),
        lambda: _log_artifacts(client, run_id, context, tracker),
        lambda: reason and client.set_tag(run_id, FAILURE_TAG, reason),
    ):
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - report and keep ending the run
            print(f"backproplab: while ending MLflow run {run_id}: {one_line(exc)}", file=sys.stderr)
    try:
        client.set_terminated(run_id, RunStatus.to_string(status))
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"could not mark MLflow run {run_id} {RunStatus.to_string(status)}: {one_line(exc)}", stacklevel=2)
