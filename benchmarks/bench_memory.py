"""Peak memory of a long run: ``backproplab trainer.epochs=N logger=none`` at 10^4 and 10^6 epochs.

Each run is the real command in a subprocess (the worked example: one iteration per epoch) in a
temporary directory; its peak resident set size is the kernel's ``ru_maxrss`` of that child
(``os.wait4``), and the size of the ``result.json`` it wrote is read back. A run's memory must
not grow with its length beyond a bounded summary, so the ratio of the two peaks is printed
against 1. A script, not a test: the figures go into the README's Speed section.

    python benchmarks/bench_memory.py [--epochs 10000 1000000] [--exe backproplab]

``--exe`` measures another install's command (e.g. a venv holding the commit before a change)
side by side with this one's ``python -m backproplab``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(command: list[str], epochs: int) -> tuple[float, int, float]:
    """(peak RSS in MiB, result.json bytes, seconds) of one run of ``epochs`` epochs."""
    with tempfile.TemporaryDirectory(prefix="backproplab-mem-") as tmp:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*command, f"trainer.epochs={epochs}", "logger=none", "hydra.run.dir=run"],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(command)} trainer.epochs={epochs} failed: {proc.stderr.read().decode()[-2000:]}")
        proc.stderr.close()
        result = Path(tmp) / "run" / "result.json"
        return usage.ru_maxrss / 1024, result.stat().st_size, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs=2, default=[10_000, 1_000_000], metavar=("SHORT", "LONG"))
    parser.add_argument("--exe", help="another install's backproplab command to measure beside this one")
    args = parser.parse_args()
    commands = {"this": [sys.executable, "-m", "backproplab"]}
    if args.exe:
        commands["baseline"] = [args.exe]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for label, command in commands.items():
        short, long_ = (measure(command, n) for n in args.epochs)
        print(f"{label}: {args.epochs[0]:,} epochs: peak RSS {short[0]:.1f} MiB, result.json {short[1] / 1024:.1f} KiB, {short[2]:.1f} s")
        print(f"{label}: {args.epochs[1]:,} epochs: peak RSS {long_[0]:.1f} MiB, result.json {long_[1] / 1024:.1f} KiB, {long_[2]:.1f} s")
        print(f"{label}: peak RSS ratio {args.epochs[1]:,} / {args.epochs[0]:,} epochs = {long_[0] / short[0]:.2f}x (target: 1x, bounded)")


if __name__ == "__main__":
    main()
