"""Multiruns through the real command: jobs in their own directories, no state shared between
jobs of one process, the joblib launcher agreeing with the basic one, failed jobs not stopping
the sweep."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env

# hydra_compat: repeated on Hydra 1.4 by .ci/run.
pytestmark = [pytest.mark.slow, pytest.mark.hydra_compat]

# Stateful on purpose: legacy_randn (the default initializer) keeps a seeded stream in its
# instance, momentum keeps a velocity per parameter, shuffling draws from the trainer's rng.
# If any of that leaked from one job into the next, the later jobs would differ from solo runs.
BASE = [
    "data=moons", "data.n_samples=40", "data.batch_size=8", "data.val_fraction=0.25",
    "optimizer.momentum=0.9", "model.activation=tanh", "trainer.epochs=4", "logger=none",
]
LRS = ["0.1", "0.5"]
HIDDEN = ["[3]", "[4,4]"]


def job_results(root: Path) -> dict[tuple[str, ...], dict]:
    """Result records keyed by the job's swept overrides."""
    out = {}
    for path in root.glob("**/result.json"):
        record = json.loads(path.read_text())
        swept = tuple(sorted(o for o in record["overrides"] if o.split("=")[0] in ("optimizer.lr", "model.hidden")))
        out[swept] = record
    return out


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("basic")
    proc = subprocess.run(
        [sys.executable, "-m", "backproplab", "-m", *BASE, f"optimizer.lr={','.join(LRS)}",
         f"model.hidden={','.join(HIDDEN)}", "hydra.sweep.dir=sweep"],
        cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    return proc, cwd


def test_four_jobs_each_in_its_own_directory(basic_sweep):
    proc, cwd = basic_sweep
    assert proc.returncode == 0, proc.stderr
    dirs = sorted(p.parent for p in (cwd / "sweep").glob("*/result.json"))
    assert [d.name for d in dirs] == ["0", "1", "2", "3"]
    assert all((d / ".hydra" / "overrides.yaml").is_file() for d in dirs)
    results = job_results(cwd / "sweep")
    assert len(results) == 4 and all(r["status"] == "ok" for r in results.values())
    # 30 training examples in batches of 8: 4 iterations per epoch.
    assert all(r["iterations"] == 16 for r in results.values())
    assert len({r["final_loss"] for r in results.values()}) == 4
    assert proc.stdout.count("] final loss ") == 4  # one per job, each prefixed with its overrides


@pytest.mark.parametrize("lr, hidden", [("0.1", "[3]"), ("0.5", "[4,4]")])
def test_each_job_equals_the_same_run_alone(basic_sweep, cli, tmp_path, lr, hidden):
    _, cwd = basic_sweep
    job = job_results(cwd / "sweep")[tuple(sorted([f"optimizer.lr={lr}", f"model.hidden={hidden}"]))]
    solo = cli(*BASE, f"optimizer.lr={lr}", f"model.hidden={hidden}", "hydra.run.dir=solo")
    assert solo.returncode == 0, solo.stderr
    (alone,) = job_results(tmp_path / "solo").values()
    assert alone["losses"] == job["losses"]  # exact: same floats, not approximately
    assert alone["epochs"] == job["epochs"]


@pytest.mark.lowest_deps
def test_joblib_launcher_gives_identical_jobs(basic_sweep, cli, tmp_path):
    _, cwd = basic_sweep
    proc = cli(
        "-m", *BASE, f"optimizer.lr={','.join(LRS)}", "model.hidden=[3]",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweep.dir=sweep",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout
    parallel = job_results(tmp_path / "sweep")
    basic = job_results(cwd / "sweep")
    assert len(parallel) == 2
    for key, record in parallel.items():
        assert record["losses"] == basic[key]["losses"]


def test_a_failed_job_does_not_stop_the_sweep(cli, tmp_path):
    proc = cli(
        "-m", "data=xor", "model.activation=identity", "model.output_activation=identity", "loss=mse",
        "trainer.epochs=100", "optimizer.lr=10,0.1", "logger=none", "hydra.sweep.dir=sweep",
    )
    assert proc.returncode == 1
    failed = [line for line in proc.stderr.splitlines() if "job failed" in line]
    assert len(failed) == 1 and "optimizer.lr=10" in failed[0] and "non-finite loss" in failed[0]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 of 2 jobs of the multirun failed; the first, #0 (optimizer.lr=10): non-finite loss")
    assert "sweep: 1 of 2 jobs finished, 1 failed" in proc.stdout
    assert "best: job #1 (optimizer.lr=0.1)" in proc.stdout
    records = job_results(tmp_path / "sweep")
    by_lr = {next(o for o in r["overrides"] if o.startswith("optimizer.lr")): r for r in map(
        lambda p: json.loads(p.read_text()), (tmp_path / "sweep").glob("*/result.json"))}
    assert by_lr["optimizer.lr=10"]["status"] == "failed"
    assert by_lr["optimizer.lr=0.1"]["status"] == "ok" and by_lr["optimizer.lr=0.1"]["iterations"] == 100
    assert len(records) == 2


def test_the_issues_eighteen_job_sweep(cli, tmp_path):
    proc = cli(
        "-m", "optimizer.lr=0.05,0.5,1.0", "data.batch_size=1,20,100", "model.hidden=[4],[8,8]",
        "logger=none", "hydra.sweep.dir=sweep",
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/result.json")]
    assert len(records) == 18 and all(r["status"] == "ok" and r["iterations"] == 7 for r in records)
    # The worked example has one example: batch sizes 20 and 100 are clamped to it, with a warning.
    assert proc.stderr.count("warning: batch_size") == 12
    by_config = {}
    for r in records:
        key = tuple(sorted(o for o in r["overrides"] if not o.startswith("data.batch_size")))
        by_config.setdefault(key, set()).add(tuple(r["losses"]))
    assert len(by_config) == 6 and all(len(v) == 1 for v in by_config.values())


def test_jobs_are_expanded_and_numbered_as_hydra_launches_them(basic_sweep):
    """The up-front check sees exactly the jobs Hydra then ran: same overrides, same numbers."""
    import yaml

    from backproplab.hydra_app.preflight import sweep_jobs

    _, cwd = basic_sweep
    args = ["-m", *BASE, f"optimizer.lr={','.join(LRS)}", f"model.hidden={','.join(HIDDEN)}", "hydra.sweep.dir=sweep"]
    jobs = sweep_jobs(args)
    assert [job.num for job in jobs] == [0, 1, 2, 3]
    for job in jobs:
        ran = yaml.safe_load((cwd / "sweep" / str(job.num) / ".hydra" / "overrides.yaml").read_text())
        assert list(job.overrides) == ran


def test_which_command_lines_are_multiruns():
    from backproplab.hydra_app.preflight import check_multirun, sweep_jobs

    assert sweep_jobs(["optimizer.lr=0.1"]) is None  # a single run
    assert sweep_jobs(["--cfg", "job", "-m", "optimizer.lr=0.1,0.2"]) is None  # prints, runs nothing
    # hydra.mode=MULTIRUN set by an experiment, values from its hydra.sweeper.params
    jobs = sweep_jobs(["experiment=lr_sweep"])
    assert [j.overrides for j in jobs] == [(f"optimizer.lr={v}", "experiment=lr_sweep") for v in ("0.01", "0.1", "0.5", "1.0")]
    assert check_multirun(["-m", "optimizer.lr=0.05,0.5,1.0", "data.batch_size=1,20,100", "model.hidden=[4],[8,8]"]) == 18
    assert check_multirun(["-m", "optimizer.lr=range(1,4)", "trainer.epochs=1"]) == 3


def test_the_check_composes_each_job_like_the_launcher(tmp_path):
    """Interpolations into the Hydra config resolve as they do in the job itself."""
    from backproplab.hydra_app.preflight import check_multirun

    data = tmp_path / "d.csv"
    data.write_text("x,y\n0,0\n1,1\n")
    assert check_multirun(["-m", "data=csv", f"data.path={data}", "data.seed=${hydra:job.num}", "trainer.epochs=1,2"]) == 2


def test_the_check_loads_each_distinct_data_set_once(monkeypatch):
    """Jobs that differ in anything but the data's arrays (a learning rate, the batch size or the
    order) share one load; a different noise is another data set."""
    from backproplab.hydra_app.preflight import check_multirun
    from backproplab.run import job

    loads, load = [], job.load_dataset
    monkeypatch.setattr(job, "load_dataset", lambda cfg, registry=None: loads.append(dict(cfg)["noise"]) or load(cfg, registry))
    jobs = ["-m", "data=moons", "optimizer.lr=0.1,0.5", "data.batch_size=8,16", "data.shuffle=true,false", "data.noise=0.1,0.2"]
    assert check_multirun(jobs) == 16
    assert sorted(loads) == [0.1, 0.2]


def test_joblib_workers_print_warnings_as_the_basic_launcher_does(cli):
    """A worker process never runs the CLI's main(): the job itself installs the one-line format."""
    proc = cli(
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "data.batch_size=1,2", "logger=none",
        "hydra.sweep.dir=sweep",
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: batch_size 2 exceeds the 1 training examples; using 1" in proc.stderr.splitlines()
    assert "UserWarning" not in proc.stderr and "app.py" not in proc.stderr


# -- the end of a sweep says where the answer is --------------------------------------
def test_the_last_lines_name_the_best_job_and_the_summary(basic_sweep):
    proc, cwd = basic_sweep
    records = {}
    for path in (cwd / "sweep").glob("*/result.json"):
        record = json.loads(path.read_text())
        records[record["job"]] = record  # each result.json carries its hydra.job.num
    assert sorted(records) == [0, 1, 2, 3] and all(int(p.parent.name) == records_num for p, records_num in (
        (p, json.loads(p.read_text())["job"]) for p in (cwd / "sweep").glob("*/result.json")))
    # The sweep has a validation split, so "best" is the lowest final validation loss, the rule
    # the MLflow parent's best child follows.
    best = min(records, key=lambda n: (records[n]["final_val_loss"], n))
    lr, hidden = [o for o in records[best]["overrides"] if o.split("=")[0] in ("optimizer.lr", "model.hidden")]
    last = proc.stdout.strip().splitlines()[-9:-2]
    assert last[0] == "sweep: 4 of 4 jobs finished"
    assert last[1] == "ranking by final validation loss:"
    assert last[2].split() == ["#", "job", "optimizer.lr", "model.hidden", "validation", "loss", "validation", "accuracy", "epochs"]
    ranked = sorted(records, key=lambda n: (records[n]["final_val_loss"], n))
    for line, num in zip(last[3:7], ranked):  # untracked: jobs by number, the rule's value, the epochs run
        cells = line.split()
        assert cells[1] == f"#{num}" and cells[4] == f"{records[num]['final_val_loss']:.6f}" and cells[-1] == "4"
    tail = proc.stdout.strip().splitlines()[-2:]
    assert tail[0] == (
        f"best: job #{best} ({lr} {hidden}), final validation loss {records[best]['final_val_loss']:.6f} "
        "(lowest final validation loss of the finished jobs, trainer.objective=auto)"
    )
    assert tail[1].startswith("results: sweep/sweep_summary.csv ")
    with open(cwd / "sweep" / "sweep_summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["job"]) for r in rows] == [0, 1, 2, 3]
    assert [float(r["final_loss"]) for r in rows] == [records[n]["final_loss"] for n in range(4)]
    assert [r["epochs"] for r in rows] == ["4"] * 4
    assert {int(r["job"]): int(r["rank"]) for r in rows} == {n: i + 1 for i, n in enumerate(ranked)}


# -- values under a swept group are set per job --------------------------------------
def test_a_key_of_every_swept_optimizer_but_not_of_the_default(cli, tmp_path):
    import yaml

    proc = cli("-m", "optimizer=adam,adamw", "optimizer.beta1=0.95", "trainer.epochs=2", "logger=none", "hydra.sweep.dir=sweep")
    assert proc.returncode == 0, proc.stderr
    for num, name in enumerate(["adam", "adamw"]):
        job = tmp_path / "sweep" / str(num) / ".hydra"
        # The job's overrides are those Hydra would give it; its config has the value.
        assert yaml.safe_load((job / "overrides.yaml").read_text()) == [f"optimizer={name}", "optimizer.beta1=0.95", "trainer.epochs=2", "logger=none"]
        assert yaml.safe_load((job / "config.yaml").read_text())["optimizer"]["beta1"] == 0.95
    # Not a parameter of the sweep: it does not vary.
    best = next(line for line in proc.stdout.splitlines() if line.startswith("best: job #"))
    assert "beta1" not in best.split(", final")[0]


def test_an_experiments_sweep_is_numbered_as_hydra_numbers_it(cli, tmp_path):
    """hydra.sweeper.params first, then the command line, a later value of a key in the earlier
    one's place: the up-front expansion equals what Hydra ran under each hydra.job.num."""
    import yaml

    from backproplab.hydra_app.preflight import sweep_jobs

    args = ["experiment=lr_sweep", "data.batch_size=16,160", "optimizer.lr=0.5,1.0", "trainer.epochs=1",
            "data.n_samples=40", "logger=none", "hydra.sweep.dir=sweep"]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    jobs = sweep_jobs(args)
    assert len(jobs) == 4 and jobs[1].overrides[:2] == ("optimizer.lr=0.5", "experiment=lr_sweep")
    for job in jobs:
        ran = yaml.safe_load((tmp_path / "sweep" / str(job.num) / ".hydra" / "overrides.yaml").read_text())
        assert list(job.overrides) == ran
        assert json.loads((tmp_path / "sweep" / str(job.num) / "result.json").read_text())["job"] == job.num


def test_the_flag_parser_copy_has_hydras_own_flags():
    """Hydra has no public API for its command-line parser: the copy must accept the flags the
    installed Hydra's own parser accepts, with the same choices."""
    from hydra._internal.utils import get_args_parser  # the private original, compared only here

    from backproplab.hydra_app.preflight import flag_parser

    def flags(parser):
        return {tuple(sorted(a.option_strings)): tuple(a.choices or ()) for a in parser._actions if a.option_strings}

    assert flags(flag_parser()) == flags(get_args_parser())


def test_the_basic_sweepers_own_expansion_numbers_the_jobs():
    """``expand`` is Hydra's BasicSweeper.split_arguments, found through Hydra's plugin registry."""
    from backproplab.hydra_app.preflight import basic_sweeper, sweep_jobs

    assert basic_sweeper().__name__ == "BasicSweeper"
    jobs = sweep_jobs(["-m", "optimizer.lr=0.1,0.5", "trainer.epochs=1,2", "optimizer.lr=0.3,0.4"])
    assert [j.overrides for j in jobs] == [
        ("optimizer.lr=0.3", "trainer.epochs=1"), ("optimizer.lr=0.3", "trainer.epochs=2"),
        ("optimizer.lr=0.4", "trainer.epochs=1"), ("optimizer.lr=0.4", "trainer.epochs=2"),
    ]
