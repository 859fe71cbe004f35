"""What a run prints while it trains: a bar in a terminal, plain lines everywhere else.

- A single run on a TTY gets a tqdm bar over all iterations, labelled with the epoch and the
  last epoch's loss.
- Output that is not a TTY (a pipe, a log file, CI) gets one line per epoch, thinned to about
  twenty lines for long runs, so logs stay readable.
- A multirun is quieter still: each job prints only its summary line (Hydra already prints
  which job is starting), so eighteen jobs do not interleave bars.
- Tiny runs (at most ``PER_ITERATION_LIMIT`` iterations, like the worked example) print every
  iteration in every mode, with the prediction when the batch is one example with one output,
  because following each iteration is the point of such runs.
"""

from __future__ import annotations

import math
import shutil
import sys
from typing import IO, Any

from backproplab.numerics.trainer import Callback, EpochSummary, History, Step

PER_ITERATION_LIMIT = 50
EPOCH_LINES = 20


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6f}" if abs(value) < 1e6 else f"{value:.6e}"


def iteration_line(step: Step, total: int) -> str:
    width = len(str(total))
    text = f"iteration {step.iteration + 1:>{width}}/{total}"
    outputs = step.outputs
    if outputs is not None and outputs.shape == (1, 1):
        text += f"  prediction {float(outputs[0, 0]):.6f}"
    return text + f"  loss {fmt(step.loss)}"


def epoch_line(summary: EpochSummary, epochs: int) -> str:
    width = len(str(epochs))
    parts = [f"epoch {summary.epoch + 1:>{width}}/{epochs}", f"train loss {fmt(summary.train_loss)}"]
    if summary.train_accuracy is not None:
        parts.append(f"train acc {summary.train_accuracy:.4f}")
    if summary.val_loss is not None:
        parts.append(f"val loss {fmt(summary.val_loss)}")
    if summary.val_accuracy is not None:
        parts.append(f"val acc {summary.val_accuracy:.4f}")
    return "  ".join(parts)


class LineProgress(Callback):
    """Plain lines: every iteration of a tiny run, else (unless ``quiet``) thinned epochs."""

    def __init__(
        self,
        epochs: int,
        iterations_per_epoch: int,
        *,
        quiet: bool = False,
        prefix: str = "",
        stream: IO[str] | None = None,
    ):
        self.epochs = epochs
        self.prefix = prefix
        self.total = epochs * iterations_per_epoch
        self.per_iteration = self.total <= PER_ITERATION_LIMIT
        self.quiet = quiet
        self.stream = stream
        self.every = max(1, math.ceil(epochs / EPOCH_LINES))

    def _write(self, text: str) -> None:
        print(self.prefix + text, file=self.stream or sys.stdout, flush=True)

    def on_iteration(self, step: Step) -> None:
        if self.per_iteration:
            self._write(iteration_line(step, self.total))

    def on_epoch_end(self, summary: EpochSummary) -> None:
        if self.per_iteration or self.quiet:
            return
        if (summary.epoch + 1) % self.every == 0 or summary.epoch + 1 == self.epochs or summary.epoch == 0:
            self._write(epoch_line(summary, self.epochs))


class BarProgress(Callback):
    """A tqdm bar over every iteration of the run; tiny runs also write each iteration above it."""

    def __init__(self, epochs: int, iterations_per_epoch: int, *, stream: IO[str] | None = None):
        self.epochs = epochs
        self.total = epochs * iterations_per_epoch
        self.per_iteration = self.total <= PER_ITERATION_LIMIT
        self.stream = stream
        self.bar: Any = None

    def on_train_begin(self, trainer: Any) -> None:
        from tqdm.auto import tqdm

        # A terminal that reports a 0x0 size (some CI ptys, `script`) makes tqdm hide the bar;
        # shutil falls back to 80x24 there.
        size = shutil.get_terminal_size((80, 24))
        self.bar = tqdm(
            total=self.total,
            unit="it",
            desc=f"epoch 1/{self.epochs}",
            file=self.stream,
            leave=True,
            ncols=size.columns,
            nrows=size.lines,
        )

    def on_iteration(self, step: Step) -> None:
        if self.per_iteration:
            self.bar.write(iteration_line(step, self.total), file=self.stream)
        self.bar.update(1)

    def on_epoch_end(self, summary: EpochSummary) -> None:
        nxt = min(summary.epoch + 2, self.epochs)
        self.bar.set_description(f"epoch {nxt}/{self.epochs}", refresh=False)
        postfix = {"loss": f"{summary.train_loss:.4f}"}
        if summary.val_loss is not None:
            postfix["val_loss"] = f"{summary.val_loss:.4f}"
        self.bar.set_postfix(postfix)

    def on_train_end(self, history: History) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def make_progress(
    epochs: int, iterations_per_epoch: int, *, multirun: bool, label: str = "", stream: IO[str] | None = None
) -> Callback:
    """The display for this run: see the module docstring for the rules. ``label`` prefixes a
    multirun job's lines, so the lines of parallel jobs can be told apart."""
    out = stream or sys.stdout
    if not multirun and getattr(out, "isatty", lambda: False)():
        return BarProgress(epochs, iterations_per_epoch, stream=out)
    return LineProgress(epochs, iterations_per_epoch, quiet=multirun, prefix=label, stream=stream)
