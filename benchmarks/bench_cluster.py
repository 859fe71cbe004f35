"""What one shared tracking server takes, measured against a real PostgreSQL and real servers.

The script starts, on 127.0.0.1 only, a PostgreSQL cluster with its default durability (fsync
on) and two ``mlflow server``s (``--workers``, default 1; artifacts served): one whose store is
that PostgreSQL, one whose store is a sqlite file. It reuses tests/servers.py, the test
fixtures' own helpers. Then, all in one run, side by side:

1. **Ingestion.** 1, 2 and 4 (``--ingest-jobs``) concurrent job processes each send
   ``--metrics`` metrics to the server the way a run's uploads do (``log_batch`` of 1000
   metrics, ``upload.ParallelUploads`` with each ``--in-flight`` count; 1 is the path before
   concurrent uploads), 49 keys per step like the worked example. Metrics per second = all
   metrics / (last job's end - first job's start), per server.
2. **One job's demand at default logging**: the worked example (2000 iterations, 49 metrics per
   iteration) trained with ``logger=none``; metrics it would log per second = metrics written by
   a tracked run / untracked training time. Concurrent jobs one server sustains = its ingestion
   rate from the most jobs / that demand (``logger.every_n_iterations=N`` divides the demand by N).
3. **Direct PostgreSQL store** (``postgresql+psycopg://`` as the job's tracking URI): the default
   writer (SQL inserts into MLflow's tables) vs ``mlflow.log_metrics`` once per iteration,
   until every metric is in the store. Target >= 10x.
4. **Through each server**: the tracked worked example (buffered ``log_batch`` over HTTP, each
   ``--in-flight`` count, each request: the compact REST body a run sends by default, and
   ``MlflowClient.log_batch``, the path before it) vs ``mlflow.log_metrics`` once per iteration over HTTP, the baseline
   timed right before the tracked runs on the same store, through a server with
   ``--baseline-workers`` (default 1): uvicorn's ``--workers N>1`` loses TCP_NODELAY
   (Kludex/uvicorn#3149), which adds ~40 ms to every small request and would flatter the
   ratio. Target >= 5x.
5. **Through a server running backproplab's app** (``mlflow server --app-name backproplab``,
   same store, same ``--workers``): the same tracked run, one call per flush
   (``tracking.transport.server_app``), against the same baseline; and its ingestion from 1..4 jobs, each
   sending blocks of 10,000 metrics one call at a time.

Repetitions are interleaved and the best is kept. A script, not a test: wall-clock numbers never
decide a test. MLflow's GenAI job runner (~8 Huey processes beside each server) is switched off,
as in the tests: nothing here uses it and on 2 cores it only adds noise.

    python benchmarks/bench_cluster.py [--repeat N] [--metrics N] [--naive-iterations N]
        [--in-flight 1,4] [--ingest-jobs 1,2,4] [--workers N]
"""

from __future__ import annotations

import argparse
import contextlib
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


BLOCK_ROWS = 10_000 // KEYS  # a default flush: buffer.max_metrics=10000


