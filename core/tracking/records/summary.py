"""A run's final numbers, and a sweep's answer: the best child, its description, the final-loss plot.

Final metrics (``FINAL_METRICS``) are logged once at a run's end, from its last completed epoch,
on every tracked run (FINISHED, FAILED or KILLED alike), so that the runs table and the compare
view sort and plot them without reading histories.

Which child of a sweep is best is the sweep's one rule (``backproplab.run.sweep.BestRule``);
this module words and draws the answer it gives.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

# EpochSummary field -> final metric: fixed names, which the runs table, sweeps and users sort by.
FINAL_METRICS = {
    "train_loss": "final/train_loss",
    "val_loss": "final/val_loss",
    "train_accuracy": "final/train_accuracy",
    "val_accuracy": "final/val_accuracy",
}
# How many epochs the run completed: fewer than trainer.epochs when a callback stopped it early.
FINAL_EPOCHS = "final/epochs"


def final_metrics(epochs: Sequence[Any]) -> dict[str, float]:
    """The last completed epoch's numbers under their final names; empty before any epoch ended."""
    if not epochs:
        return {}
    last = epochs[-1]
    out = {}
    for field, key in FINAL_METRICS.items():
        value = getattr(last, field, None)
        if value is not None:
            out[key] = float(value)
    out[FINAL_EPOCHS] = float(last.epoch + 1)
    return out


def run_link(experiment_id: str, run_id: str) -> str:
    """A link that MLflow's UI (a hash router) resolves from any of its pages, in Model training
    mode (the run's charts and artifacts rather than the GenAI pages)."""
    from .description import MODEL_TRAINING_QUERY

    return f"#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_QUERY}"


def sweep_description(
    name: str, experiment_id: str, best: Any, rule: Any, finished: int, jobs: int, swept: dict[str, str], fixed: dict[str, str],
    table: Sequence[str] = (),
) -> str:
    """The parent's ``mlflow.note.content`` (Markdown): the answer first, then the ranked table
    of its children (``table``, Markdown lines), then what was run. ``best`` is the sweep's
    best ``JobOutcome`` under ``rule`` (``backproplab.run.sweep.BestRule``), or None."""
    lines = []
    if best is not None and best.child is not None:
        child = best.child.name or best.child.run_id
        lines.append(
            f"**Best run: [{child}]({run_link(experiment_id, best.child.run_id)})**, "
            f"{rule.name} = {rule.score(best):.6g} ({rule.why}; run id `{best.child.run_id}`)."
        )
    elif best is not None:
        lines.append(f"**Best job: #{best.num}** ({best.label}), {rule.name} = {rule.score(best):.6g} ({rule.why}).")
    else:
        lines.append(f"**No best run:** no child finished with a finite {rule.name}.")
    lines.append("")
    lines.append(f"{name}: {finished} of {jobs} jobs finished.")
    if table:
        lines.append("")
        lines.append(f"**Ranking** by {rule.name}, best first:")
        lines.append("")
        lines.extend(table)
    if swept:
        lines.append("")
        lines.append("Swept: " + "; ".join(f"`{k}` = {v}" for k, v in swept.items()) + ".")
    if fixed:
        lines.append("")
        lines.append("Fixed: " + " ".join(f"`{k}={v}`" for k, v in fixed.items()) + ".")
    lines.append("")
    lines.append("Table: `sweep_summary.csv` and `sweep_summary.json` (one row per job); plot: `plots/final_loss.png`.")
    return "\n".join(lines)


def table_column(name: str) -> str:
    """A summary column as MLflow's table view can show it: a dot in a column name reads as a
    path into the row there and shows blank, so ``optimizer.lr`` becomes ``optimizer/lr``."""
    return name.replace(".", "/")


# The final-loss plot: one bar per job, sorted, best at the top.
BAR_INCHES = 0.38
LABEL_INCHES_PER_CHAR = 0.085  # at fontsize 10, generous so no label is cut
DPI = 100


def plot_size(labels: Sequence[str]) -> tuple[float, float]:
    """(width, height) in inches: room for the longest label, the bars and their values."""
    longest = max((len(label) for label in labels), default=10)
    width = max(7.0, 4.5 + LABEL_INCHES_PER_CHAR * longest)
    height = max(2.5, 1.4 + BAR_INCHES * len(labels))
    return width, height


def plot_final_loss(
    path: Path, bars: Sequence[tuple[str, float | None, str, bool]], metric: str, direction: str = "minimize"
) -> tuple[int, int]:
    """Sorted horizontal bars of ``(label, value, status, is_best)``: the best value at the top, its value
    at each bar's end, the best marked, runs without a value at the bottom with their status.
    Returns the image's (width, height) in pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sign = -1.0 if direction == "maximize" else 1.0
    ordered = sorted(bars, key=lambda b: (b[1] is None, sign * b[1] if b[1] is not None else 0.0))
    labels = [b[0] for b in ordered]
    width, height = plot_size(labels)
    fig = Figure(figsize=(width, height), dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    positions = list(range(len(ordered)))
    values = [b[1] if b[1] is not None else 0.0 for b in ordered]
    colors = ["tab:green" if b[3] else ("tab:blue" if b[1] is not None else "tab:red") for b in ordered]
    ax.barh(positions, values, color=colors)
    top = max([v for v in values if v > 0], default=1.0)
    for y, (_label, value, status, best) in zip(positions, ordered):
        text = status if value is None else f"{value:.4g}" + ("  ★ best" if best else "")
        ax.text(value if value is not None else 0.0, y, " " + text, va="center", ha="left", fontsize=9,
                color="tab:red" if value is None else "black", fontweight="bold" if best else "normal")
    ax.set_xlim(0, top * 1.3)  # room for the value texts
    ax.set_yticks(positions)
    ax.set_yticklabels(labels, fontsize=10)
    ax.invert_yaxis()  # the best at the top
    ax.set_xlabel(f"{metric} ({'lower' if direction == 'minimize' else 'higher'} is better)")
    ax.set_title(f"{metric[:1].upper()}{metric[1:]} per run, best first (green: best; red: did not finish)", fontsize=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
    canvas.draw()
    fig.savefig(path, dpi=DPI)
    return int(round(width * DPI)), int(round(height * DPI))
