"""A sweep in one place: its jobs, their outcomes, the best-job rule and the resume decisions.

Free of Hydra and MLflow: the Hydra layer fills it (``hydra_app.command``: the jobs as the sweeper
expands them, the sweep folder, the objective), the jobs read their part of it from the sweep
folder's record (``RECORD_FILE``), tracking records it on the parent run
(``hydra_app.mlflow_sweep``), and the console prints it (``closing_lines``).

- **Jobs** are numbered as Hydra numbers them (``hydra.job.num``); each writes ``result.json``
  into its own folder, with the sweep's id, so an earlier sweep's records are never read as
  this one's.
- **Resume.** Running the same command again with ``hydra.sweep.dir`` set to the first sweep's
  folder reads that folder's record: a job with an ``ok`` ``result.json`` (and, when tracked, a
  FINISHED child run) is *reused*; a job whose checkpoint (``checkpoint/state.json``) says it did
  not finish is *resumed* (the job continues its own run from it); every other job *runs*. The
  same folder with other jobs is refused, naming the first job that differs.
- **One best-job rule** (``BestRule``), used for the console, ``sweep_summary.csv``, and the
  parent's metrics, tags and description alike: the sweep's ``trainer.objective`` in its
  direction; ``auto`` is the lowest final validation loss when any finished job has one, else the
  lowest final loss. Jobs that did not finish, or whose value is not a finite number, are never
  best; a tie goes to the lower job number.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .config import OBJECTIVES
from .progress import fmt

RESULT_FILE = "result.json"
SUMMARY_FILE = "sweep_summary.csv"
RECORD_FILE = ".backproplab_sweep.json"
CHECKPOINT_STATE = Path("checkpoint") / "state.json"  # written by the run itself (run.job)
# The jobs' own decisions when the sweep is run again.
REUSE, RESUME, RUN = "reuse", "resume", "run"
FINISHED, FAILED, KILLED, MISSING = "FINISHED", "FAILED", "KILLED", "NOT RUN"
# The values a job ends with: result.json keys, also the summary's columns.
VALUE_KEYS = ("final_loss", "final_train_loss", "final_val_loss", "final_train_accuracy", "final_val_accuracy", "last_iteration_loss")
# How the console and the parent's description name them.
VALUE_NAMES = {
    "final_loss": "final loss",
    "final_train_loss": "final training loss",
    "final_val_loss": "final validation loss",
    "final_train_accuracy": "final training accuracy",
    "final_val_accuracy": "final validation accuracy",
}
RANKED_ON_CONSOLE = 10


@dataclass(frozen=True)
class Job:
    """One job as the sweeper launches it."""

    num: int  # hydra.job.num
    overrides: tuple[str, ...]  # the job's overrides, as the launcher passes them


# A component node on the command line, ``{name:swish,beta:0.5}``: how backproplab hands Hydra
# ``model.activation=swish model.activation.beta=0.5`` (hydra_app.preflight). Names show it as typed.
_NODE = re.compile(r"\{([^{}]*)\}")


def node_items(text: str) -> dict[str, str] | None:
    """``{name:swish,beta:0.5}`` -> ``{"name": "swish", "beta": "0.5"}``; None for anything else
    (a plain value, a node whose values hold commas or nodes)."""
    match = _NODE.fullmatch(text.strip())
    if match is None:
        return None
    items = {}
    for part in match.group(1).split(","):
        key, sep, value = part.partition(":")
        if not sep or not key.strip():
            return None
        items[key.strip()] = value.strip()
    return items if "name" in items else None


def typed_overrides(overrides: Sequence[str]) -> list[str]:
    """``model.activation={name:swish,beta:0.5}`` as the user typed it: ``model.activation=swish
    model.activation.beta=0.5``; every other override unchanged."""
    out = []
    for override in overrides:
        key, sep, value = override.partition("=")
        items = node_items(value) if sep else None
        if items is None:
            out.append(override)
            continue
        out.append(f"{key}={items.pop('name')}")
        out += [f"{key}.{param}={v}" for param, v in items.items()]
    return out


def typed_swept(swept: Mapping[str, str]) -> dict[str, str]:
    """Swept keys as typed: ``model.activation`` swept over ``{name:swish,beta:0.5},{name:swish,beta:1.0}``
    is ``model.activation.beta`` swept over ``0.5,1.0`` (and ``model.activation`` itself where the
    names differ); any other key as it is."""
    out: dict[str, str] = {}
    for key, text in swept.items():
        nodes = [node_items(m.group(0)) for m in _NODE.finditer(text)]
        if not nodes or None in nodes or ",".join(m.group(0) for m in _NODE.finditer(text)) != text.strip():
            out[key] = text
            continue
        varying = {}
        for param in dict.fromkeys(p for node in nodes for p in node):  # type: ignore[union-attr]
            values = [node.get(param, "") for node in nodes]  # type: ignore[union-attr]
            if len(set(values)) > 1:
                varying[key if param == "name" else f"{key}.{param}"] = ",".join(dict.fromkeys(values))
        out.update(varying or {key: text})
    return out


def swept_overrides(overrides: Sequence[str], keys: Iterable[str]) -> list[str]:
    """The overrides among a job's that set a swept key (``+`` and ``~`` prefixes ignored): what
    tells one job of a sweep from another, so it names the job."""
    bare = {key.lstrip("+~") for key in keys}
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in bare]


@dataclass(frozen=True)
class ParentRun:
    """The sweep's MLflow parent run, as plain data the jobs receive with the sweep's record."""

    run_id: str
    tracking_uri: str
    experiment_id: str
    swept_keys: tuple[str, ...] = ()
    # The sweep's one element-wise decision (grad/* and param/* metrics on every child or on
    # none), taken by the parent when the multirun starts; None: each job decides for itself.
    elementwise: bool | None = None
    # A search sweeper (Optuna) samples the values: children are named with the trial number.
    sampled: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ParentRun":
        return cls.from_mapping(json.loads(text))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "ParentRun":
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["swept_keys"] = tuple(values.get("swept_keys", ()))
        return cls(**values)


@dataclass(frozen=True)
class ChildRun:
    """A job's tracked run as the parent's store holds it (filled by tracking)."""

    run_id: str
    name: str
    status: str
    job: int | None
    overrides: str  # the ``hydra.overrides`` tag
    metrics: Mapping[str, float] = field(default_factory=dict)  # the latest value of each
    params: Mapping[str, str] = field(default_factory=dict)


# A child's final metrics -> the job's values (a run that logged no final/* metrics, e.g. one
# killed in its first epoch, has its latest per-epoch values).
_CHILD_VALUES = {
    "final_train_loss": ("final/train_loss", "train/loss"),
    "final_val_loss": ("final/val_loss", "val/loss"),
    "final_train_accuracy": ("final/train_accuracy", "train/accuracy"),
    "final_val_accuracy": ("final/val_accuracy", "val/accuracy"),
    "last_iteration_loss": ("batch/loss",),
}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class JobOutcome:
    """How one job ended: from its ``result.json`` and, when tracked, its child run."""

    num: int
    label: str  # its swept overrides (all of them when nothing is swept)
    overrides: tuple[str, ...]
    record: Mapping[str, Any] | None  # its result.json; None when it left none
    child: ChildRun | None = None
    how: str = RUN  # reuse | resume | run: what this command did with it

    @property
    def status(self) -> str:
        if self.record is not None:
            return FINISHED if self.record.get("status") == "ok" else FAILED
        if self.child is not None:
            return KILLED if self.child.status == "RUNNING" else self.child.status
        return MISSING

    @property
    def ok(self) -> bool:
        return self.status == FINISHED

    @property
    def error(self) -> str:
        if self.record is not None:
            return str(self.record.get("error") or "the job failed")
        if self.child is not None:
            return f"the job left no result.json; its run is {self.child.status}"
        return "the job ended without a result (result.json missing)"

    def value(self, key: str) -> float | None:
        """The job's final ``key`` (a ``VALUE_KEYS`` name), a finite number or None."""
        if self.record is not None:
            value = self.record.get(key)
            return float(value) if _finite(value) else None
        if self.child is None:
            return None
        if key == "final_loss":
            return self.value("final_train_loss") if self.value("final_train_loss") is not None else self.value("last_iteration_loss")
        for metric in _CHILD_VALUES.get(key, ()):
            value = self.child.metrics.get(metric)
            if value is not None:
                return float(value) if _finite(value) else None
        return None

    @property
    def epochs(self) -> float | None:
        """Epochs the job ran: its child's logged ``epoch`` metric (epochs completed), else the
        epochs its result.json lists."""
        if self.child is not None and _finite(self.child.metrics.get("epoch")):
            return float(self.child.metrics["epoch"])
        if self.record is not None and isinstance(self.record.get("epochs"), list):
            return float(len(self.record["epochs"]))
        return None


