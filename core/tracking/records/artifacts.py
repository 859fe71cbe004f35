"""Files attached to a run: what is needed to understand it without rerunning it.

- ``config.yaml``: the resolved config;
- ``params.npz``: the final parameters ``W1, b1, ...`` (plain float arrays in the network's
  dtype, loadable with ``allow_pickle=False``), and ``classes`` (a unicode array of the class
  names in label order) when the targets were text;
- ``classes.json``: the same class names, for readers without numpy;
- ``standardize.npz`` (``mean``, ``scale``) with ``data.standardize``: the weights expect
  ``(x - mean) / scale``, so the statistics are part of the model;
- ``plots/loss.png`` and ``plots/grad_norms.png``;
- ``trace.npz`` when ``logger.trace=true``.

Plots are drawn with matplotlib's Agg canvas directly, never through pyplot, so tracking
neither needs a display nor changes the backend of a user's interactive session. They are drawn
once each, on fixed margins, with plain tick labels: ``tight_layout`` costs a second draw, log
ticks in mathtext (``$10^{-1}$``) a pyparsing run per label, and minor log ticks dozens of
artists, and legend placement "best" a search over every plotted point; together they made the
two plots most of what tracking cost a sweep job (the README's "Speed" has the figures).
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from omegaconf import OmegaConf

from backproplab.numerics.trainer import EpochSummary
from .metric_names import MetricLayout


def write_config(path: Path, config: Mapping[str, Any]) -> None:
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(dict(config))))


def write_params(path: Path, params: Mapping[str, np.ndarray], classes: Sequence[str] | None = None) -> None:
    # In the network's own dtype: a float32 run's weights reload bit for bit.
    arrays = {name: np.asarray(value) for name, value in params.items()}
    if classes is not None:
        # dtype=str makes a fixed-width unicode array, which np.load reads without pickle.
        arrays["classes"] = np.array(list(classes), dtype=str)
    np.savez(path, **arrays)


# Figure fractions that fit tick labels such as "1e-05" and the axis titles at 7 x 4 inches.
_MARGINS = {"left": 0.11, "right": 0.98, "bottom": 0.12, "top": 0.92}
# A fixed title height: left to matplotlib, it measures the axes' tick labels once more per draw.
_TITLE_Y = 1.01


def _figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(**_MARGINS)
    return fig


def _finite(values: np.ndarray) -> np.ndarray:
    """Non-finite points become gaps: a diverging run must still get its plots."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, np.nan)


def _log_scale_if_positive(ax, *series: np.ndarray) -> None:
    values = np.concatenate([np.asarray(s, dtype=float).ravel() for s in series]) if series else np.zeros(0)
    values = values[np.isfinite(values)]
    # Beyond ~1e150 matplotlib's log tick formatter overflows; such runs diverged anyway.
    if values.size and (values > 1e-150).all() and (values < 1e150).all():
        from matplotlib.ticker import LogLocator, NullLocator, StrMethodFormatter

        ax.set_yscale("log")
        # 1-2-5 ticks keep a run that spans about a decade labelled without minor ticks; over
        # wider ranges LogLocator finds no 1-2-5 ticks at all, and decades are what to read.
        narrow = values.max() / values.min() <= 1e3
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)) if narrow else LogLocator())
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        ax.yaxis.set_minor_locator(NullLocator())


def _save(fig, ax, path: Path) -> None:
    try:
        fig.savefig(path)
    except (OverflowError, ValueError):
        ax.set_yscale("linear")
        fig.savefig(path)


def plot_loss(path: Path, steps: np.ndarray, loss: np.ndarray, epochs: Sequence[EpochSummary]) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    loss = _finite(loss)
    ax.plot(steps, loss, lw=0.8, label="loss (per iteration)")
    series = [loss]
    for field_name, label in (("train_loss", "train/loss"), ("val_loss", "val/loss")):
        points = [(e.iterations, getattr(e, field_name)) for e in epochs if getattr(e, field_name) is not None]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", ms=3, lw=1.2, label=f"{label} (per epoch)")
            series.append(np.asarray(ys))
    _log_scale_if_positive(ax, *series)
    ax.set_xlabel("iteration (step)")
    ax.set_ylabel("loss")
    ax.set_title("Loss", y=_TITLE_Y)
    ax.legend(loc="upper right", fontsize="small")
    _save(fig, ax, path)


