"""Output folders are never shared by two commands at once, through the real command.

Two sweeps started together whose folders are named by the clock get a folder each (the second
one suffixed); a folder the user names is locked while its command lives, refused to a second
live command with one line and exit 2, and free again once the first has ended, also after a
``kill -9``. The collision is made certain rather than timed: both sweeps name their folder by
the year (``${now:%Y}``), a clock-named folder like the default's, which they always share."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_env

pytestmark = pytest.mark.slow


def popen(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "backproplab", *args],
        cwd=cwd,
        env=cli_env(PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen, prefix: str) -> None:
    for line in proc.stdout:
        if line.startswith(prefix):
            return
    raise AssertionError(f"no line starting {prefix!r}; stderr: {proc.stderr.read()}")


def summary(folder: Path) -> list[dict[str, str]]:
    with open(folder / "sweep_summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_two_sweeps_started_together_get_a_folder_each(tmp_path):
    common = ["-m", "data=moons", "trainer.epochs=30", "logger=none", "hydra.sweep.dir=multirun/${now:%Y}"]
    first = popen(tmp_path, *common, "optimizer.lr=0.1,0.2")
    second = popen(tmp_path, *common, "optimizer.lr=0.5,0.6")
    outs = [proc.communicate(timeout=300) for proc in (first, second)]
    for proc, (out, err) in zip((first, second), outs):
        assert proc.returncode == 0, err
    folders = sorted((tmp_path / "multirun").iterdir())
    year = folders[0].name
    assert [f.name for f in folders] == [year, f"{year}_1"]
    lrs = sorted(sorted(row["optimizer.lr"] for row in summary(folder)) for folder in folders)
    assert lrs == [["0.1", "0.2"], ["0.5", "0.6"]]
    for folder in folders:
        assert all(row["status"] == "FINISHED" for row in summary(folder))
        # each sweep's own jobs, in its own folder, and each command points at its own summary
        assert len(list(folder.glob("*/result.json"))) == 2
    assert {out.strip().splitlines()[-1].split()[1] for out, _ in outs} == {f"multirun/{f.name}/sweep_summary.csv" for f in folders}


def test_a_named_folder_is_refused_to_a_second_live_command_and_free_after(tmp_path, cli):
    first = popen(tmp_path, "data=moons", "trainer.epochs=100000", "logger=none", "hydra.run.dir=shared")
    try:
        wait_for(first, "epoch ")
        for args in (["-m", "hydra.sweep.dir=shared"], ["hydra.run.dir=shared"]):
            second = cli(*args, "data=moons", "trainer.epochs=2", "logger=none")
            key = args[-1].split("=")[0]
            assert second.returncode == 2, second.stderr
            line = second.stderr.strip()
            assert "\n" not in line and "Traceback" not in line
            assert line.startswith(f"error: {key}={tmp_path / 'shared'} is in use by another running backproplab command (pid {first.pid})")
        assert not (tmp_path / "shared" / "0").exists()
    finally:
        first.send_signal(signal.SIGKILL)  # the hardest ending: no code of the first runs after it
        first.communicate(timeout=120)
    # Once the first command has ended, however it ended, the folder may be used again (a sweep
    # resumed in its folder, a requeued cluster job).
    again = cli("-m", "data=moons", "trainer.epochs=2", "logger=none", "hydra.sweep.dir=shared")
    assert again.returncode == 0, again.stderr
    assert [row["status"] for row in summary(tmp_path / "shared")] == ["FINISHED"]