@dataclass(frozen=True)
class BestRule:
    """What "best" means for a sweep: one value key and its direction."""

    key: str
    direction: str  # minimize | maximize
    objective: str  # trainer.objective as set

    @classmethod
    def of(cls, objective: str, outcomes: Sequence[JobOutcome]) -> "BestRule":
        objective = objective if objective in OBJECTIVES else "auto"
        if objective != "auto":
            return cls(objective, OBJECTIVES[objective], objective)
        has_val = any(o.ok and o.value("final_val_loss") is not None for o in outcomes)
        return cls("final_val_loss" if has_val else "final_loss", "minimize", objective)

    @property
    def name(self) -> str:
        return VALUE_NAMES.get(self.key, self.key)

    @property
    def why(self) -> str:
        word = "lowest" if self.direction == "minimize" else "highest"
        return f"{word} {self.name} of the finished jobs, trainer.objective={self.objective}"

    def score(self, outcome: JobOutcome) -> float | None:
        return outcome.value(self.key) if outcome.ok else None

    def rank(self, outcomes: Sequence[JobOutcome]) -> list[JobOutcome]:
        """Every job, best first: the scored ones by value (ties: job number), then the rest by
        job number."""
        sign = -1.0 if self.direction == "maximize" else 1.0
        scored = [o for o in outcomes if self.score(o) is not None]
        rest = [o for o in outcomes if self.score(o) is None]
        return sorted(scored, key=lambda o: (sign * self.score(o), o.num)) + sorted(rest, key=lambda o: o.num)  # type: ignore[operator]

    def best(self, outcomes: Sequence[JobOutcome]) -> JobOutcome | None:
        ranked = self.rank(outcomes)
        return ranked[0] if ranked and self.score(ranked[0]) is not None else None