def ingest_job(uri: str, experiment: str, n_metrics: int, in_flight: int) -> None:
    """One job process: ``n_metrics`` metrics in log_batch calls of 1000, ``in_flight`` at once as
    a run's uploads send them (``upload.ParallelUploads``), or (``in_flight`` 0) in blocks of a
    default flush to the server's app, one call at a time (``upload.BlockUploads``); prints its
    timing as JSON."""
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from backproplab.tracking.transport.buffer import Block
    from backproplab.tracking.transport.upload import BlockUploads, ParallelUploads

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    experiment_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run_id = client.create_run(experiment_id).info.run_id
    ts = int(time.time() * 1000)
    rows = n_metrics // KEYS
    if in_flight == 0:
        blocks = BlockUploads(client)
        if not blocks.usable():
            raise RuntimeError(f"{uri} does not run backproplab's app")
        keys = tuple(f"m{k}" for k in range(KEYS))
        values = np.arange(rows * KEYS, dtype=np.float64).reshape(rows, KEYS)
        start = time.time()
        for first in range(0, rows, BLOCK_ROWS):
            steps = np.arange(first, min(rows, first + BLOCK_ROWS), dtype=np.int64)
            blocks.send(run_id, Block(keys, steps, np.full(len(steps), ts, dtype=np.int64), values[first : first + BLOCK_ROWS]))
        end = time.time()
        client.set_terminated(run_id)
        print(json.dumps({"start": start, "end": end, "n": rows * KEYS}))
        return
    metrics = [Metric(f"m{i % KEYS}", float(i), ts, i // KEYS) for i in range(n_metrics)]
    uploads = ParallelUploads(client, run_id, in_flight)
    start = time.time()
    results = uploads.send([metrics[first : first + 1000] for first in range(0, n_metrics, 1000)])
    end = time.time()
    uploads.close()
    if any(r is not None for r in results):
        raise RuntimeError(f"an upload failed: {next(r for r in results if r is not None)!r}")
    client.set_terminated(run_id)
    print(json.dumps({"start": start, "end": end, "n": n_metrics}))


# How a run's uploads send a chunk: MLflow's REST runs/log-batch with a compact body (the
# default, upload.rest_log_batch), or MlflowClient.log_batch (the path before it).
REQUESTS = ("compact request", "MlflowClient.log_batch")


@contextlib.contextmanager
def request_path(upload, request: str):
    original = upload.rest_log_batch
    if request == REQUESTS[1]:
        upload.rest_log_batch = lambda client: None
    try:
        yield
    finally:
        upload.rest_log_batch = original


def ingestion(url: str, jobs: int, n_metrics: int, tag: str, in_flight: int) -> float:
    """Metrics per second the server at ``url`` took from ``jobs`` concurrent job processes."""
    from backproplab.tracking.transport.store import connect

    experiment = f"ingest {tag} {jobs} {in_flight}"
    connect(url, experiment)  # created once, not by racing jobs
    procs = [
        subprocess.Popen([sys.executable, __file__, "--ingest-job", url, experiment, str(n_metrics), str(in_flight)], stdout=subprocess.PIPE, text=True)
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
    parser.add_argument("--in-flight", default="1,4", help="log_batch calls in flight per job to compare (1: one after another, the path before)")
    parser.add_argument("--ingest-jobs", default="1,2,4", help="concurrent job processes to measure ingestion with")
    parser.add_argument("--workers", type=int, default=1, help="the servers' --workers")
    parser.add_argument(
        "--baseline-workers", type=int, default=1,
        help="--workers of the server (same store) the per-iteration baseline is timed on: uvicorn's --workers N>1 "
        "loses TCP_NODELAY (Kludex/uvicorn#3149), ~40 ms more per small request, which would flatter the ratio",
    )
    parser.add_argument("--ingest-job", nargs=4, metavar=("URI", "EXPERIMENT", "N", "IN_FLIGHT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if args.ingest_job:
        uri, experiment, n, in_flight = args.ingest_job
        ingest_job(uri, experiment, int(n), int(in_flight))
        return
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    import mlflow
    import numpy as np

    from bench_tracking import time_naive, time_none, time_tracked, worked_example
    from servers import MlflowServer, Postgres
    from backproplab.tracking.transport import upload

    upload_default = upload.IN_FLIGHT
    in_flights = [int(k) for k in args.in_flight.split(",")]
    job_counts = [int(j) for j in args.ingest_jobs.split(",")]
    # MLflow 3.17 starts a job runner and ~8 Huey workers beside each server for its GenAI jobs,
    # which nothing here submits; on 2 cores they would only add noise (the tests do the same).
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    print(f"python {platform.python_version()}, numpy {np.__version__}, mlflow {mlflow.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    home = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp, Postgres(durable=True) as pg:
        os.chdir(tmp)
        version = subprocess.run([str(pg.bin / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()
        print(f"{version} (fsync on), mlflow server with {args.workers} worker(s) each, all on 127.0.0.1")
        direct = pg.create_database("direct")
        servers = {
            "PostgreSQL": MlflowServer(pg.create_database("server"), Path(tmp) / "pg-server", workers=args.workers),
            "sqlite": MlflowServer(f"sqlite:///{tmp}/server.db", Path(tmp) / "sqlite-server", workers=args.workers),
        }
        # The same stores behind a server that runs backproplab's app.
        apps = {
            name: MlflowServer(server.backend_store_uri, Path(tmp) / f"{name}-app", workers=args.workers, options=["--app-name", "backproplab"])
            for name, server in servers.items()
        }
        baseline = servers
        if args.baseline_workers != args.workers:  # on the same stores
            baseline = {
                name: MlflowServer(server.backend_store_uri, Path(tmp) / f"{name}-baseline", workers=args.baseline_workers)
                for name, server in servers.items()
            }
        try:
            for server in {*servers.values(), *baseline.values(), *apps.values()}:
                server.start()
            rates: dict[tuple[str, int, int], list[float]] = {}
            for _ in range(args.repeat):
                for name, server in servers.items():
                    for jobs in job_counts:
                        for k in in_flights:
                            rates.setdefault((name, jobs, k), []).append(ingestion(server.url, jobs, args.metrics, name, k))
                        rates.setdefault((name, jobs, 0), []).append(ingestion(apps[name].url, jobs, args.metrics, f"{name} app", 0))
            print(f"\n== ingestion: metrics per second one server stores ({args.metrics} metrics per job, log_batch of 1000)")
            for name in servers:
                for k in in_flights:
                    row = "  ".join(f"{jobs} job{'s' if jobs > 1 else ' '} {max(rates[(name, jobs, k)]):8.0f}/s" for jobs in job_counts)
                    print(f"  {name:<11} {k} in flight per job: {row}")
                row = "  ".join(f"{jobs} job{'s' if jobs > 1 else ' '} {max(rates[(name, jobs, 0)]):8.0f}/s" for jobs in job_counts)
                print(f"  {name:<11} app, a block per call:  {row}")

            from backproplab.tracking.transport.store import connect

            connect(direct, "warm-up")
            none, sql = [], []
            via: dict[tuple[str, int], list] = {}
            naive_http: dict[str, list[float]] = {}
            for r in range(args.repeat):
                none.append(time_none(worked_example))
                sql.append(time_tracked(worked_example, direct, "direct sql", background=False))
                for name, server in servers.items():
                    # The baseline right beside the runs it is compared with: the load of a shared
                    # machine drifts over minutes.
                    naive_http.setdefault(name, []).append(time_naive(worked_example, baseline[name].url, f"server naive {r}", args.naive_iterations))
                    for k in in_flights:
                        upload.IN_FLIGHT = k
                        for request in REQUESTS:
                            with request_path(upload, request):
                                via.setdefault((name, k, request), []).append(
                                    time_tracked(worked_example, server.url, f"via server {k} {request}", background=False)
                                )
                    via.setdefault((name, 0, "app"), []).append(time_tracked(worked_example, apps[name].url, "via app", background=False))
            upload.IN_FLIGHT = upload_default
            naive_direct = time_naive(worked_example, direct, "direct naive", args.naive_iterations)
            iterations = 2000
            n_metrics = min(sql)[2]
            demand = n_metrics / min(none)
            best_k = max(in_flights)
            print(f"\n== one job at default logging: the worked example, {iterations} iterations, {n_metrics} metrics")
            print(f"  training, logger=none          {min(none) * 1e3:9.1f} ms  -> {demand:,.0f} metrics/s to log at full speed")
            for name in servers:
                for how, k in (("", best_k), (" with the app", 0)):
                    best = max(rates[(name, max(job_counts), k)])
                    # every_n_iterations=N divides a job's metrics by N; k jobs fit when k * demand / N <= best.
                    needed = "; ".join(f"{j} job{'s' if j > 1 else ''}: every_n_iterations >= {math.ceil(j * demand / best)}" for j in (1, 4, 16, 64))
                    print(f"  {name} server{how} takes {best / demand:.3f} such jobs at every_n_iterations=1 ({needed})")
            print("\n== direct PostgreSQL store (postgresql+psycopg://)")
            print(f"  default writer (sql)           {min(sql)[0] * 1e3:9.1f} ms  (until every metric is stored)")
            print(f"  log_metrics per iteration      {naive_direct * iterations * 1e3:9.1f} ms  ({naive_direct * 1e3:.2f} ms per iteration, timed over {args.naive_iterations})")
            print(f"  speed-up                       {naive_direct * iterations / min(sql)[0]:9.1f} x   (target >= 10)")
            for name in servers:
                naive = min(naive_http[name]) * iterations
                print(f"\n== through the {name}-backed server (http://)")
                print(f"  log_metrics per iteration      {naive * 1e3:9.1f} ms  ({min(naive_http[name]) * 1e3:.2f} ms per iteration, timed over {args.naive_iterations}, {args.baseline_workers}-worker server)")
                for k in in_flights:
                    for request in REQUESTS:
                        best = min(via[(name, k, request)])[0]
                        label = f"{k} in flight, {request}" + (" (default)" if k == upload_default and request == REQUESTS[0] else "")
                        print(f"  {label:<44} {best * 1e3:9.1f} ms  -> {naive / best:6.1f} x   (target >= 5; until every metric is stored)")
                best = min(via[(name, 0, "app")])[0]
                label = "--app-name backproplab, a call per flush"
                print(f"  {label:<44} {best * 1e3:9.1f} ms  -> {naive / best:6.1f} x   (target >= 5; until every metric is stored)")
        finally:
            for server in {*servers.values(), *baseline.values(), *apps.values()}:
                server.stop()
            os.chdir(home)


if __name__ == "__main__":
    main()
