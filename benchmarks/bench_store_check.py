"""What the up-front integrity check of a sqlite store costs (``reachability.check_sqlite``).

A run checks its store before Hydra creates ``outputs/``; since pages overwritten in the middle
of the file are found only by reading them, that check includes sqlite's ``quick_check`` (every
page, without ``integrity_check``'s index cross-checks). Its cost grows with the store. This
script builds MLflow stores of several sizes (metric rows inserted straight into MLflow's
``metrics`` table, as the direct writer stores them) and times, interleaved, the whole check
with the page check (``integrity=True``, a single run's preflight and a sweep's parent) and
without it (``integrity=False``, what a sweep job pays when it opens the store again), plus
``integrity_check`` for comparison. Best of ``--repeat``; the file is in the page cache after
the first repetition, as it is for a store in daily use.

    python benchmarks/bench_store_check.py [--metrics 100000,1000000,2000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path


def build(path: Path, n_metrics: int) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{path}")
    run_id = client.create_run(client.create_experiment("bench")).info.run_id
    with sqlite3.connect(path) as db:
        chunk = 100_000
        for start in range(0, n_metrics, chunk):
            rows = ((f"m{i % 8}", 0.5, 1_700_000_000_000 + i, run_id, i // 8) for i in range(start, min(start + chunk, n_metrics)))
            db.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)", rows)


def best(action, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", default="100000,1000000,2000000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from backproplab.tracking.transport.reachability import check_sqlite

    print("| metric rows | store | check without quick_check | with quick_check | added | per 100 MB | integrity_check |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for n in (int(x) for x in args.metrics.split(",")):
            path = Path(folder) / f"store-{n}.db"
            build(path, n)
            uri = f"sqlite:///{path}"
            size_mb = path.stat().st_size / 1e6
            without, with_check = [], []
            for _ in range(args.repeat):  # interleaved: a noisy neighbour slows both alike
                without.append(best(lambda: check_sqlite(uri, integrity=False), 1))
                with_check.append(best(lambda: check_sqlite(uri, integrity=True), 1))

            def full_check() -> None:
                with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                    db.execute("PRAGMA integrity_check").fetchall()

            full = best(full_check, 1)
            added = min(with_check) - min(without)
            print(
                f"| {n:,} | {size_mb:.0f} MB | {min(without) * 1000:.1f} ms | {min(with_check) * 1000:.1f} ms "
                f"| {added * 1000:.0f} ms ({min(with_check) / min(without):.1f}x) | {added / size_mb * 100 * 1000:.0f} ms | {full * 1000:.0f} ms |",
                flush=True,
            )
            path.unlink()


if __name__ == "__main__":
    main()
