"""Hydra callback: a multirun becomes one MLflow parent run with every job a nested child.

Called by the command's callback (``command.CommandCallback``) when tracking is on, which hands
``on_multirun_start`` the sweep's ``SweepPlan`` from its check of every job.

- ``on_multirun_start`` (the launching process): checks the store, creates the parent run (named
  by what is swept on which data), logs which parameters are swept (``sweep.<key>`` params,
  ``sweep.params`` tag) and the fixed overrides (params under their own keys), takes the sweep's
  one element-wise decision from the networks the command's check built (``plan``) (tags
  ``backproplab.elementwise_metrics`` and ``backproplab.elementwise_rule``), and publishes the
  parent, with that decision, for the jobs (see ``parent.py``).
- ``on_job_start`` (the job's process, also under joblib): loads the parent so ``track_run``
  nests the job's run under it with ``mlflow.parentRunId``.
- ``on_job_end`` (the job's process): a job that failed before ``track_run`` created its run
  (its config could not be built) still gets a child run, FAILED with ``failure_reason``, so
  every failed job is visible and counted. The CLI validates every job before the multirun
  starts (``backproplab.hydra_app.preflight``), so this is the safety net for what only shows at run time.
- ``on_multirun_end``: reads the children back from the store (the jobs' return values belong
  to the app), logs ``sweep_summary.csv``, the same table as ``sweep_summary.json`` via
  ``log_table`` (dot-free column names, which MLflow's table view needs), and
  ``plots/final_loss.png``, names the best child (``backproplab.best_run_id``/``_name`` tags and a
  description linking it, see ``tracking/summary.py``), then ends the parent. Rows are in Hydra's job
  order, with the job number (``hydra.job.num``) in column ``job``: the launching process
  expands the sweep as the sweeper does and matches each child by its ``hydra.overrides`` tag.

Parent status: FINISHED when every job finished; FAILED when any job did not, with
``failure_reason`` saying how many ("1 of 4 jobs failed", "all 4 jobs failed"), the counts in
``sweep/finished_jobs`` and ``sweep/failed_jobs``. A multirun that never reaches
``on_multirun_end`` (a job raised past the app, or Ctrl-C) is ended at interpreter exit:
KILLED after an interrupt, else FAILED, with ``failure_reason``.

The callback holds only plain data (no MLflow client), because joblib pickles it into workers.
"""

from __future__ import annotations

import atexit
import csv
import math
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from mlflow import MlflowClient
from mlflow.entities import Metric, RunStatus
from omegaconf import DictConfig, OmegaConf

from backproplab import __version__
from .preflight import SweepPlan, expand, sweeper_choice, swept_parameters, task_overrides
from backproplab.errors import ConfigError
from backproplab.tracking import naming
from backproplab.tracking import parent as sweep_parent
from backproplab.tracking import summary as run_summary
from backproplab.tracking.description import run_page
from backproplab.tracking.metric_names import LOSS
from backproplab.tracking.mlflow_private import MAX_PARAM_VAL_LENGTH
from backproplab.tracking.params import param_batches, truncate
from backproplab.tracking.reachability import is_http
from backproplab.tracking.settings import TrackingSettings
from backproplab.tracking.store import connect, resolve_uri
from backproplab.tracking.spool import bounded_http
from backproplab.tracking.tags import base_tags, one_line, overrides_tag, process_tags

PARENT_TAG = "mlflow.parentRunId"
FAILURE_TAG = "failure_reason"
JOB_TAG = "hydra.job.num"  # on the child runs this callback creates itself
# Latest value of each child metric -> summary column. ``final_loss`` is the last epoch's mean
# training loss (the last iteration's loss of one mini-batch is too noisy to compare configs),
# or the last iteration's loss when no epoch ended.
SUMMARY_METRICS = {
    LOSS: "last_iteration_loss",
    "train/loss": "final_train_loss",
    "val/loss": "final_val_loss",
    "train/accuracy": "final_train_accuracy",
    "val/accuracy": "final_val_accuracy",
}


