"""What one shared tracking server takes, measured against a real PostgreSQL and real servers.

The script starts, on 127.0.0.1 only, a PostgreSQL cluster with its default durability (fsync
on) and two ``mlflow server``s (one worker each, artifacts served): one whose store is that
PostgreSQL, one whose store is a sqlite file. It reuses tests/postgres.py, the test fixtures'
own helpers. Then, all in one run, side by side:

1. **Ingestion.** 1, 2 and 4 concurrent job processes each send ``--metrics`` metrics to the
   server the way a run's buffer does (``log_batch``, 1000 metrics per call, 49 keys per step
   like the worked example). Metrics per second = all metrics / (last job's end - first job's
   start), per server.
2. **One job's demand at default logging**: the worked example (2000 iterations, 49 metrics per
   iteration) trained with ``logger=none``; metrics it would log per second = metrics written by
   a tracked run / untracked training time. Concurrent jobs one server sustains = its 4-job
   ingestion rate / that demand (``logger.every_n_iterations=N`` divides the demand by N).
3. **Direct PostgreSQL store** (``postgresql+psycopg://`` as the job's tracking URI): the default
   writer (SQL inserts into MLflow's tables) vs ``mlflow.log_metrics`` once per iteration,
   until every metric is in the store. Target >= 10x.
4. **Through the PostgreSQL-backed server**: the default path (buffered ``log_batch`` over
   HTTP) vs ``mlflow.log_metrics`` once per iteration over HTTP. Target >= 5x.

Repetitions are interleaved and the best is kept. A script, not a test: wall-clock numbers never
decide a test.

    python benchmarks/bench_cluster.py [--repeat N] [--metrics N] [--naive-iterations N]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

KEYS = 49  # the worked example's metrics per iteration


def ingest_job(uri: str, experiment: str, n_metrics: int) -> None:
    """One job process: ``n_metrics`` metrics in log_batch calls of 1000; prints its timing as JSON."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    experiment_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run_id = client.create_run(experiment_id).info.run_id
    ts = int(time.time() * 1000)
    metrics = [Metric(f"m{i % KEYS}", float(i), ts, i // KEYS) for i in range(n_metrics)]
    start = time.time()
    for first in range(0, n_metrics, 1000):
        client.log_batch(run_id, metrics=metrics[first : first + 1000], synchronous=True)
    end = time.time()
    client.set_terminated(run_id)
    print(json.dumps({"start": start, "end": end, "n": n_metrics}))


def ingestion(url: str, jobs: int, n_metrics: int, tag: str) -> float:
    """Metrics per second the server at ``url`` took from ``jobs`` concurrent job processes."""
    from backproplab.tracking.store import connect

    experiment = f"ingest {tag} {jobs}"
    connect(url, experiment)  # created once, not by racing jobs
    procs = [
        subprocess.Popen([sys.executable, __file__, "--ingest-job", url, experiment, str(n_metrics)], stdout=subprocess.PIPE, text=True)
        for _ in range(jobs)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"an ingest job failed with exit {proc.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    return sum(r["n"] for r in results) / span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--metrics", type=int, default=49_000, help="metrics each ingest job sends")
    parser.add_argument("--naive-iterations", type=int, default=300, help="iterations timed for per-iteration log_metrics")
    parser.add_argument("--ingest-job", nargs=3, metavar=("URI", "EXPERIMENT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if args.ingest_job:
        uri, experiment, n = args.ingest_job
        ingest_job(uri, experiment, int(n))
        return
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    import mlflow
    import numpy as np

    from bench_tracking import time_naive, time_none, time_tracked, worked_example
    from postgres import MlflowServer, Postgres

    print(f"python {platform.python_version()}, numpy {np.__version__}, mlflow {mlflow.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    home = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp, Postgres(durable=True) as pg:
        os.chdir(tmp)
        version = subprocess.run([str(pg.bin / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()
        print(f"{version} (fsync on), mlflow server with 1 worker each, all on 127.0.0.1")
        direct = pg.create_database("direct")
        servers = {
            "PostgreSQL": MlflowServer(pg.create_database("server"), Path(tmp) / "pg-server"),
            "sqlite": MlflowServer(f"sqlite:///{tmp}/server.db", Path(tmp) / "sqlite-server"),
        }
        try:
            for server in servers.values():
                server.start()
            rates: dict[tuple[str, int], list[float]] = {}
            for _ in range(args.repeat):
                for name, server in servers.items():
                    for jobs in (1, 2, 4):
                        rates.setdefault((name, jobs), []).append(ingestion(server.url, jobs, args.metrics, name))
            print(f"\n== ingestion: metrics per second one server stores ({args.metrics} metrics per job, log_batch of 1000)")
            for name in servers:
                row = "  ".join(f"{jobs} job{'s' if jobs > 1 else ' '} {max(rates[(name, jobs)]):8.0f}/s" for jobs in (1, 2, 4))
                print(f"  {name:<11} {row}")

            from backproplab.tracking.store import connect

            connect(direct, "warm-up")
            pg_url = servers["PostgreSQL"].url
            none, sql, http = [], [], []
            for r in range(args.repeat):
                none.append(time_none(worked_example))
                sql.append(time_tracked(worked_example, direct, "direct sql", background=False))
                http.append(time_tracked(worked_example, pg_url, "via server", background=False))
            naive_direct = time_naive(worked_example, direct, "direct naive", args.naive_iterations)
            naive_http = time_naive(worked_example, pg_url, "server naive", args.naive_iterations)
            iterations = 2000
            n_metrics = min(sql)[2]
            demand = n_metrics / min(none)
            print(f"\n== one job at default logging: the worked example, {iterations} iterations, {n_metrics} metrics")
            print(f"  training, logger=none          {min(none) * 1e3:9.1f} ms  -> {demand:,.0f} metrics/s to log at full speed")
            for name in servers:
                best = max(rates[(name, 4)])
                # every_n_iterations=N divides a job's metrics by N; k jobs fit when k * demand / N <= best.
                needed = "; ".join(f"{k} job{'s' if k > 1 else ''}: every_n_iterations >= {math.ceil(k * demand / best)}" for k in (1, 4, 16, 64))
                print(f"  {name} server takes {best / demand:.3f} such jobs at every_n_iterations=1 ({needed})")
            print("\n== direct PostgreSQL store (postgresql+psycopg://)")
            print(f"  default writer (sql)           {min(sql)[0] * 1e3:9.1f} ms  (until every metric is stored)")
            print(f"  log_metrics per iteration      {naive_direct * iterations * 1e3:9.1f} ms  ({naive_direct * 1e3:.2f} ms per iteration, timed over {args.naive_iterations})")
            print(f"  speed-up                       {naive_direct * iterations / min(sql)[0]:9.1f} x   (target >= 10)")
            print("\n== through the PostgreSQL-backed server (http://)")
            print(f"  default path (log_batch)       {min(http)[0] * 1e3:9.1f} ms  (until every metric is stored)")
            print(f"  log_metrics per iteration      {naive_http * iterations * 1e3:9.1f} ms  ({naive_http * 1e3:.2f} ms per iteration, timed over {args.naive_iterations})")
            print(f"  speed-up                       {naive_http * iterations / min(http)[0]:9.1f} x   (target >= 5)")
        finally:
            for server in servers.values():
                server.stop()
            os.chdir(home)


if __name__ == "__main__":
    main()