def plot_grad_norms(path: Path, steps: np.ndarray, summary: np.ndarray, layout: MetricLayout) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    plotted = []
    for column, which, param in layout.norm_columns:
        if which == "grad":
            values = _finite(summary[:, column])
            ax.plot(steps, values, lw=0.8, label=f"grad_norm/{param}")
            plotted.append(values)
    _log_scale_if_positive(ax, *plotted)
    ax.set_xlabel("iteration (step)")
    ax.set_ylabel("Frobenius norm of dE/dθ")
    ax.set_title("Gradient norms", y=_TITLE_Y)
    ax.legend(loc="upper right", fontsize="small", ncol=2)
    _save(fig, ax, path)


def draw_plots(directory: Path, layout: MetricLayout, summary: tuple[np.ndarray, np.ndarray], epochs: Sequence[EpochSummary]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    steps, values = summary
    plot_loss(directory / "loss.png", steps, values[:, 0], epochs)
    plot_grad_norms(directory / "grad_norms.png", steps, values, layout)


class PlotThread:
    """The run's plots, drawn on a thread while the caller waits for the store.

    Drawing is CPU work that holds the GIL, but a run's last store writes (the final metric
    flush, the artifact copies) mostly wait on sqlite's fsync; overlapping the two hides the
    waits. ``wait`` re-raises a drawing error in the caller, which ends the run without
    pretending the plots exist.
    """

    def __init__(self, layout: MetricLayout, summary: tuple[np.ndarray, np.ndarray], epochs: Sequence[EpochSummary]) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="backproplab-plots-")
        self.directory = Path(self._tmp.name) / "plots"
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._draw, args=(layout, summary, list(epochs)), name="backproplab-plots", daemon=True)
        self._thread.start()

    def _draw(self, layout: MetricLayout, summary: tuple[np.ndarray, np.ndarray], epochs: list[EpochSummary]) -> None:
        try:
            draw_plots(self.directory, layout, summary, epochs)
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that logs the run
            self._error = exc

    def wait(self) -> Path:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.directory

    def cleanup(self) -> None:
        self._thread.join()
        self._tmp.cleanup()


def log_run_artifacts(
    client: Any,
    run_id: str,
    *,
    config: Mapping[str, Any],
    params: Mapping[str, np.ndarray],
    layout: MetricLayout,
    summary: tuple[np.ndarray, np.ndarray],
    epochs: Sequence[EpochSummary],
    trace: Any = None,
    input_scaling: Mapping[str, np.ndarray] | None = None,
    classes: Sequence[str] | None = None,
    plots: PlotThread | None = None,
) -> None:
    """Every artifact of the run, logged before this returns. With ``plots`` (already drawing),
    the other files are written and logged while it draws; without, the plots are drawn here."""
    try:
        with tempfile.TemporaryDirectory(prefix="backproplab-artifacts-") as tmp:
            root = Path(tmp)
            write_config(root / "config.yaml", config)
            write_params(root / "params.npz", params, classes)
            if classes is not None:
                (root / "classes.json").write_text(json.dumps(list(classes)) + "\n", encoding="utf-8")
            if input_scaling is not None:
                np.savez(root / "standardize.npz", **{k: np.asarray(v) for k, v in input_scaling.items()})
            if trace is not None:
                trace.save(root / "trace.npz")
            if plots is None:
                draw_plots(root / "plots", layout, summary, epochs)
                client.log_artifacts(run_id, str(root))
            else:
                client.log_artifacts(run_id, str(root))
                client.log_artifacts(run_id, str(plots.wait()), "plots")
    finally:
        if plots is not None:
            plots.cleanup()