# trainer.objective -> the child metric whose latest value is that objective (what the task
# returned to the sweeper). ``auto``: val/loss where the child has it, else train/loss.
OBJECTIVE_METRICS = {
    "final_val_loss": "val/loss",
    "final_train_loss": "train/loss",
    "final_val_accuracy": "val/accuracy",
    "final_train_accuracy": "train/accuracy",
}
# What Hydra's Optuna sweeper writes into the sweep folder once the study is done.
OPTUNA_RESULTS = "optimization_results.yaml"
BEST_RUN_TAG = "backproplab.best_run_id"
BEST_NAME_TAG = "backproplab.best_run_name"
NOTE_TAG = "mlflow.note.content"  # the run's description in MLflow's UI
ELEMENTWISE_TAG = "backproplab.elementwise_metrics"
ELEMENTWISE_RULE_TAG = "backproplab.elementwise_rule"


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


def objective_of(run: Any, objective: str) -> float | None:
    """A child run's objective value, from its metrics; None if it has none."""
    metrics = run.data.metrics
    if objective == "auto":
        value = metrics.get("val/loss", metrics.get("train/loss", metrics.get(LOSS)))
    else:
        value = metrics.get(OBJECTIVE_METRICS.get(objective, ""))
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class Study:
    """A search sweep as the parent run records it: the objective, its direction, and the
    best child (by its metrics, cross-checked with the sweeper's own results file)."""

    objective: str
    direction: str
    best_value: float | None
    best_params: dict[str, Any]
    best_run_id: str | None


def study_of(children: list[Any], objective: str, direction: str, results: dict[str, Any] | None) -> Study:
    scored = [(objective_of(r, objective), r) for r in children if r.info.status == "FINISHED"]
    scored = [(v, r) for v, r in scored if v is not None]
    sign = -1.0 if direction == "maximize" else 1.0
    best_run = min(scored, key=lambda vr: sign * vr[0])[1] if scored else None
    best_value = objective_of(best_run, objective) if best_run is not None else None
    params: dict[str, Any] = {}
    if results and "best_value" in results:
        # Optuna's own best trial; the child with that value is the one it ran (ties: the first).
        best_value = float(results["best_value"])
        params = dict(results.get("best_params") or {})
        same = [r for v, r in scored if math.isclose(v, best_value, rel_tol=1e-9, abs_tol=1e-12)]
        best_run = same[0] if same else best_run
    elif best_run is not None:
        params = {k: v for k, v in _overrides_of(best_run).items()}
    return Study(objective, direction, best_value, params, None if best_run is None else best_run.info.run_id)


def _sweep_dir(config: DictConfig) -> Path | None:
    value = OmegaConf.select(config, "hydra.sweep.dir")
    if value is None:
        return None
    path = Path(str(value))
    if not path.is_absolute():
        # Relative to where Hydra was started, even if the job has since changed directory.
        cwd = OmegaConf.select(config, "hydra.runtime.cwd")
        path = Path(str(cwd)) / path if cwd else path.resolve()
    return path


def job_numbers(config: DictConfig) -> dict[str, list[int]]:
    """``hydra.overrides`` tag -> Hydra job numbers, from the sweeper's own expansion of the
    sweep (empty when the sweeper picks its jobs while it runs)."""

    try:
        jobs = expand(config, None) or []
    except Exception:  # noqa: BLE001 - Hydra reports a sweep it cannot expand
        return {}
    numbers: dict[str, list[int]] = {}
    for job in jobs:
        numbers.setdefault(overrides_tag(list(job.overrides)), []).append(job.num)
    return numbers


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


