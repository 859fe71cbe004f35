"""``track_run``: one training run as one MLflow run, from store check to final status.

Status semantics:
- FINISHED: the block ended normally; metrics flushed, artifacts logged.
- FAILED: the block raised (including NonFiniteLossError); what was buffered is flushed, the
  ``failure_reason`` tag holds the exception in one line, and the exception propagates.
- KILLED: Ctrl-C (KeyboardInterrupt) or SIGTERM, at any moment and any number of times: while
  training, the first one stops it; while the run is created or ended, signals are held until
  it is saved. Either way the metrics are flushed, the artifacts logged, the run marked KILLED
  with where it stopped, and then the interrupt propagates (exit 130 or 143).
An unreachable store is a ConfigError before any run exists and before any training. A tracking
server lost later is the business of ``spool``: with ``logger.on_server_loss=continue`` training
goes on and the metrics are spooled (and written if the server returns); with ``stop`` the run
ends FAILED. A run that ends while its server is gone keeps its status, reason and artifacts in
the spool for ``backproplab runs replay``, and the command exits 1.

A run continued from its checkpoint (``RunContext.resume``) reopens its MLflow run instead of
creating one, and stores only the steps the store does not hold yet (``continuation``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

from mlflow.entities import RunStatus

from backproplab import __version__
from backproplab.errors import ConfigError
from backproplab.run.context import RunContext
from backproplab.numerics.trainer import Callback
from . import parent as sweep_parent
from ..records.artifacts import PlotThread, log_run_artifacts
from ..transport.buffer import BatchWriter, LogBatchSink
from .callback import MlflowTracker
from .continuation import RESUMED_TAG, SkipStored, publish, reopen
from .extras import RunExtras
from ..transport.faults import SpoolWriteError, StoreFullError, UnrecordedError, store_full
from ..records import naming
from ..records.metric_names import MetricLayout
from ..transport.credentials import redact
from ..mlflow_private import MAX_TAG_VAL_LENGTH
from ..records.datasets import dataset_name, log_datasets
from ..records.description import describe, how_to_open, set_note
from ..transport.limits import truncate
from ..records.params import log_params, tracking_tag
from .settings import TrackingSettings
from ..transport.signals import InterruptGuard, Terminated, describe_signal, interrupt_for
from ..transport.spool import LocalArtifacts, ServerLost, Spool, SpoolingSink, bounded_http, spool_path
from ..transport.sql_writer import SqlMetricSink, supports_sql_writer
from ..transport.reachability import is_http, shown_uri
from ..transport.store import connect, resolve_uri
from ..records.summary import final_metrics
from ..records.tags import base_tags, component_tags, one_line, overrides_tag, process_tags
from ..records.trace import TraceRecorder

PARENT_TAG = "mlflow.parentRunId"
FAILURE_TAG = "failure_reason"
# Why a run that ended FINISHED trained fewer epochs than configured ("stopped early at epoch k; best epoch j").
STOPPED_EARLY_TAG = "backproplab.stopped_early"
MAX_RUN_NAME = 250


def check_tracking(logger: Mapping[str, Any] | None, parent: sweep_parent.ParentRun | None = None) -> str | None:
    """Validate ``logger`` and prove its store is usable; the resolved URI, or None when off.

    The app may call this early (before loading data) to fail fast; ``track_run`` does it anyway.
    """
    settings = TrackingSettings.from_mapping(logger)
    if not settings.enabled:
        return None
    uri = _uri_for(settings, parent)
    _check_writer(settings, uri)
    connect(uri, settings.experiment_name, upgrade_store=settings.upgrade_store)
    return uri


def _check_writer(settings: TrackingSettings, uri: str) -> None:
    if settings.writer == "sql" and not supports_sql_writer(uri):
        raise ConfigError(
            f"logger.buffer.writer=sql writes into a sqlite or PostgreSQL store's tables, but the tracking URI is {shown_uri(uri)}; "
            "use logger.buffer.writer=auto or log_batch"
        )


def _sink(
    settings: TrackingSettings, uri: str, client: Any, run_id: str, launch_dir: str | None
) -> LogBatchSink | SqlMetricSink | SpoolingSink:
    if is_http(uri):
        # Only a server can vanish mid-run while this process lives; a database file cannot.
        spool = Spool(spool_path(launch_dir, run_id), run_id, uri)
        return SpoolingSink(client, run_id, uri, spool, stop=settings.on_server_loss == "stop", server_app=settings.writer != "log_batch")
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
        return truncate(redact(settings.run_name), MAX_RUN_NAME)
    if parent is not None and context.overrides:
        name = naming.child_name(context.overrides, parent.swept_keys, sampled=parent.sampled, job=context.job_num)
        if name:
            return name
    return naming.single_name(context.config, context.network.sizes)


@contextlib.contextmanager
def track_run(context: RunContext, logger: Mapping[str, Any] | None, parent: sweep_parent.ParentRun | None = None) -> Iterator[Callback]:
    """Track one run; yields the Callback to hand to the Trainer. ``parent``: the sweep's parent
    run, for a job of a tracked sweep (the run becomes its child).

    With ``logger.name == "none"`` it yields a no-op Callback and touches no store.
    """
    settings = TrackingSettings.from_mapping(logger)
    if not settings.enabled:
        yield Callback()
        return

    uri = _uri_for(settings, parent)
    _check_writer(settings, uri)
    # Before the store: a stride that cannot be chosen must not leave a run behind.
    every_iteration, every_epoch = settings.strides(context.epochs, context.iterations_per_epoch, sweep_child=parent is not None)
    # The store's pages were read up front (a single run's preflight, or its sweep's parent).
    client, experiment_id = connect(uri, settings.experiment_name, upgrade_store=settings.upgrade_store, integrity=False)
    with bounded_http(is_http(uri)):
        yield from _tracked(settings, uri, client, experiment_id, every_iteration, every_epoch, context, parent)


def _tracked(
    settings: TrackingSettings,
    uri: str,
    client: Any,
    experiment_id: str,
    every_iteration: int,
    every_epoch: int,
    context: RunContext,
    parent: sweep_parent.ParentRun | None,
) -> Iterator[Callback]:
    network = context.network
    layout = MetricLayout.for_params(
        network.params, sweep_parent.elementwise_limit(parent, settings.elementwise_max_params, network.n_parameters)
    )

    tags = base_tags(__version__, context.launch_dir)
    tags.update(process_tags())
    tags.update(component_tags(context.components))
    tags["hydra.overrides"] = overrides_tag(context.overrides)
    tags["backproplab.task"] = context.task
    logger_settings = tracking_tag(context.config)
    if logger_settings is not None:
        tags["backproplab.logger"] = truncate(logger_settings, MAX_TAG_VAL_LENGTH)
    tags["backproplab.elementwise_metrics"] = "true" if layout.elementwise else "false"
    tags["backproplab.n_parameters"] = str(network.n_parameters)
    if context.classes is not None:
        tags["backproplab.classes"] = truncate(json.dumps(context.classes), MAX_TAG_VAL_LENGTH)
    if settings.points_cap(sweep_child=parent is not None) is not None:
        # The stride the cap chose, so a reader knows the stored curves are thinned and by what.
        tags["backproplab.iteration_stride"] = str(every_iteration)
        tags["backproplab.epoch_stride"] = str(every_epoch)
    if parent is not None:
        tags[PARENT_TAG] = parent.run_id
        if context.job_num is not None:
            tags["hydra.job.num"] = str(context.job_num)  # lets the sweep summary place the run without guessing
    run_name = _run_name(settings, context, parent)
    resume = context.resume
    reopened = resume is not None and resume.run_id is not None
    with InterruptGuard() as guard:  # from before the run exists until its status is final
        stored: dict[str, int] = {}
        if reopened:  # a run continued from its checkpoint: the same MLflow run
            run_id = resume.run_id
            stored = reopen(client, run_id, {**process_tags(), RESUMED_TAG: ",".join(map(str, context.resumed_from))})
        else:
            run = client.create_run(experiment_id, run_name=run_name, tags=tags)
            run_id = run.info.run_id
        tracker: MlflowTracker | None = None
        extras: RunExtras | None = None
        sink = None
        outcome: BaseException | None = None
        try:
            try:
                if not reopened:  # a reopened run has its params and inputs from its first process
                    log_params(client, run_id, context.config)
                    log_datasets(client, run_id, context)
                trace = None
                if settings.trace:
                    trace = TraceRecorder(network.params, context.epochs * context.iterations_per_epoch)
                sink = _sink(settings, uri, client, run_id, context.launch_dir)
                extras = RunExtras(settings, context, child_name=run_name if parent is not None else None)
                tracker = MlflowTracker(
                    layout,
                    BatchWriter(SkipStored(sink, stored) if stored else sink, run_id, background=settings.background),
                    max_metrics=settings.max_metrics,
                    every_n_iterations=every_iteration,
                    every_n_epochs=every_epoch,
                    total_epochs=context.epochs,
                    iterations_per_epoch=context.iterations_per_epoch,
                    flush_interval_s=settings.flush_interval_for(supports_sql_writer(uri)),
                    trace=trace,
                    snapshots=extras.snapshots,
                )
                tracker.run_id = run_id
                tracker.publish_checkpoint = functools.partial(_publish_unless_lost, client, run_id, sink)
                if resume is not None:
                    tracker.continue_after(resume.history_state)
                guard.interrupting()
                yield tracker
            finally:
                # A signal landing before this line still raises, into the handler below.
                guard.recording()
        except BaseException as exc:  # noqa: BLE001 - recorded below, then re-raised
            # A full disk is named as such, not as the kilobytes of SQL that failed.
            full = store_full(exc, uri)
            if full is not None and full is not exc:
                full.__cause__ = exc
            outcome = full or exc
        # A signal that lands in contextlib's __exit__, after training but before this generator
        # resumes, raises there; the generator is then closed (GeneratorExit) when collected. The
        # run was interrupted, not failed.
        ending = interrupt_for(guard.caught[0]) if isinstance(outcome, GeneratorExit) and guard.caught else outcome
        unrecorded = _end(
            client, run_id, context, tracker, ending, guard, uri, sink if isinstance(sink, SpoolingSink) else None, extras=extras
        )
    if parent is None and not (isinstance(sink, SpoolingSink) and sink.lost):
        _print_link(uri, experiment_id, run_id)
    if outcome is not None:
        raise outcome
    if unrecorded is not None:  # trained to the end, but the run is not (all) in the store
        raise unrecorded
    if guard.caught:  # the run finished, but the user asked to stop while it was being saved
        raise interrupt_for(guard.caught[0])


def _end(
    client: Any,
    run_id: str,
    context: RunContext,
    tracker: MlflowTracker | None,
    outcome: BaseException | None,
    guard: InterruptGuard,
    uri: str,
    spooling: SpoolingSink | None = None,
    *,
    extras: RunExtras | None = None,
) -> BaseException | None:
    """Flush, log the artifacts and set the final status, whatever signals arrive meanwhile.

    Each step is attempted on its own: metrics first (they are what the user lost time for),
    then the artifacts that explain the run, then the status. A run that trained to the end but
    was interrupted while being saved still ends KILLED, with everything it had.

    If the tracking server is still gone after the last flush, the status, the reason and the
    artifacts go into the spool instead of waiting on the server. Returns what kept a run that
    trained to the end out of the store (the lost server, a full disk), for the caller to raise.
    """
    where = _position(tracker)
    if isinstance(outcome, KeyboardInterrupt):
        status, reason = RunStatus.KILLED, f"interrupted by {describe_signal(_signal_of(outcome))}{where}"
    elif outcome is not None:
        status, reason = RunStatus.FAILED, one_line(outcome)
    else:
        status, reason = RunStatus.FINISHED, None
    plots: PlotThread | None = None
    final: list[tuple[str, float, int, int]] = []

    def close() -> None:
        def start_plots() -> None:
            # Drawn on a thread while the last store writes wait on the disk.
            nonlocal plots
            plots = PlotThread(tracker.layout, tracker.summary(), tracker.epochs)
            if extras is not None:
                extras.start(tracker.last_step)

        if tracker is not None:
            final.extend(_add_final_metrics(tracker))
            tracker.close(before_write=start_plots)

    problems = []

    def artifacts() -> None:
        if spooling is not None and spooling.lost and spooling.broken is None and not spooling.try_resume():
            # Kept with the spool for `runs replay`, instead of waiting on a dead server.
            _log_artifacts(LocalArtifacts(spooling.spool), run_id, context, tracker, plots)
        else:
            _log_artifacts(client, run_id, context, tracker, plots)
            if extras is not None and tracker is not None:
                extras.log(client, run_id, trained=outcome is None, final=final)

    for action in (close, artifacts):
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - report and keep ending the run
            problems.append(store_full(exc, uri) or exc)
            # A lost server was announced by its warning line; a spool that cannot be written
            # is the command's own error line when training had ended well.
            if not isinstance(exc, ServerLost) and not (isinstance(exc, SpoolWriteError) and outcome is None):
                print(f"backproplab: while ending MLflow run {run_id}: {one_line(problems[-1])}", file=sys.stderr)
    losses = "; ".join(spooling.spool.losses) if spooling is not None else ""
    if spooling is not None and spooling.lost and spooling.broken is None:
        lost = spooling.reason()
        kept = (status, reason)
        if status == RunStatus.FINISHED:
            status, reason = RunStatus.FAILED, lost
        elif outcome is not None and not isinstance(outcome, ServerLost):
            reason = f"{reason}; {lost}"
        if losses:
            reason = f"{reason}; {losses}"
        try:
            spooling.spool.end(RunStatus.to_string(status), reason, _note_text(context, tracker, RunStatus.to_string(status), reason))
            return ServerLost(lost) if outcome is None else None
        except SpoolWriteError as exc:
            # The spool cannot keep the ending either: it goes to the store, if that answers.
            problems.append(exc)
            if outcome is not None:  # else it is the command's own error line
                print(f"backproplab: while ending MLflow run {run_id}: {one_line(exc)}", file=sys.stderr)
            status, reason = kept
    problems = [p for p in problems if not isinstance(p, ServerLost)]
    unrecorded = None
    if status == RunStatus.FINISHED and (problems or losses):
        # Trained to the end, but not all of it is in the store: the command fails with the
        # same line the run's failure_reason holds, so exit code, result.json and MLflow agree.
        unrecorded = next((p for p in problems if isinstance(p, (StoreFullError, SpoolWriteError))), None)
        if unrecorded is None:
            unrecorded = UnrecordedError(f"could not record the run: {one_line(problems[0]) if problems else losses}")
        status, reason = RunStatus.FAILED, one_line(unrecorded)
    elif losses and losses not in (reason or ""):
        reason = f"{reason}; {losses}"
    if status == RunStatus.FINISHED and guard.caught:
        status = RunStatus.KILLED
        reason = f"interrupted by {describe_signal(guard.caught[0])}{where}, while the finished run was being saved"
    try:
        if spooling is not None:
            spooling.record_losses()
        if reason:
            client.set_tag(run_id, FAILURE_TAG, reason)
        if tracker is not None and tracker.stop_reason:
            client.set_tag(run_id, STOPPED_EARLY_TAG, tracker.stop_reason)
        set_note(client, run_id, _note_text(context, tracker, RunStatus.to_string(status), reason))
        client.set_terminated(run_id, RunStatus.to_string(status))
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"could not mark MLflow run {run_id} {RunStatus.to_string(status)}: {one_line(exc)}", stacklevel=2)
    return unrecorded


def _add_final_metrics(tracker: MlflowTracker) -> list[tuple[str, float, int, int]]:
    """``final/*`` from the last completed epoch, written with the run's last metrics (and
    spooled with them when the server is gone); returned as (key, value, timestamp in ms, step),
    the very rows, for the logged model to link."""
    if not tracker.epochs:
        return []
    step, now = tracker.epochs[-1].iterations, time.time()
    rows = []
    for key, value in final_metrics(tracker.epochs).items():
        tracker.buffer.add_sparse(key, value, now, step)
        rows.append((key, float(value), int(now * 1000), step))
    return rows


def _note_text(context: RunContext, tracker: MlflowTracker | None, status: str, reason: str | None) -> str:
    """The run's description: what it is and how it ended, with the epochs it completed and its
    last iteration (see ``description``)."""
    epochs, step = ([], None) if tracker is None else (tracker.epochs, tracker.last_step)
    stop_reason = None if tracker is None else tracker.stop_reason
    first_loss = None
    if tracker is not None:
        steps, values = tracker.summary()
        # Iteration 0 is always among the stored rows, whatever the stride.
        first_loss = float(values[0, 0]) if steps.size and steps[0] == 0 else None
    return describe(context, dataset_name(context), status, reason, epochs, step, stop_reason, first_loss, resumed_from=context.resumed_from)


def _publish_unless_lost(client: Any, run_id: str, sink: Any, directory: Path) -> None:
    """The checkpoint as the run's artifacts, unless its server is lost: an upload would wait out
    every retry of a dead server while training stands still, and the checkpoint is in the
    output folder anyway (``continuation.publish`` says so when an upload fails)."""
    if isinstance(sink, SpoolingSink) and sink.lost:
        return
    publish(client, run_id, directory)


def _print_link(uri: str, experiment_id: str, run_id: str) -> None:
    """Where to open the run, as a sweep prints its parent's (a sweep's children print none)."""
    try:
        print(f"mlflow: {how_to_open(uri, experiment_id, run_id)}", flush=True)
    except (BrokenPipeError, ValueError):  # stdout's reader is gone (or stdout closed): the run is saved anyway
        pass


def _signal_of(interrupt: KeyboardInterrupt) -> int:
    return getattr(interrupt, "signum", signal.SIGINT) if isinstance(interrupt, Terminated) else signal.SIGINT


def _position(tracker: MlflowTracker | None) -> str:
    """" after epoch E, iteration I" (counted from 1, as the console counts), when known."""
    step = None if tracker is None else tracker.last_step
    if step is None:
        return " before the first iteration"
    return f" at epoch {step.epoch + 1}, iteration {step.iteration + 1}"


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
        classes=context.classes,
        plots=plots,
    )