class SweepMismatch(Exception):
    """The sweep folder holds another sweep: one line naming the first job that differs."""


@dataclass
class Sweep:
    """A multirun: its folder, id, jobs (None when the sweeper picks them as it runs), the swept
    keys, the objective, its parent run, and what this command does with each job."""

    sweep_dir: Path
    jobs: list[Job] | None
    swept: dict[str, str]  # swept key -> values as typed
    objective: str = "auto"
    sampled: bool = False  # a search sweeper (Optuna)
    sweep_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    parent: ParentRun | None = None
    decisions: dict[int, str] = field(default_factory=dict)  # job number -> reuse | resume | run
    continued: bool = False  # this command continues an earlier one in the same folder

    # -- the record in the sweep folder ---------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({
            "sweep_id": self.sweep_id,
            "jobs": None if self.jobs is None else [list(j.overrides) for j in self.jobs],
            "swept": self.swept,
            "objective": self.objective,
            "sampled": self.sampled,
            "parent": None if self.parent is None else asdict(self.parent),
            "decisions": {str(k): v for k, v in self.decisions.items()},
        }, indent=1)

    @classmethod
    def read(cls, sweep_dir: Path) -> "Sweep | None":
        """The sweep recorded in ``sweep_dir``; None when there is none (or it is unreadable)."""
        try:
            data = json.loads((Path(sweep_dir) / RECORD_FILE).read_text(encoding="utf-8"))
            jobs = data.get("jobs")
            return cls(
                Path(sweep_dir),
                None if jobs is None else [Job(n, tuple(o)) for n, o in enumerate(jobs)],
                dict(data.get("swept") or {}),
                str(data.get("objective") or "auto"),
                bool(data.get("sampled")),
                str(data["sweep_id"]),
                None if data.get("parent") is None else ParentRun.from_mapping(data["parent"]),
                {int(k): str(v) for k, v in (data.get("decisions") or {}).items()},
            )
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def write(self) -> None:
        """The record, replaced atomically (a job may be reading it)."""
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.sweep_dir / f"{RECORD_FILE}.{os.getpid()}.tmp"
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, self.sweep_dir / RECORD_FILE)

    # -- a second run of the same command --------------------------------------------------------
    def continue_from(self, earlier: "Sweep") -> None:
        """Take over ``earlier``'s id and parent (same jobs), or raise ``SweepMismatch``."""
        where = f"hydra.sweep.dir={self.sweep_dir}"
        if self.sampled or earlier.sampled or self.jobs is None or earlier.jobs is None:
            raise SweepMismatch(
                f"{where} already holds a search's trials; a search continues through its study's own storage "
                "(hydra.sweeper.storage, hydra.sweeper.study_name) into a new sweep folder"
            )
        for num in range(max(len(self.jobs), len(earlier.jobs))):
            now = self.jobs[num].overrides if num < len(self.jobs) else None
            then = earlier.jobs[num].overrides if num < len(earlier.jobs) else None
            if (None if now is None else sorted(now)) != (None if then is None else sorted(then)):  # order as typed aside
                shown_now = " ".join(now) if now is not None else "no such job"
                shown_then = " ".join(then) if then is not None else "no such job"
                raise SweepMismatch(
                    f"{where} holds another sweep: its job #{num} ran '{shown_then}', this command's is '{shown_now}'; "
                    "repeat the first sweep's overrides to resume it, or choose a new hydra.sweep.dir"
                )
        self.sweep_id, self.parent, self.continued = earlier.sweep_id, earlier.parent, True

    def job_dir(self, num: int, subdir: str | None = None) -> Path:
        return self.sweep_dir / (subdir if subdir is not None else str(num))

    def decide(self, finished_children: Iterable[int] | None, subdirs: Mapping[int, str] | None = None) -> dict[int, str]:
        """Each job's decision for this command, from its folder: reuse a finished job (an ok
        result.json of this sweep and, when ``finished_children`` is given, a FINISHED child run),
        resume one whose checkpoint says it did not finish, run the rest."""
        records = job_records(self.sweep_dir, self.sweep_id) if self.continued else {}
        children = None if finished_children is None else set(finished_children)
        for job in self.jobs or []:
            record = records.get(job.num)
            folder = self.job_dir(job.num, (subdirs or {}).get(job.num))
            if record is not None and record.get("status") == "ok" and (children is None or job.num in children):
                self.decisions[job.num] = REUSE
            elif self.continued and _unfinished_checkpoint(folder):
                self.decisions[job.num] = RESUME
            else:
                self.decisions[job.num] = RUN
        return self.decisions

    def decision(self, num: int | None) -> str:
        return RUN if num is None else self.decisions.get(num, RUN)

    def counts(self) -> dict[str, int]:
        return {how: sum(d == how for d in self.decisions.values()) for how in (REUSE, RESUME, RUN)}

    def plan_line(self) -> str | None:
        """The console's line when a sweep is continued: how many jobs are reused, resumed, run."""
        if not self.continued:
            return None
        c = self.counts()
        return (
            f"sweep: continuing {self.sweep_dir}: {c[REUSE]} finished jobs reused, {c[RESUME]} resumed from their "
            f"checkpoints, {c[RUN]} to run"
        )

    # -- outcomes --------------------------------------------------------------------------------
    def label(self, overrides: Sequence[str]) -> str:
        return " ".join(typed_overrides(swept_overrides(overrides, self.swept) or overrides))

    @property
    def columns(self) -> list[str]:
        """The swept keys as typed, one column each in the summary and the ranking: a sweep of
        ``model.activation.beta`` is that key, not a node ``{name:swish,beta:0.5}``."""
        return list(typed_swept(self.swept))

    def outcomes(self, children: Sequence[ChildRun] = ()) -> list[JobOutcome]:
        """Every job's outcome, in job order: its result.json and its child run (matched by the
        job number the child is tagged with). A sweeper that picks its jobs as it runs has the
        jobs that left a record or a run."""
        records = job_records(self.sweep_dir, self.sweep_id)
        by_job = {c.job: c for c in children if c.job is not None}
        if self.jobs is not None:
            jobs = list(self.jobs)
        else:
            nums = sorted(set(records) | set(by_job))
            jobs = [Job(n, tuple((records.get(n) or {}).get("overrides") or _split(by_job[n].overrides if n in by_job else ""))) for n in nums]
        return [
            JobOutcome(job.num, self.label(job.overrides), job.overrides, records.get(job.num), by_job.get(job.num), self.decision(job.num))
            for job in jobs
        ]

    def rule(self, outcomes: Sequence[JobOutcome]) -> BestRule:
        return BestRule.of(self.objective, outcomes)