def _overrides_of(run: Any) -> dict[str, str]:
    text = run.data.tags.get("hydra.overrides", "")
    out = {}
    for item in text.split():
        if "=" in item:
            key, value = item.split("=", 1)
            out[key.lstrip("+~")] = value
    return out


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self._parent: sweep_parent.ParentRun | None = None
        self._swept: dict[str, str] = {}
        self._job_numbers: dict[str, list[int]] = {}
        self._search: tuple[str, str] | None = None  # (objective, direction) of a search sweep
        self._sweep_dir: Path | None = None
        self._name = ""
        self._fixed: dict[str, str] = {}

    # -- launching process -------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, plan: SweepPlan | None = None, **kwargs: Any) -> None:
        logger = OmegaConf.to_container(config.logger, resolve=True) if "logger" in config else None
        settings = TrackingSettings.from_mapping(logger)  # type: ignore[arg-type]
        if not settings.enabled:
            return
        uri = resolve_uri(settings.tracking_uri)
        try:
            client, experiment_id = connect(uri, settings.experiment_name, upgrade_store=settings.upgrade_store)
        except ConfigError as exc:
            # Hydra turns exceptions from callbacks into warnings and would start every job
            # anyway; an unusable store must stop the multirun before its first job.
            from .error_report import describe

            line, code = describe(exc)
            print(line, file=sys.stderr, flush=True)
            raise SystemExit(code) from None
        swept_as_given = swept_parameters(config)
        fixed = fixed_overrides(config, swept_as_given)
        swept = naming.typed_swept(swept_as_given)  # model.activation.beta=0.5,1.0 as typed, not as handed to Hydra
        elementwise, rule = elementwise_decision(plan)
        search = sweeper_choice(config) not in (None, "basic")
        sweep_dir = _sweep_dir(config)
        tags = base_tags(__version__)
        tags.update(process_tags())  # so `backproplab runs reap` can end it if the sweep is killed
        tags.update(
            {
                "backproplab.sweep": "true",
                "sweep.params": ",".join(swept),
                "sweep.dir": str(sweep_dir),
                "hydra.overrides": overrides_tag(list(OmegaConf.select(config, "hydra.overrides.task") or [])),
                "hydra.sweeper": str(OmegaConf.select(config, "hydra.sweeper._target_")),
                "hydra.launcher": str(OmegaConf.select(config, "hydra.launcher._target_")),
                ELEMENTWISE_TAG: "true" if elementwise else "false",
                ELEMENTWISE_RULE_TAG: rule,
            }
        )
        data = naming.data_name(OmegaConf.to_container(config.data, resolve=False) if "data" in config else None)
        name = settings.run_name or naming.parent_name(swept, data, search=search)
        run = client.create_run(experiment_id, run_name=truncate(name, 250), tags=tags)
        params = {f"sweep.{k}": v for k, v in swept.items()}
        params.update({k: v for k, v in fixed.items() if k not in params})
        for batch in param_batches({k: truncate(v, MAX_PARAM_VAL_LENGTH) for k, v in params.items()}):
            client.log_batch(run.info.run_id, params=batch, synchronous=True)
        self._parent = sweep_parent.ParentRun(
            run.info.run_id, uri, experiment_id, tuple(swept), elementwise=elementwise, sampled=search
        )
        self._name = name
        self._fixed = fixed
        self._swept = swept
        self._job_numbers = job_numbers(config)
        self._sweep_dir = sweep_dir
        self._search = None
        if sweeper_choice(config) not in (None, "basic"):
            direction = OmegaConf.select(config, "hydra.sweeper.direction", default="minimize")
            objective = OmegaConf.select(config, "trainer.objective", default="auto")
            self._search = (str(objective), str(getattr(direction, "name", direction)))
        sweep_parent.publish(self._parent, sweep_dir if sweep_dir is not None else Path.cwd())
        sweep_parent.interrupted = False
        sweep_parent.stop_reason = None
        atexit.register(self._abandon)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._parent is not None:
            self._end(None)

    # -- job process -------------------------------------------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
            sweep_parent.set_current(None)
            return
        # The parent this callback created, when it is the launching process's instance or a
        # copy pickled with the job after on_multirun_start (joblib, Ray: a Ray worker on another
        # machine sees neither the sweep directory nor this process's environment).
        sweep_parent.set_current(self._parent or sweep_parent.discover(_sweep_dir(config)))

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        parent = sweep_parent.current()
        sweep_parent.set_current(None)
        reason = _job_failure(job_return)
        if parent is not None and reason is not None:
            overrides = task_overrides(config)
            record_failed_job(parent, overrides, OmegaConf.select(config, "hydra.job.num"), reason)

    # -- ending the parent -------------------------------------------------------------------
    def _abandon(self) -> None:
        if self._parent is not None:
            if sweep_parent.interrupted:
                reason = "interrupted"
            elif sweep_parent.stop_reason:
                reason = f"the multirun stopped before its end: {sweep_parent.stop_reason}"
            else:
                reason = "the multirun stopped before its end (a job raised)"
            self._end(reason)

    def _end(self, abandoned: str | None) -> None:
        parent, self._parent = self._parent, None
        sweep_parent.unpublish()
        assert parent is not None
        # A server lost by now must cost seconds, not MLflow's default minutes of retries per call.
        with bounded_http(is_http(parent.tracking_uri)):
            self._end_parent(parent, abandoned)

    def _end_parent(self, parent: sweep_parent.ParentRun, abandoned: str | None) -> None:
        client = MlflowClient(parent.tracking_uri)
        try:
            children = self.children(client, parent)
            finished = sum(r.info.status == "FINISHED" for r in children)
            best = None if self._search is None else self._log_study(client, parent, children)
            if best is None:  # ties go to the lowest job number
                best = run_summary.best_child([run for run, _ in self.numbered(children)])
            self._log_summary(client, parent, children, best)
            self._log_best(client, parent, children, best)
        except Exception as exc:  # noqa: BLE001 - the parent must still be ended
            client.set_tag(parent.run_id, FAILURE_TAG, f"could not summarise the sweep: {one_line(exc)}")
            client.set_terminated(parent.run_id, "FAILED")
            raise
        failed = len(children) - finished
        if abandoned is not None:
            client.set_tag(parent.run_id, FAILURE_TAG, abandoned)
            status = RunStatus.KILLED if sweep_parent.interrupted else RunStatus.FAILED
        elif failed:
            how_many = f"all {failed}" if finished == 0 else f"{failed} of {len(children)}"
            client.set_tag(parent.run_id, FAILURE_TAG, f"{how_many} jobs failed")
            status = RunStatus.FAILED
        else:
            status = RunStatus.FINISHED
        client.set_terminated(parent.run_id, RunStatus.to_string(status))
        if abandoned is None:
            for line in where_to_look(client, parent):
                print(line, flush=True)

    @staticmethod
    def children(client: MlflowClient, parent: sweep_parent.ParentRun) -> list[Any]:
        return list(_child_runs(client, parent, order_by=["attributes.start_time ASC"]))

    def numbered(self, children: list[Any]) -> list[tuple[Any, int | None]]:
        """(child, Hydra job number) in job order; children of unknown number come last, in
        the order they started. Children are read in start order, so identical overrides
        (``lr=0.1,0.1``) take their job numbers in turn."""
        available = {tag: list(nums) for tag, nums in self._job_numbers.items()}
        pairs: list[tuple[Any, int | None]] = []
        for run in children:
            tagged = run.data.tags.get(JOB_TAG, "")
            if tagged.isdigit():
                job: int | None = int(tagged)
                nums = available.get(run.data.tags.get("hydra.overrides", ""), [])
                if job in nums:
                    nums.remove(job)
            else:
                nums = available.get(run.data.tags.get("hydra.overrides", ""), [])
                job = nums.pop(0) if nums else None
            pairs.append((run, job))
        order = {id(run): i for i, run in enumerate(children)}
        return sorted(pairs, key=lambda p: (p[1] is None, p[1] if p[1] is not None else 0, order[id(p[0])]))

    def _log_summary(
        self, client: MlflowClient, parent: sweep_parent.ParentRun, children: list[Any], best: run_summary.Best | None = None
    ) -> None:
        keys = list(self._swept) or list(parent.swept_keys)
        rows = []
        for run, job in self.numbered(children):
            overrides = _overrides_of(run)
            row: dict[str, Any] = {
                "job": "" if job is None else job,
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "status": run.info.status,
            }
            for key in keys:
                row[key] = run.data.params.get(key, overrides.get(key, ""))
            metrics = run.data.metrics  # the latest value of each metric
            final = metrics.get("train/loss", metrics.get(LOSS))
            row["final_loss"] = "" if final is None else final
            for metric in SUMMARY_METRICS:
                value = metrics.get(metric)
                row[SUMMARY_METRICS[metric]] = "" if value is None else value
            rows.append(row)
        columns = ["job", "run_id", "run_name", "status", *keys, "final_loss", *SUMMARY_METRICS.values()]
        losses = [r["final_loss"] for r in rows if r["status"] == "FINISHED" and r["final_loss"] != ""]
        counts = {
            "sweep/jobs": len(rows),
            "sweep/finished_jobs": sum(r["status"] == "FINISHED" for r in rows),
            "sweep/failed_jobs": sum(r["status"] != "FINISHED" for r in rows),
        }
        metrics = [Metric(k, float(v), 0, 0) for k, v in counts.items()]
        if losses:
            metrics.append(Metric("sweep/best_final_loss", float(min(losses)), 0, 0))
        client.log_batch(parent.run_id, metrics=metrics, synchronous=True)
        with tempfile.TemporaryDirectory(prefix="backproplab-sweep-") as tmp:
            root = Path(tmp)
            with open(root / "sweep_summary.csv", "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
            (root / "plots").mkdir()
            ranking = best.metric if best is not None and best.metric.startswith("final/") else run_summary.ranking_metric(children)
            bars = [
                (
                    run.info.run_name or f"job {job}",
                    run_summary.final_value(run, ranking) if run.info.status == "FINISHED" else None,
                    run.info.status,
                    best is not None and run.info.run_id == best.run.info.run_id,
                )
                for run, job in self.numbered(children)
            ]
            run_summary.plot_final_loss(root / "plots" / "final_loss.png", bars, ranking)
            client.log_artifacts(parent.run_id, str(root))
        if rows:
            text_columns = ("run_id", "run_name", "status", *keys)
            table = {c: [str(r[c]) if c in text_columns else r[c] for r in rows] for c in columns}
            table = {run_summary.table_column(c): [None if v == "" else v for v in vals] for c, vals in table.items()}
            client.log_table(parent.run_id, data=table, artifact_file="sweep_summary.json")


    def _log_study(self, client: MlflowClient, parent: sweep_parent.ParentRun, children: list[Any]) -> run_summary.Best | None:
        """The search's outcome on the parent: ``sweep/best_value``, ``sweep.best.<param>``,
        ``backproplab.best_run_id``, the objective and direction, and the sweeper's results file."""
        assert self._search is not None
        results_file = None if self._sweep_dir is None else self._sweep_dir / OPTUNA_RESULTS
        results = None
        if results_file is not None and results_file.is_file():
            loaded = OmegaConf.to_container(OmegaConf.load(results_file), resolve=True)
            results = loaded if isinstance(loaded, dict) else None
        study = study_of(children, *self._search, results)  # type: ignore[arg-type]
        tags = {"sweep.objective": study.objective, "sweep.direction": study.direction}
        for key, value in tags.items():
            client.set_tag(parent.run_id, key, value)
        params = {f"sweep.best.{k}": truncate(str(v), MAX_PARAM_VAL_LENGTH) for k, v in study.best_params.items()}
        for batch in param_batches(params):
            client.log_batch(parent.run_id, params=batch, synchronous=True)
        if study.best_value is not None:
            client.log_batch(parent.run_id, metrics=[Metric("sweep/best_value", study.best_value, 0, 0)], synchronous=True)
        if results_file is not None and results_file.is_file():
            client.log_artifact(parent.run_id, str(results_file))
        if study.objective == "auto" or study.best_run_id is None or study.best_value is None:
            return None  # auto is the loss rule of ``summary.best_child``
        run = next(r for r in children if r.info.run_id == study.best_run_id)
        return run_summary.Best(run, study.objective, study.best_value, f"the search's best trial, {study.objective} {study.direction}d")

    def _log_best(
        self, client: MlflowClient, parent: sweep_parent.ParentRun, children: list[Any], best: run_summary.Best | None
    ) -> None:
        """The answer on the parent: the best child's id and name as tags, and a description
        (``mlflow.note.content``) that names and links it."""
        if best is not None:
            client.set_tag(parent.run_id, BEST_RUN_TAG, best.run.info.run_id)
            client.set_tag(parent.run_id, BEST_NAME_TAG, best.run.info.run_name or best.run.info.run_id)
        finished = sum(r.info.status == "FINISHED" for r in children)
        text = run_summary.sweep_description(self._name, parent.experiment_id, best, finished, len(children), self._swept, self._fixed)
        client.set_tag(parent.run_id, NOTE_TAG, text)


def run_url(base: str, parent: sweep_parent.ParentRun) -> str:
    return run_page(base, parent.experiment_id, parent.run_id)


def where_to_look(client: MlflowClient, parent: sweep_parent.ParentRun) -> list[str]:
    """The closing lines of a tracked sweep: the summary artifacts and how to open the parent
    run. A server is opened at its own address; a local store needs ``mlflow ui`` started on it."""
    artifacts = client.get_run(parent.run_id).info.artifact_uri
    lines = [f"mlflow: sweep summary {artifacts}/sweep_summary.csv (and sweep_summary.json, plots/final_loss.png) of parent run {parent.run_id}"]
    uri = parent.tracking_uri
    if is_http(uri):
        lines.append(f"mlflow: open {run_url(uri, parent)}")
    else:
        lines.append(f"mlflow: mlflow ui --backend-store-uri {uri}   then open {run_url('http://127.0.0.1:5000', parent)}")
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
