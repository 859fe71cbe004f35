"""What tracking costs a whole command, from the shell, and how fast a store grows.

Three measurements, each of the real ``backproplab`` command in a subprocess, in temporary
directories holding a sqlite store created beforehand (a user's store usually exists already):

1. a basic-launcher sweep of the worked example over 16 learning rates
   (``backproplab -m optimizer.lr=0.1,...,1.6``), tracked vs ``logger=none``: tracking seconds per
   job = (tracked - none) / 16, against the 0.15 s target. This includes the one-off costs of a
   tracked command (importing mlflow, opening the store, the sweep's parent run and summary),
   spread over the 16 jobs;
2. one tracked worked example (``backproplab``) vs ``logger=none``, against the 2.5 s target;
3. store growth: bytes of ``mlflow.db`` per stored metric point, for the worked example's
   element-wise metrics and for a wider network with norms only (like the digits runs), so the
   growth of a long run can be predicted and bounded (``logger.max_points_per_metric``);
4. the import floor of a tracked command: mlflow, its sqlite store, matplotlib;
5. in one process, after warm-up: a tracked run vs an untracked one, its two plots alone and
   the MLflow metadata calls alone (the part of a sweep job's cost that is not imports).

The cases of 1 and 2 are interleaved, repeat after repeat, in a rotating order, so that a busy
neighbour on a shared machine slows every case alike; best and median are printed. A script,
not a test: wall-clock numbers never decide a test.

    python benchmarks/bench_sweep.py [--repeat N] [--jobs N] [--no-growth] [--baseline EXE]

``--baseline EXE`` also times the tracked cases with another install's ``backproplab`` (e.g. a
venv holding the commit before a change), interleaved with this one's.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP_TARGET_S = 0.15
SINGLE_TARGET_S = 2.5


def backproplab_command() -> list[str]:
    exe = shutil.which("backproplab", path=str(Path(sys.executable).parent)) or shutil.which("backproplab")
    return [exe] if exe else [sys.executable, "-m", "backproplab"]


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    # The store must be the temporary directory's ./mlflow.db, whatever the caller's shell says.
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "HYDRA_FULL_ERROR"):
        env.pop(key, None)
    return env


def run(args: list[str], cwd: Path, command: list[str] | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run((command or backproplab_command()) + args, cwd=cwd, env=clean_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"backproplab {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {version('numpy')}, "
        f"mlflow {version('mlflow')}, matplotlib {version('matplotlib')}"
    )


def stats(values: list[float]) -> tuple[float, float]:
    return min(values), statistics.median(values)


def bench_commands(repeat: int, jobs: int, root: Path, baseline: list[str] | None = None) -> None:
    lrs = ",".join(f"{0.1 * (i + 1):.1f}" for i in range(jobs))
    cases = {
        "sweep tracked": ["-m", f"optimizer.lr={lrs}"],
        "sweep none": ["-m", f"optimizer.lr={lrs}", "logger=none"],
        "single tracked": [],
        "single none": ["logger=none"],
    }
    commands = {name: backproplab_command() for name in cases}
    if baseline:
        # The same tracked commands from another install (e.g. the commit before a change),
        # interleaved with this one's, so that before/after share the machine's load.
        for name in ("sweep tracked", "single tracked"):
            cases[f"{name} (baseline)"] = cases[name]
            commands[f"{name} (baseline)"] = baseline
    dirs = {}
    for name in cases:
        dirs[name] = root / name.replace(" ", "_").replace("(", "").replace(")", "")
        dirs[name].mkdir()
        # Creates the store (MLflow's migrations take seconds once) and warms the file cache.
        run([] if "tracked" in name else ["logger=none"], dirs[name], commands[name])
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(repeat):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(run(cases[name], dirs[name], commands[name]))
        print(f"  repeat {r + 1}/{repeat}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in names), flush=True)

    st, sn = times["sweep tracked"], times["sweep none"]
    per_job = [(t - n) / jobs for t, n in zip(st, sn)]  # paired: the same repeat's neighbours
    print(f"\n1. sweep of {jobs} worked-example jobs (basic launcher, optimizer.lr={lrs})")
    print(f"   tracked:     best {min(st):.2f} s, median {statistics.median(st):.2f} s")
    print(f"   logger=none: best {min(sn):.2f} s, median {statistics.median(sn):.2f} s")
    best_diff = (min(st) - min(sn)) / jobs
    med = statistics.median(per_job)
    print(
        f"   tracking per job: {best_diff:.3f} s (best vs best), {med:.3f} s (median of paired repeats); "
        f"target <= {SWEEP_TARGET_S} s: {best_diff / SWEEP_TARGET_S:.2f}x / {med / SWEEP_TARGET_S:.2f}x of the target"
    )
    one, onen = times["single tracked"], times["single none"]
    # What a tracked command pays once (mlflow import, store, run bookkeeping) vs per sweep job.
    fixed = statistics.median([t - n for t, n in zip(one, onen)])
    marginal = statistics.median([(t - n - fixed) / jobs for t, n in zip(st, sn)])
    print(f"   of which per job beyond a single run's one-off cost ({fixed:.2f} s): about {marginal:.3f} s")
    print("\n2. one tracked worked example from the shell (store already exists)")
    print(f"   tracked:     best {min(one):.2f} s, median {statistics.median(one):.2f} s (target <= {SINGLE_TARGET_S} s)")
    print(f"   logger=none: best {min(onen):.2f} s, median {statistics.median(onen):.2f} s")
    print(f"   tracking adds {min(one) - min(onen):.2f} s (best vs best), {fixed:.2f} s (median of paired repeats)")
    if baseline:
        bt, bo = times["sweep tracked (baseline)"], times["single tracked (baseline)"]
        print(f"\n   baseline ({' '.join(baseline)}), same repeats:")
        print(
            f"   sweep tracked best {min(bt):.2f} s, median {statistics.median(bt):.2f} s: tracking per job "
            f"{(min(bt) - min(sn)) / jobs:.3f} s best, {statistics.median([(t - n) / jobs for t, n in zip(bt, sn)]):.3f} s median"
        )
        print(
            f"   single tracked best {min(bo):.2f} s, median {statistics.median(bo):.2f} s: tracking adds "
            f"{min(bo) - min(onen):.2f} s best, {statistics.median([t - n for t, n in zip(bo, onen)]):.2f} s median"
        )


def count_points(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from metrics").fetchone()[0]


def bench_growth(root: Path) -> None:
    print("\n3. store growth: bytes of mlflow.db per stored metric point (sqlite, default writer)")
    cases = {
        # 50 metrics per iteration: batch/loss, epoch, 6 norms, 21 grad/* and 21 param/* elements.
        "worked example, 2000 iterations": ["trainer.epochs=2000"],
        # > 64 parameters: norms only (loss, grad_norm/W*, b*, weight_norm/W*), like digits.
        "seed example [3, 32, 32, 1], 2000 iterations": ["trainer.epochs=2000", "model.hidden=[32,32]"],
    }
    for name, args in cases.items():
        where = root / f"growth_{len(list(root.glob('growth_*')))}"
        where.mkdir()
        run(["logger=none"], where)
        run(["trainer.epochs=1"], where)  # creates the store and one small run
        db = where / "mlflow.db"
        size0, points0 = db.stat().st_size, count_points(db)
        run(args, where)
        size1, points1 = db.stat().st_size, count_points(db)
        points = points1 - points0
        per_point = (size1 - size0) / points
        print(
            f"   {name}: {points:,} points ({points / 2000:g} per iteration) grew the store by "
            f"{(size1 - size0) / 1e6:.1f} MB = {per_point:.0f} bytes per point"
        )


def python_seconds(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=clean_env())
    return time.perf_counter() - started


def bench_floor(repeat: int) -> None:
    """What a tracked command must import before it can record anything: MLflow's package (which
    itself imports pandas, fastapi and the genai modules), its SQLAlchemy store (SQLAlchemy's ORM,
    alembic) and matplotlib's Agg canvas. None of it is backproplab's to shorten."""
    # Cumulative, in the order a tracked command pays them: each line adds one import to the last.
    steps = [
        ("backproplab's app (what logger=none imports)", "import backproplab.hydra_app"),
        ("+ import mlflow", "import mlflow"),
        ("+ mlflow's sqlite store (SQLAlchemy ORM, alembic)", "import mlflow.store.tracking.sqlalchemy_store"),
        ("+ matplotlib Figure and Agg canvas", "import matplotlib.figure, matplotlib.backends.backend_agg"),
    ]
    cases = {"python -c pass": "pass"}
    code = ""
    for name, statement in steps:
        code += statement + "\n"
        cases[name] = code
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, code in cases.items():
            times[name].append(python_seconds(code))
    print("\n4. import floor of a tracked command (fresh interpreters, cumulative; best and median of the step)")
    previous = "python -c pass"
    for name in list(cases)[1:]:
        best = min(times[name]) - min(times[previous])
        median = statistics.median([a - b for a, b in zip(times[name], times[previous])])
        print(f"   {name:<52} +{best:.2f} s best, +{median:.2f} s median")
        previous = name
    total = statistics.median([a - b for a, b in zip(times[previous], times["python -c pass"])])
    app = statistics.median([a - b for a, b in zip(times[steps[0][0]], times["python -c pass"])])
    print(f"   imports a tracked command needs beyond logger=none's: {total - app:.2f} s (median)")


def bench_in_process(runs: int, root: Path) -> None:
    """One process, store already open, imports done: what a tracked worked-example run costs,
    and how much of it the two plots and the MLflow metadata calls are."""
    import numpy as np

    import backproplab as bp
    from backproplab.run.context import RunContext
    from backproplab.tracking import track_run
    from backproplab.tracking.records.artifacts import plot_grad_norms, plot_loss
    from backproplab.tracking.records.metric_names import MetricLayout
    from mlflow import MlflowClient
    from mlflow.entities import Param

    uri = f"sqlite:///{root / 'inproc.db'}"
    logger = {"name": "mlflow", "tracking_uri": uri, "experiment_name": "bench"}

    def tracked(track: bool) -> float:
        net = bp.build_network([3, 4, 1], "sigmoid", initializer={"name": "legacy_randn", "seed": 3, "scale": 0.1})
        context = RunContext(config={"optimizer": {"lr": 0.5}}, network=net, components=[], iterations_per_epoch=1, epochs=7)
        started = time.perf_counter()
        with track_run(context, logger if track else {"name": "none"}) as tracker:
            bp.build_trainer(net, "bce", {"name": "sgd", "lr": 0.5}, batch_size=1, epochs=7, callbacks=[tracker]).fit(
                [[7.0, 8.0, 10.0]], [1.0]
            )
        return time.perf_counter() - started

    params = bp.build_network([3, 4, 1], "sigmoid").params
    layout = MetricLayout.for_params(params, 64)
    steps, values = np.arange(7), np.linspace(1.0, 0.1, 7)[:, None] * np.ones((7, layout.n_summary))

    def plots() -> float:
        started = time.perf_counter()
        plot_loss(root / "loss.png", steps, values[:, 0], [])
        plot_grad_norms(root / "grad_norms.png", steps, values, layout)
        return time.perf_counter() - started

    client = MlflowClient(uri)

    def metadata() -> float:
        # The calls every tracked run makes besides metrics and artifacts.
        started = time.perf_counter()
        experiment = client.get_experiment_by_name("bench")
        run = client.create_run(experiment.experiment_id, tags={"a": "b"})
        client.log_batch(run.info.run_id, params=[Param(f"p{i}", "1") for i in range(30)], synchronous=True)
        client.set_terminated(run.info.run_id, "FINISHED")
        return time.perf_counter() - started

    tracked(True), plots(), metadata()  # imports, store creation
    times: dict[str, list[float]] = {"tracked run": [], "logger=none run": [], "two plots": [], "metadata calls": []}
    for _ in range(runs):
        times["tracked run"].append(tracked(True))
        times["logger=none run"].append(tracked(False))
        times["two plots"].append(plots())
        times["metadata calls"].append(metadata())
    print(f"\n5. in one process, after warm-up ({runs} interleaved repeats): where a tracked job's time goes")
    for name, vals in times.items():
        print(f"   {name:<18} best {min(vals) * 1000:6.0f} ms, median {statistics.median(vals) * 1000:6.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--no-growth", action="store_true", help="skip the store-growth measurement")
    parser.add_argument("--baseline", metavar="EXE", help="another backproplab executable to time the tracked cases of, interleaved")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"command: {' '.join(backproplab_command())}")
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        root = Path(tmp)
        bench_commands(args.repeat, args.jobs, root, [args.baseline] if args.baseline else None)
        if not args.no_growth:
            bench_growth(root)
        bench_floor(args.repeat)
        bench_in_process(max(5, args.repeat * 2), root)


if __name__ == "__main__":
    main()