def _split(text: str) -> list[str]:
    return text.split() if text else []


def _unfinished_checkpoint(folder: Path) -> bool:
    try:
        state = json.loads((folder / CHECKPOINT_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("finished") is False


def job_records(sweep_dir: Path, sweep_id: str | None) -> dict[int, dict[str, Any]]:
    """``hydra.job.num`` -> result record of the sweep ``sweep_id`` under ``sweep_dir``."""
    found: dict[int, dict[str, Any]] = {}
    for path in sorted(Path(sweep_dir).glob(f"**/{RESULT_FILE}")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("job"), int) and record.get("sweep_id") == sweep_id:
            found[record["job"]] = {**record, "dir": str(path.parent)}
    return found


# -- the summary: one table, one file ------------------------------------------------------------
def summary_columns(swept: Iterable[str]) -> list[str]:
    return ["rank", "job", "status", "how", *swept, *VALUE_KEYS, "epochs", "run_id", "run_name", "error"]


def summary_rows(sweep: Sweep, outcomes: Sequence[JobOutcome], rule: BestRule) -> list[dict[str, Any]]:
    """One row per job in job order, with its rank under ``rule`` (blank when not ranked)."""
    ranks = {o.num: i + 1 for i, o in enumerate(rule.rank(outcomes)) if rule.score(o) is not None}
    rows = []
    for o in outcomes:
        values = _swept_values(o, sweep.columns)
        row: dict[str, Any] = {"rank": ranks.get(o.num, ""), "job": o.num, "status": o.status, "how": o.how, **values}
        for key in VALUE_KEYS:
            value = o.value(key)
            row[key] = "" if value is None else value
        epochs = o.epochs
        row["epochs"] = "" if epochs is None else _epochs_text(epochs)
        row["run_id"] = "" if o.child is None else o.child.run_id
        row["run_name"] = "" if o.child is None else o.child.name
        row["error"] = "" if o.ok else o.error
        rows.append(row)
    return rows


def _swept_values(outcome: JobOutcome, swept: Iterable[str]) -> dict[str, str]:
    given = {}
    for item in typed_overrides(outcome.overrides):
        key, sep, value = item.partition("=")
        if sep:
            given[key.lstrip("+~")] = value
    out = {}
    for key in swept:
        bare = key.lstrip("+~")
        if outcome.child is not None and bare in outcome.child.params:
            out[key] = outcome.child.params[bare]
        else:
            out[key] = given.get(bare, "")
    return out


def _epochs_text(epochs: float) -> str | int:
    return int(epochs) if float(epochs).is_integer() else round(epochs, 3)


def write_summary(sweep: Sweep, rows: Sequence[Mapping[str, Any]]) -> Path:
    path = sweep.sweep_dir / SUMMARY_FILE
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=summary_columns(sweep.columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


# -- the closing lines ---------------------------------------------------------------------------
def ranking_table(outcomes: Sequence[JobOutcome], rule: BestRule, swept: Sequence[str], *, limit: int | None = None,
                  link: Any = None) -> list[list[str]]:
    """The ranked table as rows of cells, header first: rank, job (name), the swept values, the
    rule's loss and accuracy, epochs run, and (``link(outcome)``, when given) where to open it."""
    if "loss" in rule.key:
        loss_key = rule.key
    else:
        loss_key = "final_val_loss" if any(o.ok and o.value("final_val_loss") is not None for o in outcomes) else "final_loss"
    acc_key = rule.key if "accuracy" in rule.key else ("final_val_accuracy" if loss_key == "final_val_loss" else "final_train_accuracy")
    show_acc = any(o.value(acc_key) is not None for o in outcomes)
    header = ["#", "job", *swept, VALUE_NAMES[loss_key].removeprefix("final "), *([VALUE_NAMES[acc_key].removeprefix("final ")] if show_acc else []), "epochs"]
    if link is not None:
        header.append("run")
    ranked = rule.rank(outcomes)
    rows = [header]
    for i, o in enumerate(ranked[: limit if limit is not None else len(ranked)]):
        scored = rule.score(o) is not None
        values = _swept_values(o, swept)
        cells = [str(i + 1) if scored else "-", o.child.name if o.child is not None and o.child.name else f"#{o.num}"]
        cells += [values[k] for k in swept]
        loss = o.value(loss_key)
        cells.append(o.status if not o.ok else ("-" if loss is None else fmt(loss)))
        if show_acc:
            acc = o.value(acc_key)
            cells.append("-" if acc is None or not o.ok else fmt(acc))
        epochs = o.epochs
        cells.append("-" if epochs is None else str(_epochs_text(epochs)))
        if link is not None:
            cells.append(link(o) or "-")
        rows.append(cells)
    return rows


def text_table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def markdown_table(rows: Sequence[Sequence[str]]) -> list[str]:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(c) for c in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows[1:]]
    return lines


def best_line(best: JobOutcome | None, rule: BestRule) -> str:
    if best is None:
        return f"best: none (no job finished with a finite {rule.name})"
    return f"best: job #{best.num} ({best.label}), {rule.name} {fmt(rule.score(best))} ({rule.why})"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def closing_lines(sweep: Sweep, outcomes: Sequence[JobOutcome], rule: BestRule, summary: Path) -> list[str]:
    """The sweep's closing block: how many jobs finished (and what was reused, resumed, run),
    the ranking (the 10 best), the best job, where the results are."""
    n = len(outcomes)
    failed = sum(not o.ok for o in outcomes)
    head = f"sweep: {n - failed} of {n} jobs finished" + (f", {failed} failed" if failed else "")
    if sweep.continued:
        c = sweep.counts()
        head += f" ({c[REUSE]} reused, {c[RESUME]} resumed, {c[RUN]} run by this command)"
    lines = [head]
    if outcomes:
        shown = min(n, RANKED_ON_CONSOLE)
        lines.append(f"ranking by {rule.name}" + (f" (the {shown} best of {n})" if shown < n else "") + ":")
        lines += ["  " + line for line in text_table(ranking_table(outcomes, rule, sweep.columns, limit=RANKED_ON_CONSOLE))]
    lines.append(best_line(rule.best(outcomes), rule))
    lines.append(f"results: {_shown(summary)} (one row per job; each job's folder under {_shown(sweep.sweep_dir)} has its result.json)")
    return lines


__all__ = [
    "Job", "ParentRun", "ChildRun", "JobOutcome", "BestRule", "Sweep", "SweepMismatch", "swept_overrides", "job_records",
    "node_items", "typed_overrides", "typed_swept",
    "summary_rows", "write_summary", "ranking_table", "closing_lines", "REUSE", "RESUME", "RUN",
]
