"""A sweep resumes by running it again, and names its best job by one rule everywhere.

Through the real command: a tracked sweep killed mid-way (SIGKILL to its process group once two
jobs have their result.json), then the same command again into the same folder; the refusal of
another sweep there; an untracked sweep run twice; an Optuna study continued through its own
storage. The sweep's one object (``backproplab.run.sweep``) is tested directly below.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli_env
from hypothesis import given, settings, strategies as st

from backproplab.run.sweep import BestRule, ChildRun, Job, JobOutcome, Sweep, SweepMismatch

SLOW = pytest.mark.slow
# Job #2 trains long enough to be running when the sweep is killed, once jobs #0 and #1 are done
# and job #2 has its run.
KILLED_SWEEP = [
    "-m", "data=moons", "data.n_samples=40", "data.batch_size=8", "trainer.epochs=3,4,200,5",
    "hydra.sweep.dir=sweep",
]


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "backproplab", *args]


def _killed_when(args: list[str], cwd: Path, ready) -> None:
    """Start the command in its own process group and SIGKILL the group once ``ready()`` holds
    (waiting on the files and the store, not on a clock)."""
    proc = subprocess.Popen(_command(*args), cwd=cwd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"the sweep ended before it was killed: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()


def _job_training(cwd: Path, num: int):
    """Jobs before ``num`` have their result.json, and job ``num`` has its run in the store."""

    def ready() -> bool:
        if len(list((cwd / "sweep").glob("*/result.json"))) < num or not (cwd / "mlflow.db").exists():
            return False
        try:
            with contextlib.closing(sqlite3.connect(cwd / "mlflow.db", timeout=0.1)) as db:
                found = db.execute("SELECT count(*) FROM tags WHERE key = 'hydra.job.num' AND value = ?", (str(num),)).fetchone()
        except sqlite3.Error:  # busy, or its tables not created yet
            return False
        return bool(found and found[0])

    return ready


def _runs(uri: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("backproplab.sweep") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return client, parent, children


@SLOW
def test_a_killed_sweep_run_again_reuses_finished_jobs_and_continues_its_parent(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = [*KILLED_SWEEP, f"logger.tracking_uri={uri}"]
    _killed_when(args, tmp_path, _job_training(tmp_path, 2))
    finished = sorted(json.loads(p.read_text())["job"] for p in (tmp_path / "sweep").glob("*/result.json"))
    assert finished == [0, 1]  # job #2 (200 epochs) was running
    _, parent_before, children_before = _runs(uri)
    assert parent_before.info.status == "RUNNING"  # killed outright: nothing ended it
    first_ids = {c.data.tags["hydra.job.num"]: c.info.run_id for c in children_before}
    # The killed job continues from its checkpoint when runs keep one (runs own that contract).
    resumable = (tmp_path / "sweep" / "2" / "checkpoint" / "state.json").is_file()

    proc = subprocess.run(_command(*args), cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed, fresh = (1, 1) if resumable else (0, 2)
    assert f"sweep: continuing {tmp_path / 'sweep'}: 2 finished jobs reused, {resumed} resumed from their checkpoints, {fresh} to run" in proc.stdout
    assert proc.stdout.count("reused: finished in an earlier run of this sweep") == 2
    assert proc.stdout.count("] final loss ") == 2  # only jobs #2 and #3 trained
    assert f"sweep: 4 of 4 jobs finished (2 reused, {resumed} resumed, {fresh} run by this command)" in proc.stdout
    assert "View run" not in proc.stdout  # MLflow's own lines are hidden in sweeps

    client, parent, children = _runs(uri)
    assert parent.info.run_id == parent_before.info.run_id and parent.info.status == "FINISHED"
    assert "failure_reason" not in parent.data.tags
    assert sorted(c.data.tags["hydra.job.num"] for c in children) == ["0", "1", "2", "3"]  # one child per job
    assert all(c.info.status == "FINISHED" for c in children)
    by_job = {c.data.tags["hydra.job.num"]: c for c in children}
    assert by_job["0"].info.run_id == first_ids["0"] and by_job["1"].info.run_id == first_ids["1"]  # reused, not run again
    if resumable:
        assert by_job["2"].info.run_id == first_ids["2"]  # the same run, continued
    else:
        # The killed job's run was replaced by its new one; the old one is in MLflow's deleted runs.
        assert by_job["2"].info.run_id != first_ids["2"]
        old = client.get_run(first_ids["2"])
        assert old.info.lifecycle_stage == "deleted" and "ran again" in old.data.tags["backproplab.replaced"]
    assert by_job["2"].data.metrics["epoch"] == 200
    check_one_best_everywhere(proc.stdout, tmp_path / "sweep", client, parent, children)


def check_one_best_everywhere(stdout: str, sweep_dir: Path, client, parent, children) -> None:
    """The console, sweep_summary.csv (folder and artifact), the parent's metrics, tags and
    description name the same best job with the same number, and rank the same table."""
    with open(sweep_dir / "sweep_summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    artifact = Path(client.download_artifacts(parent.info.run_id, "sweep_summary.csv", dst_path=str(sweep_dir.parent / "dl")))
    assert artifact.read_text() == (sweep_dir / "sweep_summary.csv").read_text()  # written once, logged as written
    assert list(rows[0]) == [
        "rank", "job", "status", "how", "trainer.epochs", "final_loss", "final_train_loss", "final_val_loss",
        "final_train_accuracy", "final_val_accuracy", "last_iteration_loss", "epochs", "run_id", "run_name", "error",
    ]
    # The epochs each job ran, as its child logged them.
    by_id = {c.info.run_id: c for c in children}
    assert [int(r["epochs"]) for r in rows] == [int(by_id[r["run_id"]].data.metrics["epoch"]) for r in rows] == [3, 4, 200, 5]
    best_row = next(r for r in rows if r["rank"] == "1")
    best = by_id[best_row["run_id"]]
    value = best.data.metrics["final/val_loss"]
    assert value == min(c.data.metrics["final/val_loss"] for c in children)
    assert float(best_row["final_val_loss"]) == value
    assert parent.data.metrics["sweep/best_value"] == value == parent.data.metrics["final/val_loss"]
    assert parent.data.metrics["final/val_accuracy"] == best.data.metrics["final/val_accuracy"]
    assert parent.data.tags["backproplab.best_run_id"] == best.info.run_id
    assert parent.data.tags["sweep.ranked_by"] == "final_val_loss" and parent.data.tags["sweep.direction"] == "minimize"
    assert parent.data.tags["sweep.objective"] == "auto"
    note = parent.data.tags["mlflow.note.content"]
    assert f"**, final validation loss = {value:.6g} (" in note and f"run id `{best.info.run_id}`" in note
    # The ranked table: one row per child, best first, each linking its run.
    ranked = sorted(rows, key=lambda r: int(r["rank"]))
    table = [line for line in note.splitlines() if line.startswith("| ") and "/runs/" in line]
    assert len(table) == 4
    for line, row in zip(table, ranked):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == row["rank"] and cells[1] == row["run_name"] and cells[2] == row["trainer.epochs"]
        assert cells[3] == f"{float(row['final_val_loss']):.6f}" and cells[5] == row["epochs"]
        assert f"/runs/{row['run_id']}?" in cells[6]
    # The console: the same table as the last lines before the best line, the same best, the same number.
    lines = stdout.strip().splitlines()
    (at,) = [i for i, line in enumerate(lines) if line.startswith("ranking by final validation loss")]
    console = [line.split() for line in lines[at + 2: at + 6]]
    assert [cells[1] for cells in console] == [r["run_name"] for r in ranked]
    assert [cells[3] for cells in console] == [f"{float(r['final_val_loss']):.6f}" for r in ranked]
    assert lines[at + 6].startswith(f"best: job #{best_row['job']} (trainer.epochs={best_row['trainer.epochs']}), final validation loss {value:.6f} ")
    assert lines[-1].startswith("mlflow: mlflow ui ") and parent.info.run_id in lines[-1]  # the closing block ends the output


@SLOW
def test_an_untracked_sweep_run_again_reuses_its_jobs_and_another_sweep_there_is_refused(tmp_path):
    base = ["-m", "trainer.epochs=2", "logger=none", "hydra.sweep.dir=sweep"]
    first = subprocess.run(_command(*base, "optimizer.lr=0.1,0.5"), cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    records = {p: p.read_text() for p in (tmp_path / "sweep").glob("*/result.json")}
    again = subprocess.run(_command(*base, "optimizer.lr=0.1,0.5"), cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "2 finished jobs reused, 0 resumed from their checkpoints, 0 to run" in again.stdout
    assert "] final loss " not in again.stdout
    assert {p: p.read_text() for p in records} == records  # nothing ran, nothing was rewritten
    summary = (tmp_path / "sweep" / "sweep_summary.csv").read_text()

    other = subprocess.run(_command(*base, "optimizer.lr=0.1,0.7"), cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert other.returncode == 2
    assert other.stderr.strip().splitlines() == [
        f"error: hydra.sweep.dir={tmp_path / 'sweep'} holds another sweep: its job #1 ran 'trainer.epochs=2 logger=none optimizer.lr=0.5', "
        "this command's is 'trainer.epochs=2 logger=none optimizer.lr=0.7'; repeat the first sweep's overrides to resume it, "
        "or choose a new hydra.sweep.dir"
    ]
    assert "Launching" not in other.stdout
    assert (tmp_path / "sweep" / "sweep_summary.csv").read_text() == summary
    assert {p: p.read_text() for p in records} == records


@SLOW
def test_an_optuna_study_continues_through_its_own_storage(tmp_path):
    """Where the installed Optuna can keep a study in a database, a second command adds its
    trials to the first's study; where it cannot, the storage is refused up front, one line,
    exit 2. Either way a search's folder is not resumed like a grid's."""
    optuna = pytest.importorskip("optuna")
    from importlib.metadata import version

    from backproplab.hydra_app.preflight import study_storage_problem

    storage = f"sqlite:///{tmp_path}/optuna.db"
    search = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "optimizer.lr=interval(0.01,1.0)", "trainer.epochs=2", "logger=none"]
    stored = [f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=lr"]
    problem = study_storage_problem(version("optuna"), version("sqlalchemy"))
    if problem is not None:
        refused = subprocess.run(_command(*search, *stored, "hydra.sweep.dir=stored"), cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2
        (line,) = refused.stderr.splitlines()
        assert line.startswith("error: hydra.sweeper.storage='sqlite:///") and line.endswith(
            f" cannot be used: {problem}; valid: no storage (each search a new study), "
            'or pip install "sqlalchemy<2" (MLflow accepts >=1.4)'
        )
        assert not (tmp_path / "stored").exists() and not (tmp_path / "optuna.db").exists()
    else:
        for folder in ("first", "second"):
            proc = subprocess.run(_command(*search, *stored, f"hydra.sweep.dir={folder}"), cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr[-3000:]
        study = optuna.load_study(study_name="lr", storage=storage)
        assert [t.number for t in study.trials] == [0, 1, 2, 3]  # the second command added two trials
        assert yaml_load(tmp_path / "second" / "optimization_results.yaml")["best_value"] == min(t.value for t in study.trials)
    # A search's trials are numbered from 0 in each command: its folder is not resumed like a grid's.
    first = subprocess.run(_command(*search, "hydra.sweep.dir=search"), cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    records = {p: p.read_text() for p in (tmp_path / "search").glob("*/result.json")}
    again = subprocess.run(_command(*search, "hydra.sweep.dir=search"), cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 2
    assert re.fullmatch(r"error: hydra\.sweep\.dir=\S+search already holds a search's trials; a search continues through its "
                        r"study's own storage \(hydra\.sweeper\.storage, hydra\.sweeper\.study_name\) into a new sweep folder\n", again.stderr)
    assert len(records) == 2 and {p: p.read_text() for p in records} == records


def yaml_load(path: Path):
    import yaml

    return yaml.safe_load(path.read_text())


# -- the sweep's one object ----------------------------------------------------------------------
def _outcome(num: int, status: str = "ok", **values) -> JobOutcome:
    record = {"status": status, "epochs": [{}] * 3, **values}
    return JobOutcome(num, f"x={num}", (f"x={num}",), record)


def test_the_best_rule_is_the_objective_in_its_direction_and_ties_go_to_the_lower_job():
    jobs = [_outcome(0, final_loss=0.5, final_val_loss=0.9), _outcome(1, final_loss=0.1, final_val_loss=0.4),
            _outcome(2, final_loss=0.3, final_val_loss=0.4), _outcome(3, "failed", final_val_loss=0.0)]
    rule = BestRule.of("auto", jobs)
    assert (rule.key, rule.direction) == ("final_val_loss", "minimize")  # a validation split: its loss
    assert [o.num for o in rule.rank(jobs)] == [1, 2, 0, 3] and rule.best(jobs).num == 1
    no_split = [_outcome(0, final_loss=0.5), _outcome(1, final_loss=float("nan")), _outcome(2, final_loss=0.7)]
    assert BestRule.of("auto", no_split).key == "final_loss" and BestRule.of("auto", no_split).best(no_split).num == 0
    accuracy = BestRule.of("final_val_accuracy", [_outcome(0, final_val_accuracy=0.6), _outcome(1, final_val_accuracy=0.9)])
    assert accuracy.direction == "maximize" and accuracy.best([_outcome(0, final_val_accuracy=0.6), _outcome(1, final_val_accuracy=0.9)]).num == 1
    assert BestRule.of("auto", [_outcome(0, "failed")]).best([_outcome(0, "failed")]) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), min_size=1, max_size=12))
def test_the_best_job_is_the_lowest_finite_value_and_the_ranking_starts_with_it(values):
    jobs = [_outcome(n, final_loss=v) for n, v in enumerate(values)]
    rule = BestRule.of("auto", jobs)
    finite = [(v, n) for n, v in enumerate(values) if v is not None and math.isfinite(v)]
    best = rule.best(jobs)
    assert (best is None) == (not finite)
    if finite:
        assert best.num == min(finite)[1] and rule.rank(jobs)[0] is best
    assert sorted(o.num for o in rule.rank(jobs)) == list(range(len(values)))


def test_a_child_run_stands_in_for_a_missing_result(tmp_path):
    child = ChildRun("r", "x=1", "FINISHED", 0, "x=1", {"final/train_loss": 0.2, "batch/loss": 0.3, "epoch": 2.0}, {"x": "1"})
    outcome = JobOutcome(0, "x=1", ("x=1",), None, child)
    assert outcome.ok and outcome.value("final_loss") == 0.2 and outcome.epochs == 2.0
    killed = JobOutcome(1, "x=2", ("x=2",), None, ChildRun("k", "x=2", "RUNNING", 1, "x=2"))
    assert killed.status == "KILLED" and not killed.ok


def test_the_sweeps_record_round_trips_and_names_the_first_differing_job(tmp_path):
    first = Sweep(tmp_path, [Job(0, ("a=1",)), Job(1, ("a=2",))], {"a": "1,2"})
    first.write()
    again = Sweep(tmp_path, [Job(0, ("a=1",)), Job(1, ("a=2",))], {"a": "1,2"})
    again.continue_from(Sweep.read(tmp_path))
    assert again.continued and again.sweep_id == first.sweep_id
    longer = Sweep(tmp_path, [Job(0, ("a=1",)), Job(1, ("a=2",)), Job(2, ("a=3",))], {"a": "1,2,3"})
    with pytest.raises(SweepMismatch, match=r"its job #2 ran 'no such job', this command's is 'a=3'"):
        longer.continue_from(Sweep.read(tmp_path))
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "result.json").write_text(json.dumps({"status": "ok", "job": 0, "sweep_id": first.sweep_id}))
    (tmp_path / "1" / "checkpoint").mkdir(parents=True)
    (tmp_path / "1" / "checkpoint" / "state.json").write_text(json.dumps({"run_id": "r", "epoch": 1, "iteration": 3, "finished": False}))
    assert again.decide(None) == {0: "reuse", 1: "resume"}
    assert again.decide(set()) == {0: "run", 1: "resume"}  # tracked: a finished job also needs its FINISHED child
