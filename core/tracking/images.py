"""Pictures of learning, logged with ``MlflowClient.log_image(key=..., step=...)`` so that the
UI's step slider replays them.

- ``decision_boundary``: for data sets with two input features, the network's output over the
  plane of the (raw, unstandardised) inputs with the training points on top;
- ``histograms/W<l>``: per layer, the histogram of the weights ``W<l>`` and of their gradient
  ``dE/dW<l>``.

Training pays only for copies: ``Snapshots`` chooses at most ``max_per_key`` epochs up front,
spread over the run and ending with the last one, and copies the parameters at the end of those
epochs and the gradients of their last iteration. Everything else (the forward pass over a
grid, drawing, encoding, the store writes) happens after training, on a thread
(``ImageThread``), while the run's last metrics are written. Steps are the iterations completed
at the end of the epoch, as for the per-epoch metrics.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from backproplab.numerics.trainer import EpochSummary, Step

BOUNDARY_KEY = "decision_boundary"
HISTOGRAM_PREFIX = "histograms/"
# Grid points per axis of the decision surface: a smooth boundary at the image's size, and a
# forward pass of ~10^4 points, which costs well under a millisecond per layer.
_GRID = 120


def chosen_epochs(epochs: int, max_per_key: int) -> list[int]:
    """At most ``max_per_key`` epochs (0-based) spread evenly over the run, the last included."""
    if epochs <= 0:
        return []
    n = min(epochs, max_per_key)
    return sorted({round((k + 1) * epochs / n) - 1 for k in range(n)})


@dataclass
class Snapshot:
    step: int  # iterations completed
    epoch: int  # 0-based; the epoch in progress for a run stopped mid-epoch
    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray] | None


class Snapshots:
    """Copies of the parameters (and the last gradients) at the chosen epochs; a trainer callback's
    helper: ``grad_iteration`` is the next iteration whose gradients to copy, -1 for none."""

    def __init__(self, params: Mapping[str, np.ndarray], epochs: int, iterations_per_epoch: int, max_per_key: int) -> None:
        self._params = params
        self.max_per_key = max_per_key
        self._epochs = chosen_epochs(epochs, max_per_key)
        self._ipe = iterations_per_epoch
        self._next = 0
        self._grads: dict[str, np.ndarray] | None = None
        self.taken: list[Snapshot] = []
        self.grad_iteration = self._grad_iteration()

    def _grad_iteration(self) -> int:
        if self._next >= len(self._epochs) or self._ipe <= 0:
            return -1
        return (self._epochs[self._next] + 1) * self._ipe - 1

    def grads(self, step: Step) -> None:
        self._grads = {name: np.array(g) for name, g in step.grads.items()}

    def epoch_end(self, summary: EpochSummary) -> None:
        if self._next < len(self._epochs) and summary.epoch == self._epochs[self._next]:
            params = {name: np.array(p) for name, p in self._params.items()}
            self.taken.append(Snapshot(summary.iterations, summary.epoch, params, self._grads))
            self._grads = None
            self._next += 1
            self.grad_iteration = self._grad_iteration()

    def finish(self, last: Step | None) -> None:
        """A run stopped before its last chosen epoch still gets its boundary at the end."""
        if last is None or len(self.taken) >= self.max_per_key:
            return
        step = last.iteration + 1
        if self.taken and self.taken[-1].step >= step:
            return
        params = {name: np.array(p) for name, p in self._params.items()}
        self.taken.append(Snapshot(step, last.epoch, params, None))


@dataclass(frozen=True)
class PlaneData:
    """What the decision boundary is drawn over: raw inputs, targets, and how inputs were scaled."""

    X: np.ndarray  # raw (unstandardised) training inputs, shape (m, 2)
    y: np.ndarray  # class labels (m,) or regression targets (m, k)
    feature_names: list[str]
    mean: np.ndarray | None
    scale: np.ndarray | None
    classification: bool

    @classmethod
    def of(cls, dataset: Any, input_scaling: Mapping[str, np.ndarray] | None) -> "PlaneData | None":
        if dataset is None or dataset.n_features != 2:
            return None
        X = np.asarray(dataset.X_train, dtype=float)
        mean = scale = None
        if input_scaling is not None:
            mean, scale = np.asarray(input_scaling["mean"], dtype=float), np.asarray(input_scaling["scale"], dtype=float)
            X = X * scale + mean
        names = list(dataset.feature_names) or ["x1", "x2"]
        return cls(X, np.asarray(dataset.y_train), names, mean, scale, dataset.task != "regression")


def _forward(params: Mapping[str, np.ndarray], activations: list[Any], X: np.ndarray) -> np.ndarray:
    # Not Network.forward: that caches every layer's values on the network, which the caller may
    # still be using.
    a = X.astype(params["W1"].dtype, copy=False)
    for l, act in enumerate(activations, start=1):
        a = act.forward(a @ params[f"W{l}"].T + params[f"b{l}"])
    return np.asarray(a, dtype=float)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=72)
    FigureCanvasAgg(fig)
    return fig


def _pixels(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _few_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.tick_params(labelsize="small")


class BoundaryCanvas:
    """One figure for every snapshot of a run: the grid, the points, the axes and their ticks are
    laid out once; each picture only swaps the surface's pixels and the title, which keeps a
    picture at one Agg draw (creating and laying out a figure costs as much again)."""

    def __init__(self, plane: PlaneData, n_outputs: int, epochs: int) -> None:
        X = plane.X
        lo, hi = X.min(axis=0), X.max(axis=0)
        pad = np.where(hi > lo, (hi - lo) * 0.1, 1.0)
        self.extent = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
        g0 = np.linspace(self.extent[0], self.extent[1], _GRID)
        g1 = np.linspace(self.extent[2], self.extent[3], _GRID)
        xx, yy = np.meshgrid(g0, g1)
        grid = np.column_stack([xx.ravel(), yy.ravel()])
        self.grid = grid if plane.mean is None else (grid - plane.mean) / plane.scale
        self.plane, self.epochs, self.n_outputs = plane, epochs, n_outputs
        self.fig = _figure(4.6, 3.9)
        self.fig.subplots_adjust(left=0.14, right=0.97, bottom=0.13, top=0.91)
        ax = self.ax = self.fig.add_subplot()
        single = n_outputs == 1
        if single and plane.classification:
            cmap, vmin, vmax = "RdBu_r", 0.0, 1.0
        elif single:
            cmap, vmin, vmax = "viridis", None, None
        else:
            cmap, vmin, vmax = "tab10", -0.5, 9.5
        self.image = ax.imshow(
            np.zeros((_GRID, _GRID)), extent=self.extent, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
            alpha=0.55, interpolation="nearest",
        )
        colours = plane.y if plane.y.ndim == 1 else plane.y[:, 0]
        if plane.classification:
            ax.scatter(X[:, 0], X[:, 1], c=colours, cmap=cmap, vmin=vmin, vmax=vmax, s=8, linewidths=0)
        else:
            ax.scatter(X[:, 0], X[:, 1], c=colours, cmap="viridis", s=8, linewidths=0)
        ax.set_xlim(self.extent[0], self.extent[1])
        ax.set_ylim(self.extent[2], self.extent[3])
        ax.set_xlabel(plane.feature_names[0], fontsize="small")
        ax.set_ylabel(plane.feature_names[1], fontsize="small")
        _few_ticks(ax)
        self.title = ax.set_title("", fontsize="medium")

    def draw(self, activations: list[Any], snap: Snapshot) -> np.ndarray:
        with np.errstate(all="ignore"):
            out = _forward(snap.params, activations, self.grid)
        if out.shape[1] == 1:
            z = out[:, 0]
            z = np.where(np.isfinite(z), z, np.nan)
            if not self.plane.classification:
                finite = z[np.isfinite(z)]
                if finite.size:
                    self.image.set_clim(finite.min(), finite.max())
        else:
            z = np.argmax(np.where(np.isfinite(out), out, -np.inf), axis=1).astype(float)
        self.image.set_data(z.reshape(_GRID, _GRID))
        self.title.set_text(f"Decision boundary, epoch {snap.epoch + 1}/{self.epochs} (step {snap.step})")
        return _pixels(self.fig)


class HistogramCanvas:
    """One figure per layer, reused across snapshots as ``BoundaryCanvas`` is: weights ``W<l>``
    on the left, their gradient on the right; counts are not labelled (the shape is the point)."""

    def __init__(self, layer: int, epochs: int) -> None:
        self.layer, self.epochs = layer, epochs
        self.fig = _figure(6.4, 2.8)
        self.fig.subplots_adjust(left=0.04, right=0.98, bottom=0.12, top=0.78, wspace=0.12)
        self.axes = [self.fig.add_subplot(1, 2, k) for k in (1, 2)]
        self.stairs = []
        name = f"W{layer}"
        for ax, label, colour in zip(self.axes, (f"weights {name}", f"gradients dE/d{name} (last batch of the epoch)"), ("tab:blue", "tab:orange")):
            self.stairs.append(ax.stairs([0.0], [0.0, 1.0], fill=True, color=colour, alpha=0.8))
            ax.set_title(label, fontsize="small")
            _few_ticks(ax)
            ax.set_yticks([])
        self.suptitle = self.fig.suptitle("", fontsize="medium")

    def draw(self, snap: Snapshot) -> np.ndarray:
        name = f"W{self.layer}"
        for ax, artist, values in zip(self.axes, self.stairs, (snap.params[name], None if snap.grads is None else snap.grads[name])):
            values = np.zeros(0) if values is None else np.asarray(values, dtype=float).ravel()
            values = values[np.isfinite(values)]
            if values.size:
                counts, edges = np.histogram(values, bins=min(30, max(5, values.size)))
            else:
                counts, edges = np.zeros(1), np.array([0.0, 1.0])
            if edges[-1] == edges[0]:
                edges = edges + np.linspace(-0.5, 0.5, edges.size)
            artist.set_data(counts.astype(float), edges)
            ax.set_xlim(edges[0], edges[-1])
            ax.set_ylim(0, max(1.0, counts.max() * 1.05))
        self.suptitle.set_text(f"Layer {self.layer}, epoch {snap.epoch + 1}/{self.epochs} (step {snap.step})")
        return _pixels(self.fig)


class ImageThread:
    """Draws the snapshots' pictures on a thread; ``wait`` returns them as (key, step, RGB pixels)
    or re-raises the drawing error. Logging them is left to the caller's thread, after the last
    metrics landed: a sqlite store takes one writer at a time."""

    def __init__(self, snapshots: Snapshots, plane: PlaneData | None, activations: list[Any], epochs: int) -> None:
        self._error: BaseException | None = None
        self.images: list[tuple[str, int, np.ndarray]] = []
        self._thread = threading.Thread(
            target=self._draw, args=(list(snapshots.taken), plane, activations, epochs), name="backproplab-images", daemon=True
        )
        self._thread.start()

    def _draw(self, taken: list[Snapshot], plane: PlaneData | None, activations: list[Any], epochs: int) -> None:
        try:
            boundary = histograms = None
            for snap in taken:
                if plane is not None:
                    if boundary is None:
                        boundary = BoundaryCanvas(plane, snap.params[f"b{len(activations)}"].size, epochs)
                    self.images.append((BOUNDARY_KEY, snap.step, boundary.draw(activations, snap)))
                if snap.grads is not None:
                    if histograms is None:
                        histograms = [HistogramCanvas(layer, epochs) for layer in range(1, len(activations) + 1)]
                    for canvas in histograms:
                        self.images.append((f"{HISTOGRAM_PREFIX}W{canvas.layer}", snap.step, canvas.draw(snap)))
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that ends the run
            self._error = exc

    def wait(self) -> list[tuple[str, int, np.ndarray]]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.images


def log_images(client: Any, run_id: str, images: list[tuple[str, int, np.ndarray]]) -> None:
    for key, step, pixels in images:
        client.log_image(run_id, pixels, key=key, step=step)
