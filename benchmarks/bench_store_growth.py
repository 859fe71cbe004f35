"""How much the shipped sweep presets add to a fresh MLflow store (README "Store growth").

Runs every ``experiment=`` preset that is a sweep (``hydra.mode: MULTIRUN``: lr_sweep,
batch_size_sweep, architecture_sweep, hpo_moons) with the real ``backproplab`` command, one after
the other, into one fresh store in a temporary directory (``./mlflow.db`` and its artifacts in
``./mlruns``, MLflow's local layout), and prints what each preset added: the sqlite file, the
artifact folder, the stored metric points and the points of its largest run. The target: the
four together add at most 30 MB.

``--baseline`` runs them a second time, side by side, into another fresh store with
``logger.max_points_per_metric=null`` (every iteration of every child, as before the cap), and
prints the ratio. Sizes only, no timing: a script, not a test.

    python benchmarks/bench_store_growth.py [--baseline]
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TARGET_MB = 30.0
MB = 1_000_000


def sweep_presets() -> list[str]:
    names = []
    for path in sorted((REPO / "experiments").glob("*.yaml")):
        node = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if str((node.get("hydra") or {}).get("mode", "")).upper() == "MULTIRUN":
            names.append(path.stem)
    return names


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def store_bytes(root: Path) -> tuple[int, int]:
    """(sqlite file with its journal files, artifact folder) in bytes."""
    db = sum(p.stat().st_size for p in root.glob("mlflow.db*") if p.is_file())
    return db, folder_bytes(root / "mlruns")


def points_per_run(root: Path) -> dict[str, int]:
    """Stored metric points of every run in the store, by run id."""
    with sqlite3.connect(root / "mlflow.db") as con:
        return dict(con.execute("SELECT run_uuid, COUNT(*) FROM metrics GROUP BY run_uuid"))


def run_preset(root: Path, preset: str, extra: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    proc = subprocess.run(
        [sys.executable, "-m", "backproplab", f"experiment={preset}", "logger.tracking_uri=sqlite:///mlflow.db", *extra],
        cwd=root, env=env, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"experiment={preset} exited {proc.returncode}:\n{proc.stderr[-2000:]}")


def measure(extra: list[str], label: str) -> float:
    print(f"\n{label}")
    print(f"{'preset':<20} {'sqlite MB':>10} {'artifacts MB':>13} {'added MB':>9} {'points':>9} {'largest run':>14}")
    with tempfile.TemporaryDirectory(prefix="backproplab-growth-") as tmp:
        root = Path(tmp)
        before_db = before_art = before_points = 0
        seen: set[str] = set()
        for preset in sweep_presets():
            run_preset(root, preset, extra)
            db, art = store_bytes(root)
            per_run = points_per_run(root)
            total_points = sum(per_run.values())
            largest = max((n for run, n in per_run.items() if run not in seen), default=0)
            seen.update(per_run)
            added = (db - before_db) + (art - before_art)
            print(
                f"{preset:<20} {(db - before_db) / MB:>10.1f} {(art - before_art) / MB:>13.1f} {added / MB:>9.1f} "
                f"{total_points - before_points:>9,} {largest:>14,}"
            )
            before_db, before_art, before_points = db, art, total_points
        total = (before_db + before_art) / MB
        print(f"{'all four':<20} {before_db / MB:>10.1f} {before_art / MB:>13.1f} {total:>9.1f} {before_points:>9,}")
        return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", action="store_true", help="also measure logger.max_points_per_metric=null, side by side")
    args = parser.parse_args()
    print(f"machine: {platform.node()} ({os.cpu_count()} cores), Python {platform.python_version()}")
    total = measure([], "default settings (logger.max_points_per_metric=auto: 50 points per metric for a sweep's child)")
    print(f"target: at most {TARGET_MB:.0f} MB: {'met' if total <= TARGET_MB else 'MISSED'} ({total:.1f} MB)")
    if args.baseline:
        base = measure(["logger.max_points_per_metric=null"], "every point (logger.max_points_per_metric=null)")
        print(f"\nthe default adds {total / base:.2f}x of what every point adds ({total:.1f} MB vs {base:.1f} MB)")


if __name__ == "__main__":
    main()
