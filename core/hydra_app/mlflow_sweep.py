"""The sweep's MLflow parent run: created (or continued), told about its jobs, and given the sweep's answer.

Called by the command's callback (``command.CommandCallback``), which owns the sweep's one object
(``backproplab.run.sweep.Sweep``) and hands it here:

- ``start`` (the launching process, before the sweeper writes anything): checks the store,
  creates the parent run (named by what is swept on which data) with the swept parameters
  (``sweep.<key>`` params, ``sweep.params`` tag), the fixed overrides (params under their own
  keys) and the sweep's one element-wise decision from the networks the command's check built
  (``plan``); or, when the sweep folder's record names a parent (the same command run again),
  finds that parent and the jobs whose child runs FINISHED. The parent goes on the sweep, which
  the jobs read from the sweep folder.
- ``prepare``: a continued parent is RUNNING again; a job that runs again (it never started, or
  it failed or was killed without a checkpoint to resume from) has its earlier child run moved
  to MLflow's deleted runs (restorable), so the parent keeps exactly one child per job.
- ``on_job_end`` (the job's process): a job that failed before ``track_run`` created its run
  (its config could not be built) still gets a child run, FAILED with ``failure_reason``.
- ``children``: the parent's children as plain ``ChildRun`` values, for the sweep's outcomes.
- ``end``: records the sweep's outcome, ranked by its one best-job rule: ``sweep_summary.csv``
  (the file the sweep wrote into its folder, the same bytes), the same table as
  ``sweep_summary.json`` via ``log_table`` (dot-free column names, which MLflow's table view
  needs), ``plots/final_loss.png``, metrics ``sweep/jobs``, ``sweep/finished_jobs``,
  ``sweep/failed_jobs``, ``sweep/best_value`` and the best child's ``final/*``, tags naming the
  best child and the rule, and a description with the ranked table; then ends the parent.

Parent status: FINISHED when every job finished; FAILED when any job did not, with
``failure_reason`` saying how many ("1 of 4 jobs failed", "all 4 jobs failed"). A multirun that
never reaches its end (a job raised past the app, or Ctrl-C) is ended at interpreter exit:
KILLED when a child was killed, else FAILED, with ``failure_reason``.

The callback holds only plain data (no MLflow client), because joblib pickles it into workers.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from hydra.core.utils import JobStatus
from mlflow import MlflowClient
from mlflow.entities import Metric, RunStatus
from omegaconf import DictConfig, OmegaConf

from backproplab import __version__
from backproplab.errors import ConfigError
from backproplab.run.sweep import RUN, BestRule, ChildRun, JobOutcome, Sweep, markdown_table, ranking_table
from backproplab.tracking.records import naming
from backproplab.tracking.lifecycle import parent as sweep_parent
from backproplab.tracking.records import summary as run_summary
from backproplab.tracking.records.description import how_to_open, run_page, set_note
from backproplab.tracking.mlflow_private import MAX_PARAM_VAL_LENGTH
from backproplab.tracking.transport.limits import truncate
from backproplab.tracking.records.params import param_batches
from backproplab.tracking.transport.reachability import is_http, shown_uri
from backproplab.tracking.lifecycle.settings import TrackingSettings
from backproplab.tracking.transport.spool import bounded_http
from backproplab.tracking.transport.store import connect, resolve_uri
from backproplab.tracking.records.tags import base_tags, one_line, overrides_tag, process_tags

from .preflight import SweepPlan, task_overrides

PARENT_TAG = "mlflow.parentRunId"
FAILURE_TAG = "failure_reason"
JOB_TAG = "hydra.job.num"  # on every child run
# What Hydra's Optuna sweeper writes into the sweep folder once the study is done.
OPTUNA_RESULTS = "optimization_results.yaml"
BEST_RUN_TAG = "backproplab.best_run_id"
BEST_NAME_TAG = "backproplab.best_run_name"
ELEMENTWISE_TAG = "backproplab.elementwise_metrics"
ELEMENTWISE_RULE_TAG = "backproplab.elementwise_rule"
REPLACED_TAG = "backproplab.replaced"


def elementwise_decision(plan: SweepPlan | None) -> tuple[bool, str]:
    """The sweep's one element-wise decision and why: on only if every job's network is within
    its own ``logger.elementwise_max_params``, so every child logs the same metric names. Off
    where the networks are not known up front (a search over a key that changes them, or a
    caller that gives no plan)."""
    if plan is None:
        return False, "off: the networks of the sweep's jobs were not checked up front"
    if plan.unknown is not None or not plan.sizes:
        return False, f"off: {plan.unknown or 'no job was checked'}, so the largest network is not known up front"
    over = [(n, limit) for n, limit in plan.sizes if n > limit]
    if over:
        n, limit = max(over)
        return False, f"off: a network of the sweep has {n} parameters > logger.elementwise_max_params={limit}"
    n, limit = max(plan.sizes)
    return True, f"on: the largest network of the sweep has {n} parameters <= logger.elementwise_max_params={limit}"


def fixed_overrides(config: DictConfig, swept: dict[str, str]) -> dict[str, str]:
    """The command line's overrides that are not swept, key -> value as typed (a one-value sweep,
    ``choice(0.95)``, by its one value). ``hydra.*`` and ``logger.*`` are how the sweep ran, not
    what it trained, and stay in the ``hydra.overrides`` tag."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    bare = {k.lstrip("+~") for k in swept}
    out: dict[str, str] = {}
    try:
        parsed = OverridesParser.create().parse_overrides(task_overrides(config))
    except Exception:  # noqa: BLE001 - Hydra has already accepted them; nothing to add then
        return out
    for override in parsed:
        key = override.get_key_element().lstrip("+~")
        if override.is_delete() or key in bare or re.split(r"[./]", key, maxsplit=1)[0] in ("hydra", "logger"):
            continue
        if override.is_sweep_override():
            try:
                values = list(override.sweep_string_iterator())
            except Exception:  # noqa: BLE001 - an interval: swept, not fixed
                continue
            if len(values) != 1:
                continue
            out[key] = str(values[0])
        else:
            out[key] = override.get_value_element_as_str()
    return out


