"""The progress display: a bar for a single run in a terminal, lines everywhere else, and every
iteration of tiny runs such as the worked example."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys

import pytest

from backproplab.run.progress import BarProgress, LineProgress, make_progress
from backproplab.numerics.trainer import EpochSummary


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal, as sys.stdout does in an interactive shell."""

    def isatty(self) -> bool:
        return True


def test_the_display_follows_the_output_and_the_mode():
    assert isinstance(make_progress(5, 10, multirun=False, stream=_Terminal()), BarProgress)
    assert isinstance(make_progress(5, 10, multirun=False, stream=io.StringIO()), LineProgress)
    quiet = make_progress(5, 10, multirun=True, stream=_Terminal())
    assert isinstance(quiet, LineProgress) and quiet.quiet


def test_long_runs_print_about_twenty_epoch_lines():
    out = io.StringIO()
    progress = LineProgress(100, 16, stream=out)
    for epoch in range(100):
        progress.on_epoch_end(EpochSummary(epoch, (epoch + 1) * 16, 0.5, 0.75, 0.4, 0.8))
    lines = out.getvalue().splitlines()
    assert 20 <= len(lines) <= 22
    assert lines[0].startswith("epoch   1/100") and lines[-1].startswith("epoch 100/100")
    assert "train acc 0.7500" in lines[-1] and "val loss 0.400000" in lines[-1] and "val acc 0.8000" in lines[-1]


def test_a_multirun_job_prints_no_epoch_lines():
    out = io.StringIO()
    progress = LineProgress(100, 16, quiet=True, stream=out)
    for epoch in range(100):
        progress.on_epoch_end(EpochSummary(epoch, (epoch + 1) * 16, 0.5))
    assert out.getvalue() == ""


def _run_in_terminal(args: list[str], cwd, env) -> str:
    """Run the command with a pseudo-terminal as stdout and stderr; return what it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "backproplab", *args], cwd=cwd, env=env, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_a_terminal_gets_a_bar_and_a_pipe_gets_lines(cli, tmp_path, cli_env):
    # 160 training examples in batches of 32: 5 iterations per epoch, 55 in all (not a tiny run).
    args = ["data=moons", "trainer.epochs=11", "logger=none"]
    tty = _run_in_terminal(args, tmp_path, cli_env())
    assert "100%" in tty and "55/55" in tty and "epoch 11/11" in tty
    assert "train loss" not in tty and "iteration 1/" not in tty
    piped = cli(*args)
    assert piped.returncode == 0, piped.stderr
    assert "%|" not in piped.stdout and "\r" not in piped.stdout
    assert [line.split()[1] for line in piped.stdout.splitlines() if line.startswith("epoch")] == [f"{e}/11" for e in range(1, 12)]


@pytest.mark.slow
def test_the_worked_example_prints_every_iteration_in_a_terminal_too(tmp_path, cli_env):
    tty = _run_in_terminal(["logger=none"], tmp_path, cli_env())
    assert "iteration 1/7  prediction 0.520888" in tty and "iteration 7/7  prediction 0.925053" in tty
