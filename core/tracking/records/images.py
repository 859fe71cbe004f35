"""Pictures of learning, logged with ``MlflowClient.log_image(key=..., step=...)`` so that the
UI's step slider replays them.

- ``decision_boundary``: for data sets with two input features, the network's output over the
  plane of the (raw, unstandardised) inputs with the training points on top;
  the last of them also as the plain artifact ``plots/decision_boundary.png``;
- ``histograms/W<l>``: per layer, the histogram of the weights ``W<l>`` and of their gradient
  ``dE/dW<l>``.

Training pays only for copies: ``Snapshots`` copies the untrained network (step 0), then chooses
at most ``max_per_key - 1`` epochs up front, spread over the run and ending with the last one, and
copies the parameters at the end of those epochs and the gradients of their last iteration. The
step-0 picture is what MLflow 3.17's image card shows first: the card opens at step 0 whatever
steps were logged, and draws only a picture logged at exactly the slider's step ("No image logged
at this step" otherwise), so without it a reviewer meets an empty card. Everything else happens after training: the
forward pass over a grid and the drawing on a thread (``ImageThread``) while the run's last
metrics are written, then the ``log_image`` calls with the run's other artifacts. Steps are the
iterations completed at the end of the epoch, as for the per-epoch metrics.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
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
    epoch: int  # 0-based; the epoch in progress for a run stopped mid-epoch; -1 before training
    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray] | None


class Snapshots:
    """Copies of the parameters (and the last gradients) before training and at the chosen epochs;
    a trainer callback's helper: ``grad_iteration`` is the next iteration whose gradients to copy,
    -1 for none. Made before training starts: the parameters it sees then are the untrained ones.

    The untrained network counts against ``max_per_key``; with ``max_per_key=1`` only the last
    epoch is kept (MLflow's card jumps to a key's only step by itself)."""

    def __init__(self, params: Mapping[str, np.ndarray], epochs: int, iterations_per_epoch: int, max_per_key: int) -> None:
        self._params = params
        self.max_per_key = max_per_key
        initial = max_per_key >= 2 and epochs > 0
        self._epochs = chosen_epochs(epochs, max_per_key - 1 if initial else max_per_key)
        self._ipe = iterations_per_epoch
        self._next = 0
        self._grads: dict[str, np.ndarray] | None = None
        self.taken: list[Snapshot] = []
        if initial:
            self.taken.append(Snapshot(0, -1, {name: np.array(p) for name, p in params.items()}, None))
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


def _few_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.tick_params(labelsize="small")


class _Blitter:
    """Draws a figure's fixed parts (axes, ticks, labels: nearly all of a picture's cost, in text
    rendering) once, then only the ``animated`` artists on top of that background per picture."""

    def __init__(self, fig, animated: list[Any]) -> None:
        self.fig, self.animated = fig, animated
        for artist in animated:
            artist.set_animated(True)
        fig.canvas.draw()
        self.background = fig.canvas.copy_from_bbox(fig.bbox)

    def pixels(self) -> np.ndarray:
        canvas = self.fig.canvas
        canvas.restore_region(self.background)
        renderer = canvas.get_renderer()
        for artist in self.animated:
            artist.draw(renderer)
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class BoundaryCanvas:
    """One figure for every snapshot of a run: the grid, the points, the axes and their ticks are
    laid out and drawn once; each picture redraws only the surface, the points and the title."""

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
            points = ax.scatter(X[:, 0], X[:, 1], c=colours, cmap=cmap, vmin=vmin, vmax=vmax, s=8, linewidths=0)
        else:
            points = ax.scatter(X[:, 0], X[:, 1], c=colours, cmap="viridis", s=8, linewidths=0)
        ax.set_xlim(self.extent[0], self.extent[1])
        ax.set_ylim(self.extent[2], self.extent[3])
        ax.set_xlabel(plane.feature_names[0], fontsize="small")
        ax.set_ylabel(plane.feature_names[1], fontsize="small")
        _few_ticks(ax)
        self.title = ax.set_title("", fontsize="medium")
        self.blitter = _Blitter(self.fig, [self.image, points, self.title])

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
        self.title.set_text(f"Decision boundary, {_when(snap, self.epochs)}")
        return self.blitter.pixels()


def _when(snap: Snapshot, epochs: int) -> str:
    if snap.epoch < 0:
        return f"before training (step {snap.step})"
    return f"epoch {snap.epoch + 1}/{epochs} (step {snap.step})"


def _histogram(snap: Snapshot) -> bool:
    """Histograms need a whole epoch's last gradients, except the untrained network's (weights
    only): it is the card's first view."""
    return snap.grads is not None or snap.epoch < 0


_BINS = 30


