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
neither needs a display nor changes the backend of a user's interactive session.
"""

from __future__ import annotations

import json
import tempfile
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


def _figure(width: float = 7.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
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
        ax.set_yscale("log")


def _save(fig, ax, path: Path) -> None:
    try:
        fig.tight_layout()
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
    ax.set_title("Loss")
    ax.legend(loc="best", fontsize="small")
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
    ax.set_title("Gradient norms")
    ax.legend(loc="best", fontsize="small", ncol=2)
    _save(fig, ax, path)


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
) -> None:
    with tempfile.TemporaryDirectory(prefix="backproplab-artifacts-") as tmp:
        root = Path(tmp)
        write_config(root / "config.yaml", config)
        write_params(root / "params.npz", params, classes)
        if classes is not None:
            (root / "classes.json").write_text(json.dumps(list(classes)) + "\n", encoding="utf-8")
        if input_scaling is not None:
            np.savez(root / "standardize.npz", **{k: np.asarray(v) for k, v in input_scaling.items()})
        steps, values = summary
        (root / "plots").mkdir()
        plot_loss(root / "plots" / "loss.png", steps, values[:, 0], epochs)
        plot_grad_norms(root / "plots" / "grad_norms.png", steps, values, layout)
        if trace is not None:
            trace.save(root / "trace.npz")
        client.log_artifacts(run_id, str(root))