def _job_failure(job_return: Any) -> str | None:
    """The one-line reason a job failed, or None if it finished."""
    if job_return is None:
        return None
    if getattr(job_return, "status", None) == JobStatus.FAILED:  # the task raised
        return one_line(job_return._return_value)  # noqa: SLF001 - ``return_value`` re-raises it
    value = getattr(job_return, "_return_value", None)
    if isinstance(value, dict) and value.get("status") == "failed":  # the app's result record
        return str(value.get("error") or "the job failed")
    return None


class MlflowSweepCallback:
    """The parent run's side of one sweep (see the module docstring)."""

    def __init__(self) -> None:
        self._name = ""
        self._fixed: dict[str, str] = {}
        self._ended = False

    # -- launching process -------------------------------------------------------------------
    def start(self, config: DictConfig, sweep: Sweep, plan: SweepPlan | None = None) -> set[int]:
        """Create the parent, or find the one ``sweep`` continues; the job numbers whose child
        runs FINISHED (empty for a new parent). A ConfigError (exit 2) before anything is
        written when the store is unusable or does not hold the parent to continue."""
        logger = OmegaConf.to_container(config.logger, resolve=True) if "logger" in config else None
        settings = TrackingSettings.from_mapping(logger)  # type: ignore[arg-type]
        uri = resolve_uri(settings.tracking_uri)
        # The store's pages were checked up front (preflight.check_store).
        client, experiment_id = connect(uri, settings.experiment_name, upgrade_store=settings.upgrade_store, integrity=False)
        fixed = fixed_overrides(config, sweep.swept)
        # model.activation.beta=0.5,1.0 as typed, not as the node Hydra is handed
        typed = naming.typed_swept(sweep.swept)
        data = naming.data_name(OmegaConf.to_container(config.data, resolve=False) if "data" in config else None)
        self._name = settings.run_name or naming.parent_name(typed, data, search=sweep.sampled)
        self._fixed = fixed
        if sweep.parent is not None:
            return self._found(client, sweep, uri)
        elementwise, rule = elementwise_decision(plan)
        tags = base_tags(__version__)
        tags.update(process_tags())  # so `backproplab runs reap` can end it if the sweep is killed
        tags.update(
            {
                "backproplab.sweep": "true",
                "sweep.params": ",".join(typed),
                "sweep.dir": str(sweep.sweep_dir),
                "hydra.overrides": overrides_tag(list(OmegaConf.select(config, "hydra.overrides.task") or [])),
                "hydra.sweeper": str(OmegaConf.select(config, "hydra.sweeper._target_")),
                "hydra.launcher": str(OmegaConf.select(config, "hydra.launcher._target_")),
                ELEMENTWISE_TAG: "true" if elementwise else "false",
                ELEMENTWISE_RULE_TAG: rule,
            }
        )
        run = client.create_run(experiment_id, run_name=truncate(self._name, 250), tags=tags)
        params = {f"sweep.{k}": v for k, v in typed.items()}
        params.update({k: v for k, v in fixed.items() if k not in params})
        for batch in param_batches({k: truncate(v, MAX_PARAM_VAL_LENGTH) for k, v in params.items()}):
            client.log_batch(run.info.run_id, params=batch, synchronous=True)
        sweep.parent = sweep_parent.ParentRun(
            run.info.run_id, uri, experiment_id, tuple(typed), elementwise=elementwise, sampled=sweep.sampled
        )
        return set()

    def _found(self, client: MlflowClient, sweep: Sweep, uri: str) -> set[int]:
        parent = sweep.parent
        assert parent is not None
        run = None
        if parent.tracking_uri == uri:
            try:
                run = client.get_run(parent.run_id)
            except Exception:  # noqa: BLE001 - refused below
                run = None
        if run is None or run.info.lifecycle_stage != "active":
            raise ConfigError(
                f"hydra.sweep.dir={sweep.sweep_dir} belongs to MLflow parent run {parent.run_id} in {shown_uri(parent.tracking_uri)}, "
                f"which {shown_uri(uri)} does not hold; continue it with logger.tracking_uri={shown_uri(parent.tracking_uri)}, "
                "or choose a new hydra.sweep.dir"
            )
        return {c.job for c in self.children(sweep) if c.status == "FINISHED" and c.job is not None}

    def prepare(self, sweep: Sweep) -> None:
        """A continued parent RUNNING again, and the earlier child runs of jobs that run again
        moved to MLflow's deleted runs (see the module docstring)."""
        if not sweep.continued or sweep.parent is None:
            return
        parent = sweep.parent
        client = MlflowClient(parent.tracking_uri)
        client.update_run(parent.run_id, status="RUNNING")
        for key, value in process_tags().items():
            client.set_tag(parent.run_id, key, value)
        if FAILURE_TAG in client.get_run(parent.run_id).data.tags:
            client.delete_tag(parent.run_id, FAILURE_TAG)
        for child in self.children(sweep, every=True):
            if child.job is not None and sweep.decision(child.job) == RUN:
                client.set_tag(child.run_id, REPLACED_TAG, f"job #{child.job} ran again when its sweep was continued")
                client.delete_run(child.run_id)

    # -- job process -------------------------------------------------------------------------
    def on_job_end(self, config: DictConfig, job_return: Any, sweep: Sweep) -> None:
        reason = _job_failure(job_return)
        if sweep.parent is not None and reason is not None:
            record_failed_job(sweep.parent, task_overrides(config), OmegaConf.select(config, "hydra.job.num"), reason)

    # -- the sweep's outcome -----------------------------------------------------------------
    def children(self, sweep: Sweep, *, every: bool = False) -> list[ChildRun]:
        """The parent's children, one per job (a FINISHED one first, else the latest), each with
        its job number (from its tag, else matched by its overrides in start order). ``every``:
        all of them."""
        assert sweep.parent is not None
        client = MlflowClient(sweep.parent.tracking_uri)
        runs = list(_child_runs(client, sweep.parent, order_by=["attributes.start_time ASC"]))
        available: dict[str, list[int]] = {}
        for job in sweep.jobs or []:
            available.setdefault(overrides_tag(list(job.overrides)), []).append(job.num)
        out: list[ChildRun] = []
        for run in runs:
            tagged = run.data.tags.get(JOB_TAG, "")
            nums = available.get(run.data.tags.get("hydra.overrides", ""), [])
            if tagged.isdigit():
                num: int | None = int(tagged)
                if num in nums:
                    nums.remove(num)
            else:
                num = nums.pop(0) if nums else None
            out.append(ChildRun(
                run.info.run_id, run.info.run_name or "", run.info.status, num, run.data.tags.get("hydra.overrides", ""),
                dict(run.data.metrics), dict(run.data.params),
            ))
        if every:
            return out
        chosen: dict[Any, ChildRun] = {}
        for child in out:
            key = child.job if child.job is not None else child.run_id
            if key not in chosen or chosen[key].status != "FINISHED":
                chosen[key] = child
        return list(chosen.values())

    def end(self, sweep: Sweep, outcomes: Sequence[JobOutcome], rule: BestRule, summary: Path | None,
            abandoned: str | None = None) -> list[str]:
        """Record the outcome on the parent and end it; its closing lines (none when abandoned)."""
        if self._ended or sweep.parent is None:
            return []
        self._ended = True
        parent = sweep.parent
        # A server lost by now must cost seconds, not MLflow's default minutes of retries per call.
        with bounded_http(is_http(parent.tracking_uri)):
            return self._end(sweep, parent, outcomes, rule, summary, abandoned)

    def _end(self, sweep: Sweep, parent: sweep_parent.ParentRun, outcomes: Sequence[JobOutcome], rule: BestRule,
             summary: Path | None, abandoned: str | None) -> list[str]:
        client = MlflowClient(parent.tracking_uri)
        try:
            self._record(client, sweep, parent, outcomes, rule, summary)
        except Exception as exc:  # noqa: BLE001 - the parent must still be ended
            client.set_tag(parent.run_id, FAILURE_TAG, f"could not summarise the sweep: {one_line(exc)}")
            client.set_terminated(parent.run_id, "FAILED")
            raise
        finished = sum(o.ok for o in outcomes)
        failed = len(outcomes) - finished
        if abandoned is not None:
            client.set_tag(parent.run_id, FAILURE_TAG, abandoned)
            killed = any(o.child is not None and o.child.status in ("KILLED", "RUNNING") for o in outcomes)
            status = RunStatus.KILLED if killed else RunStatus.FAILED
        elif failed:
            how_many = f"all {failed}" if finished == 0 else f"{failed} of {len(outcomes)}"
            client.set_tag(parent.run_id, FAILURE_TAG, f"{how_many} jobs failed")
            status = RunStatus.FAILED
        else:
            status = RunStatus.FINISHED
        client.set_terminated(parent.run_id, RunStatus.to_string(status))
        return [] if abandoned is not None else where_to_look(client, parent)

    def _record(self, client: MlflowClient, sweep: Sweep, parent: sweep_parent.ParentRun, outcomes: Sequence[JobOutcome],
                rule: BestRule, summary: Path | None) -> None:
        from backproplab.run.sweep import summary_columns, summary_rows

        best = rule.best(outcomes)
        rows = summary_rows(sweep, outcomes, rule)
        metrics = {
            "sweep/jobs": len(outcomes),
            "sweep/finished_jobs": sum(o.ok for o in outcomes),
            "sweep/failed_jobs": sum(not o.ok for o in outcomes),
        }
        tags = {"sweep.objective": rule.objective, "sweep.ranked_by": rule.key, "sweep.direction": rule.direction}
        if best is not None:
            metrics["sweep/best_value"] = float(rule.score(best))  # type: ignore[arg-type]
            # The best child's final numbers on the parent, so that parents sort in the runs table.
            if best.child is not None:
                metrics.update({k: v for k, v in best.child.metrics.items() if k.startswith("final/")})
                tags[BEST_RUN_TAG] = best.child.run_id
                tags[BEST_NAME_TAG] = best.child.name or best.child.run_id
        client.log_batch(parent.run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()], synchronous=True)
        for key, value in tags.items():
            client.set_tag(parent.run_id, key, value)
        if sweep.sampled and best is not None:
            params = {}
            for item in best.overrides:
                key, sep, value = item.partition("=")
                if sep and key.lstrip("+~") in {k.lstrip("+~") for k in sweep.swept}:
                    params[f"sweep.best.{key.lstrip('+~')}"] = truncate(value, MAX_PARAM_VAL_LENGTH)
            for batch in param_batches(params):
                client.log_batch(parent.run_id, params=batch, synchronous=True)
        results_file = sweep.sweep_dir / OPTUNA_RESULTS
        if sweep.sampled and results_file.is_file():
            client.log_artifact(parent.run_id, str(results_file))
        with tempfile.TemporaryDirectory(prefix="backproplab-sweep-") as tmp:
            root = Path(tmp)
            if summary is not None and summary.is_file():
                client.log_artifact(parent.run_id, str(summary))  # the sweep folder's file, as written
            (root / "plots").mkdir()
            best_id = None if best is None or best.child is None else best.child.run_id
            bars = [
                (o.child.name if o.child is not None and o.child.name else f"job {o.num}", rule.score(o), o.status,
                 o.child is not None and o.child.run_id == best_id)
                for o in outcomes
            ]
            run_summary.plot_final_loss(root / "plots" / "final_loss.png", bars, rule.name, rule.direction)
            client.log_artifacts(parent.run_id, str(root))
        if rows:
            columns = summary_columns(sweep.columns)
            numeric = {"rank", "job", "epochs", *(c for c in columns if c.startswith(("final_", "last_")))}
            table = {
                run_summary.table_column(c): [None if r[c] == "" else (r[c] if c in numeric else str(r[c])) for r in rows]
                for c in columns
            }
            if sweep.continued:
                # log_table appends to a table the parent already has: the continued sweep's
                # table replaces it instead, in the form log_table writes.
                import pandas as pd

                with tempfile.TemporaryDirectory(prefix="backproplab-sweep-") as tmp:
                    path = Path(tmp) / "sweep_summary.json"
                    pd.DataFrame(table).to_json(path, orient="split", index=False, date_format="iso")
                    client.log_artifact(parent.run_id, str(path))
            else:
                client.log_table(parent.run_id, data=table, artifact_file="sweep_summary.json")

        def link(o: JobOutcome) -> str | None:
            if o.child is None:
                return None
            return f"[open]({run_summary.run_link(parent.experiment_id, o.child.run_id)})"

        table = markdown_table(ranking_table(outcomes, rule, sweep.columns, link=link))
        text = run_summary.sweep_description(
            self._name, parent.experiment_id, best, rule, sum(o.ok for o in outcomes), len(outcomes), sweep.swept, self._fixed, table
        )
        set_note(client, parent.run_id, text)