def _range(arrays: list[np.ndarray]) -> tuple[float, float]:
    finite = [a[np.isfinite(a)] for a in arrays]
    finite = [a for a in finite if a.size]
    if not finite:
        return -1.0, 1.0
    lo, hi = min(float(a.min()) for a in finite), max(float(a.max()) for a in finite)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


class HistogramCanvas:
    """One figure per layer for all of a run's snapshots: weights ``W<l>`` on the left, their
    gradient on the right (empty before training), on bins and axes fixed over the run (so the
    step slider shows the distributions move and spread, and the axes are drawn once); counts are
    not labelled."""

    def __init__(self, layer: int, epochs: int, taken: list[Snapshot]) -> None:
        self.layer, self.epochs = layer, epochs
        name = f"W{layer}"
        series = [
            [np.asarray(s.params[name], dtype=float).ravel() for s in taken],
            [np.asarray(s.grads[name], dtype=float).ravel() for s in taken if s.grads is not None],
        ]
        self.edges = [np.linspace(*_range(values), _BINS + 1) for values in series]
        top = [
            max([np.histogram(v, bins=edges)[0].max() for v in values] or [1]) for values, edges in zip(series, self.edges)
        ]
        self.fig = _figure(6.4, 2.8)
        self.fig.subplots_adjust(left=0.04, right=0.98, bottom=0.12, top=0.78, wspace=0.12)
        self.axes = [self.fig.add_subplot(1, 2, k) for k in (1, 2)]
        self.stairs = []
        labels = (f"weights {name}", f"gradients dE/d{name} (last batch of the epoch)")
        for ax, label, colour, edges, high in zip(self.axes, labels, ("tab:blue", "tab:orange"), self.edges, top):
            self.stairs.append(ax.stairs(np.zeros(_BINS), edges, fill=True, color=colour, alpha=0.8))
            ax.set_title(label, fontsize="small")
            ax.set_xlim(edges[0], edges[-1])
            ax.set_ylim(0, max(1.0, high * 1.05))
            _few_ticks(ax)
            ax.set_yticks([])
        self.suptitle = self.fig.suptitle("", fontsize="medium")
        self.blitter = _Blitter(self.fig, [*self.stairs, self.suptitle])

    def draw(self, snap: Snapshot) -> np.ndarray:
        name = f"W{self.layer}"
        sources = (snap.params[name], None if snap.grads is None else snap.grads[name])
        for artist, values, edges in zip(self.stairs, sources, self.edges):
            counts = np.zeros(_BINS) if values is None else np.histogram(np.asarray(values, dtype=float), bins=edges)[0]
            artist.set_data(counts.astype(float), edges)
        when = _when(snap, self.epochs) + (", no gradient yet" if snap.grads is None else "")
        self.suptitle.set_text(f"Layer {self.layer}, {when}")
        return self.blitter.pixels()


class ImageThread:
    """Draws the snapshots' pictures on a thread; ``wait`` returns them as (key, step, RGB pixels)
    or re-raises the drawing error. Logging them is left to the caller's thread, after the last
    metrics landed: a sqlite store takes one writer at a time."""

    def __init__(self, snapshots: Snapshots, plane: PlaneData | None, activations: list[Any], epochs: int) -> None:
        self._error: BaseException | None = None
        self.images: list[tuple[str, int, np.ndarray]] = []
        # Not a daemon: a run whose pictures are never logged (its server lost, its artifacts
        # failed) still has this thread drawing when the command ends, and a daemon thread
        # inside matplotlib at the interpreter's exit aborts the process (SIGABRT). Exiting waits
        # for at most a run's bounded set of pictures instead.
        self._thread = threading.Thread(
            target=self._draw, args=(list(snapshots.taken), plane, activations, epochs), name="backproplab-images", daemon=False
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
                if _histogram(snap):
                    if histograms is None:
                        drawn = [t for t in taken if _histogram(t)]
                        histograms = [HistogramCanvas(layer, epochs, drawn) for layer in range(1, len(activations) + 1)]
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


FINAL_BOUNDARY_FILE = "decision_boundary.png"


def log_final_boundary(client: Any, run_id: str, images: list[tuple[str, int, np.ndarray]]) -> None:
    """The last decision boundary as the plain artifact ``plots/decision_boundary.png``: what the
    trained network separates, found beside ``plots/loss.png`` without the image slider."""
    boundaries = [(step, pixels) for key, step, pixels in images if key == BOUNDARY_KEY]
    if not boundaries:
        return
    from matplotlib.image import imsave

    _, pixels = max(boundaries, key=lambda b: b[0])
    with tempfile.TemporaryDirectory(prefix="backproplab-boundary-") as tmp:
        path = Path(tmp) / FINAL_BOUNDARY_FILE
        imsave(path, pixels)
        client.log_artifact(run_id, str(path), "plots")
