"""What keeping a checkpoint costs a run: the same run with and without one, side by side.

A run with an output folder keeps ``checkpoint/`` there (``backproplab.run.checkpointing``):
written at the start, at the end, and at the first epoch's end after every
``trainer.checkpoint_every_s`` (default 60 s), each an fsynced npz + JSON pair. Between writes
the callback costs one attribute test per iteration. Cases (``logger=none``, progress lines to
/dev/null, as a job prints them):

* moons, 2000 examples, [32, 32] tanh, adam, batch 16, 20 epochs (2,500 iterations): the
  default interval (so the start and end checkpoints) and the worst case, ``checkpoint_every_s=0``
  (a checkpoint at every epoch's end);
* the worked example's network trained 2,000 iterations (one example each, the cheapest
  iteration there is), default interval.

Then the cost of one checkpoint write of the moons network (median of 30), and what it makes of
a run at the default interval: one write per minute of training.

Repetitions of with and without are interleaved, so a noisy neighbour slows both alike; the
best of several is the figure compared (the median ratio of the pairs is printed too). A
script, not a test: wall-clock numbers never decide a test.

    python benchmarks/bench_checkpoint.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import tempfile
import time

import numpy as np

from backproplab.run import job


def moons(every_s: float, epochs: int) -> dict:
    return {
        "model": {"hidden": [32, 32], "activation": "tanh", "output_activation": "sigmoid", "output_width": None, "dtype": "float64"},
        "data": {"name": "moons", "n_samples": 2000, "noise": 0.1, "batch_size": 16, "shuffle": True, "val_fraction": 0.0, "standardize": True, "seed": 0},
        "loss": {"name": "bce"},
        "optimizer": {"name": "adam"},
        "initializer": {"name": "xavier_uniform"},
        "trainer": {"epochs": epochs, "seed": 0, "checkpoint_every_s": every_s},
        "logger": {"name": "none"},
    }


def worked_example(iterations: int) -> dict:
    return {
        "model": {"hidden": [4], "activation": "sigmoid", "output_activation": "sigmoid", "output_width": None, "dtype": "float64"},
        "data": {"name": "seed_example", "batch_size": 1, "shuffle": True},
        "loss": {"name": "bce"},
        "optimizer": {"name": "sgd", "lr": 0.5},
        "initializer": {"name": "legacy_randn", "scale": 0.1, "seed": 3},
        "trainer": {"epochs": iterations, "seed": 3, "checkpoint_every_s": 60},
        "logger": {"name": "none"},
    }


def timed(cfg: dict, checkpoint: bool) -> float:
    prepared = job.prepare(cfg)
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        t0 = time.perf_counter()
        job.run(cfg, prepared=prepared, output_dir=tmp if checkpoint else None)
        return time.perf_counter() - t0


def compare(label: str, cfg: dict, repeats: int) -> None:
    timed(cfg, True)  # warm-up: imports, the data generator
    without, with_ = [], []
    for _ in range(repeats):
        without.append(timed(cfg, False))
        with_.append(timed(cfg, True))
    ratios = [w / o for w, o in zip(with_, without)]
    print(
        f"{label}: without {min(without) * 1e3:.1f} ms, with {min(with_) * 1e3:.1f} ms; "
        f"ratio {min(with_) / min(without):.3f}x best, {statistics.median(ratios):.3f}x median of pairs"
    )


def write_cost(cfg: dict, repeats: int = 30) -> float:
    """Median seconds of one checkpoint write (snapshot, npz + JSON, fsynced) of ``cfg``'s run
    after its training."""
    from pathlib import Path

    from backproplab.run.checkpointing import Checkpointer

    prepared = job.prepare(cfg)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpointer = Checkpointer(Path(tmp) / "checkpoint", every_s=60, config=prepared.config.resolved)
        trainer = prepared.trainer([checkpointer])
        job._fit(prepared, trainer)  # leaves the trainer where a checkpoint would be taken
        for _ in range(repeats):
            t0 = time.perf_counter()
            checkpointer.save("interval")
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and a shorter run")
    args = parser.parse_args()
    repeats, epochs = (3, 5) if args.quick else (9, 20)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}")
    compare(f"moons [32,32] adam, {epochs} epochs, checkpoint_every_s=60 (start and end)", moons(60, epochs), repeats)
    compare(f"moons [32,32] adam, {epochs} epochs, checkpoint_every_s=0 (every epoch)", moons(0, epochs), repeats)
    compare("worked example 3-4-1, 2000 iterations, checkpoint_every_s=60", worked_example(400 if args.quick else 2000), repeats)
    cost = write_cost(moons(60, epochs))
    print(f"one checkpoint write (moons [32,32] adam, {epochs} epochs of history): {cost * 1e3:.2f} ms median; "
          f"at the default interval (one per 60 s of training) {cost / 60 * 100:.4f}% of the training time")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