def run_url(base: str, parent: sweep_parent.ParentRun) -> str:
    return run_page(base, parent.experiment_id, parent.run_id)


def where_to_look(client: MlflowClient, parent: sweep_parent.ParentRun) -> list[str]:
    """The closing lines of a tracked sweep: the summary artifacts and how to open the parent
    run. A server is opened at its own address; a local store needs ``mlflow ui`` started on it."""
    artifacts = client.get_run(parent.run_id).info.artifact_uri
    lines = [f"mlflow: sweep summary {artifacts}/sweep_summary.csv (and sweep_summary.json, plots/final_loss.png) of parent run {parent.run_id}"]
    lines.append(f"mlflow: {how_to_open(parent.tracking_uri, parent.experiment_id, parent.run_id)}")
    return lines


def _child_runs(client: MlflowClient, parent: sweep_parent.ParentRun, condition: str = "", order_by: list[str] | None = None) -> Iterator[Any]:
    """Every child run of ``parent`` (optionally only those meeting ``condition``), page by page."""
    filter_string = f"tags.`{PARENT_TAG}` = '{parent.run_id}'" + (f" and {condition}" if condition else "")
    token = None
    while True:
        page = client.search_runs([parent.experiment_id], filter_string=filter_string, max_results=1000, order_by=order_by, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def record_failed_job(parent: sweep_parent.ParentRun, overrides: list[str], job: Any, reason: str) -> str | None:
    """Make sure a failed job has a FAILED child run with ``failure_reason``; the new run's id,
    or None when ``track_run`` already recorded the job (a run of the parent with the same
    overrides and job number; one that finished, whose objective a search could not use, is
    marked FAILED here)."""
    client = MlflowClient(parent.tracking_uri)
    tag = overrides_tag(overrides)
    job_text = "" if job is None else str(job)
    # Only this job's runs (by number), or else only runs that did not finish, can be this
    # job's: bounded by the failures, not the sweep.
    condition = f"tags.`{JOB_TAG}` = '{job_text}'" if job is not None else "attributes.status != 'FINISHED'"
    for run in _child_runs(client, parent, condition):
        if run.data.tags.get("hydra.overrides", "") == tag and run.data.tags.get(JOB_TAG, job_text) == job_text:
            if run.info.status == "FINISHED":
                # Trained to the end, but a search could not use it (its objective was not a
                # finite number): the trial failed, and so does its run, metrics kept.
                client.set_tag(run.info.run_id, FAILURE_TAG, truncate(reason, 1000))
                client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
            return None
    tags = base_tags(__version__)
    tags.update({PARENT_TAG: parent.run_id, "hydra.overrides": tag, FAILURE_TAG: truncate(reason, 1000)})
    if job is not None:
        tags[JOB_TAG] = job_text
    name = naming.child_name(overrides, parent.swept_keys, sampled=parent.sampled, job=job if isinstance(job, int) else None)
    name = name or truncate(" ".join(overrides), 250) or None
    run = client.create_run(parent.experiment_id, run_name=name, tags=tags)
    params = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and not key.startswith("hydra."):
            params[key.lstrip("+~")] = truncate(value, MAX_PARAM_VAL_LENGTH)
    try:
        for batch in param_batches(params):
            client.log_batch(run.info.run_id, params=batch, synchronous=True)
    finally:
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
    return run.info.run_id
