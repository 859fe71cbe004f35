"""The training loop: epochs of mini-batches, each iteration one forward and one backward pass.

Terms follow the article: an *iteration* is one forward and one backward pass over one batch;
an *epoch* is one pass over the whole data set, ``ceil(n / batch_size)`` iterations, with the
last partial batch used rather than dropped. Everything is resolved before ``fit`` is called:
the loop holds objects, never names.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from backproplab.errors import ConfigError, NonFiniteLossError, NonFiniteParametersError
from .network import Network
from backproplab.validation import check_positive_int


# Up to this many parameters, checking them all after an update costs under a microsecond or so.
CHECK_EVERY_UPDATE_MAX_PARAMS = 10_000


def prepare_targets(loss: Any, y: Any, network: Network, name: str = "y") -> np.ndarray:
    """Validate targets against the loss's domain and bring them to shape (m, n_outputs)."""
    prepare = getattr(loss, "prepare", None)
    if prepare is not None:
        y = prepare(y, network.n_outputs)
    try:
        arr = np.asarray(y, dtype=network.dtype)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be numeric ({exc})") from None
    if arr.ndim == 1 and network.n_outputs == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != network.n_outputs:
        raise ConfigError(f"{name} has shape {arr.shape} but the network has {network.n_outputs} outputs")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} contains non-finite values; targets must be finite")
    return arr


class Step:
    """Read-only view of one iteration, handed to callbacks before the optimizer step.

    ``params`` hold the values used in this iteration's forward pass; ``grads`` are dE/dθ of
    this batch. Every array (params, grads, inputs, targets, outputs) is a read-only view that
    is valid during the callback only: copy what you keep.
    """

    __slots__ = ("_epoch", "_iteration", "_loss", "_params", "_grads", "_inputs", "_targets", "_outputs")

    def __init__(self, params: Mapping[str, np.ndarray]) -> None:
        ro = {}
        for name, value in params.items():
            view = value.view()
            view.flags.writeable = False
            ro[name] = view
        self._params = MappingProxyType(ro)
        self._epoch = self._iteration = 0
        self._loss = math.nan
        self._grads: Mapping[str, np.ndarray] = MappingProxyType({})
        self._inputs = self._targets = self._outputs = None

    epoch = property(lambda self: self._epoch, doc="0-based epoch index")
    iteration = property(lambda self: self._iteration, doc="0-based global iteration index")
    loss = property(lambda self: self._loss, doc="batch-mean loss of this iteration's forward pass")
    params = property(lambda self: self._params, doc="parameters used in the forward pass")
    grads = property(lambda self: self._grads, doc="gradients dE/dθ keyed W1, b1, ...")
    inputs = property(lambda self: self._inputs, doc="the batch X")
    targets = property(lambda self: self._targets, doc="the batch targets, shape (m, n_outputs)")
    outputs = property(lambda self: self._outputs, doc="the network's outputs y_hat for the batch")


@dataclass(frozen=True)
class EpochSummary:
    """One epoch: ``iterations`` is the global count so far; ``train_loss``/``train_accuracy`` are
    example-weighted means over the epoch's batches (each taken before that batch's update);
    the validation figures use the parameters at the end of the epoch."""

    epoch: int
    iterations: int
    train_loss: float
    train_accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    lr: float | None = None  # the optimizer's learning rate in force during the epoch

    def metrics(self) -> dict[str, float]:
        """The epoch's numbers under their metric names (``train/loss``, ``val/loss``, ...), the
        names a schedule or a callback monitors; a figure the run does not have is left out."""
        values = {name: getattr(self, attr) for attr, name in EPOCH_METRIC_NAMES.items()}
        return {name: float(value) for name, value in values.items() if value is not None}


# EpochSummary's fields under the names MLflow shows them by, and monitors name them by.
EPOCH_METRIC_NAMES = {
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "train_accuracy": "train/accuracy",
    "val_accuracy": "val/accuracy",
    "lr": "train/lr",
}


# The most losses, and the most epoch summaries, that a History keeps: every one of a run of up
# to this many iterations (epochs), an evenly thinned curve of any longer run.
HISTORY_POINTS = 10_000


@dataclass(frozen=True)
class Position:
    """Where training stands between two iterations: with the parameters and the optimizer's
    state, all that continuing it exactly needs (a checkpoint holds it).

    ``iteration`` counts the iterations completed, ``epoch`` is the epoch the next one belongs
    to, ``rng_state`` the shuffler's state (``numpy``'s ``bit_generator.state``, plain JSON-able
    values) from before that epoch's order was drawn, and the sums are the epoch's
    example-weighted loss and correct predictions of its iterations so far."""

    epoch: int
    iteration: int
    rng_state: dict[str, Any]
    epoch_loss_sum: float = 0.0
    epoch_correct: float = 0.0


@dataclass
class History:
    """What ``fit`` returns: the iterations' losses and the epochs' summaries, in bounded memory.

    A run of up to ``max_points`` iterations keeps every loss (``losses[i]`` is iteration ``i``'s),
    and of up to ``max_points`` epochs every ``EpochSummary``. A longer run keeps an evenly
    thinned record, so that memory does not grow with the run's length: ``losses[k]`` is the loss
    of iteration ``k * loss_stride``, and ``epochs`` holds the epochs whose index is a multiple of
    ``epoch_stride`` (each summary names its epoch). Whenever a list would exceed ``max_points``
    its stride doubles and every other kept point goes. The totals and the last values are
    always exact: ``iterations``, ``last_loss``, ``last_epoch``. A callback's ``on_iteration``
    sees every loss, for a full record kept elsewhere. ``stop_reason`` says why training ended
    before ``epochs`` epochs (a callback stopped it).
    """

    losses: list[float] = field(default_factory=list)
    epochs: list[EpochSummary] = field(default_factory=list)
    iterations: int = 0
    last_loss: float | None = None
    last_epoch: EpochSummary | None = None
    loss_stride: int = 1
    epoch_stride: int = 1
    max_points: int = HISTORY_POINTS
    stop_reason: str | None = None

    def add_loss(self, loss: float) -> None:
        """Record the next iteration's loss."""
        i = self.iterations
        self.iterations = i + 1
        self.last_loss = loss
        if i % self.loss_stride == 0:
            self.losses.append(loss)
            if len(self.losses) > self.max_points:
                self.losses = self.losses[::2]
                self.loss_stride *= 2

    def add_epoch(self, summary: EpochSummary) -> None:
        """Record the next epoch's summary."""
        self.last_epoch = summary
        if summary.epoch % self.epoch_stride == 0:
            self.epochs.append(summary)
            if len(self.epochs) > self.max_points:
                self.epochs = self.epochs[::2]
                self.epoch_stride *= 2

    @property
    def n_epochs(self) -> int:
        """Epochs completed."""
        return 0 if self.last_epoch is None else self.last_epoch.epoch + 1

    def copy(self) -> "History":
        """An independent copy: what it records next leaves this one as it is."""
        return replace(self, losses=list(self.losses), epochs=list(self.epochs))


class Callback:
    """Base class with no-op hooks; override the ones you need (duck typing works too).

    A callback reads what it is given; the arrays of a ``Step`` are read-only views. It ends
    training after the current epoch by setting ``trainer.stop_training = True`` (and
    ``trainer.stop_reason`` to say why), as Keras's callbacks do."""

    def on_train_begin(self, trainer: "Trainer") -> None: ...
    def on_iteration(self, step: Step) -> None: ...
    def on_epoch_end(self, summary: EpochSummary) -> None: ...
    def on_train_end(self, history: History) -> None: ...


def stateful_callbacks(callbacks: Iterable[Any]) -> dict[str, Any]:
    """The callbacks that keep state a checkpoint must carry (``state_dict``/``load_state_dict``,
    as optimizers have), by a key of their place and class: a continued fit has the same
    callbacks in the same order (its config is the checkpoint's), so the key finds each one's."""
    return {
        f"{i}.{type(cb).__name__}": cb
        for i, cb in enumerate(callbacks)
        if callable(getattr(cb, "state_dict", None)) and callable(getattr(cb, "load_state_dict", None))
    }


def _restore_callbacks(callbacks: Sequence[Any], states: Mapping[str, Mapping[str, np.ndarray]] | None) -> None:
    """Each stateful callback given the state it had at the checkpoint, after its
    ``on_train_begin`` (which starts its watch afresh)."""
    for key, cb in stateful_callbacks(callbacks).items():
        if states is not None and key in states:
            cb.load_state_dict(dict(states[key]))
        else:
            warnings.warn(
                f"the checkpoint holds no state for callback {type(cb).__name__}: it watches the continued run afresh, "
                "which may stop it at another epoch than the uninterrupted run",
                stacklevel=3,
            )


def _hooks(callbacks: Iterable[Any], name: str) -> list[Any]:
    """Bound hook methods that do something: no-op base methods are skipped on the hot path."""
    base = getattr(Callback, name)
    out = []
    for cb in callbacks:
        method = getattr(type(cb), name, None)
        if method is not None and method is not base:
            out.append(getattr(cb, name))
    return out


class Trainer:
    """Mini-batch training of a ``Network`` with a loss and an optimizer.

    ``batch_size`` larger than the training set is clamped to it (with a warning), so one sweep
    over batch sizes can include "full batch" on any data set. The trainer holds objects, not
    names: whether a loss fits the network's output activation is a question for the component
    system, answered by ``build_trainer`` (``backproplab.components``) before a trainer exists.

    ``train_step`` is the article's iteration (forward, loss, backward, optimizer step) on one
    batch; ``fit`` runs it over every batch of every epoch.
    """

    def __init__(
        self,
        network: Network,
        loss: Any,
        optimizer: Any,
        *,
        batch_size: int = 32,
        epochs: int = 1,
        shuffle: bool = True,
        seed: int | None = 0,
        callbacks: Sequence[Any] = (),
        schedule: Any = None,
    ) -> None:
        self.network = network
        self.loss = loss
        self.optimizer = optimizer
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.epochs = check_positive_int("epochs", epochs)
        self.shuffle = bool(shuffle)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ConfigError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.seed = seed
        self.callbacks = list(callbacks)
        self.schedule = usable_schedule(schedule, optimizer)
        # Set by a callback to end training after the current epoch (Keras's ``stop_training``).
        self.stop_training = False
        self.stop_reason: str | None = None
        # Whether the running fit has validation data, for callbacks that choose what to monitor.
        self.has_validation = False
        self.iteration = 0
        self.epoch = 0
        # Parameters are checked after every update while that costs next to nothing against the
        # iteration itself; a large network is checked at the end of every epoch (a non-finite
        # weight shows in its loss long before in all but saturated outputs).
        self._check_every_update = network.n_parameters <= CHECK_EVERY_UPDATE_MAX_PARAMS
        # The latest fit's history as it grows: what a fit that raised had trained is still here.
        self.history = History()
        # Where the running fit stands (``position``): the shuffler, its state before the
        # current epoch's order was drawn, and the current epoch's running sums.
        self._rng: np.random.Generator | None = None
        self._epoch_rng_state: dict[str, Any] = {}
        self._per_epoch = 0
        self._loss_sum = self._correct = 0.0

    def position(self) -> Position:
        """Where the running fit stands: valid in every callback hook (in ``on_iteration`` the
        step's own update has not been applied yet, so the position is just before it)."""
        if self._rng is None:
            raise RuntimeError("position() is known only while fit runs")
        if self.iteration >= (self.epoch + 1) * self._per_epoch:  # the epoch is over; the next order is not drawn yet
            return Position(self.epoch + 1, self.iteration, self._rng.bit_generator.state)
        return Position(self.epoch, self.iteration, self._epoch_rng_state, self._loss_sum, self._correct)

    def iterations_per_epoch(self, n_examples: int) -> int:
        """ceil(n / batch_size), with batch_size clamped to n as ``fit`` does."""
        if n_examples <= 0:
            return 0
        return math.ceil(n_examples / min(self.batch_size, n_examples))

    def evaluate(self, X: Any, y: Any) -> tuple[float, float | None]:
        """(loss, accuracy or None) of the current parameters on a whole data set."""
        net = self.network
        X = net.check_input(X)
        return self._evaluate(X, prepare_targets(self.loss, y, net))

    def _evaluate(self, X: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
        y_hat = self.network.forward(X)
        accuracy = getattr(self.loss, "accuracy", None)
        return float(self.loss.value(y_hat, y)), (None if accuracy is None else float(accuracy(y_hat, y)))

    def train_step(
        self, xb: np.ndarray, yb: np.ndarray, step: "Step | None" = None, on_iteration: Sequence[Any] = ()
    ) -> tuple[float, np.ndarray]:
        """One iteration, as the article works it: the forward pass, the loss E, the backward pass
        (dE/dtheta for every parameter), then the optimizer's update. Callbacks see the iteration
        between the backward pass and the update, so ``step.params`` are the ones that produced
        ``step.outputs``. Returns (E, the network's outputs). ``xb`` and ``yb`` are checked arrays,
        as ``fit`` prepares them."""
        net = self.network
        y_hat = net.forward(xb)
        loss_value = float(self.loss.value(y_hat, yb))
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(loss_value, self.epoch, self.iteration, at_fault=_nan_source(net, loss_value))
        grads = net.backward(self.loss.grad(y_hat, yb))
        if step is not None:
            for g in grads.values():
                g.flags.writeable = False
            step._epoch, step._iteration, step._loss = self.epoch, self.iteration, loss_value
            step._grads = MappingProxyType(grads)
            step._inputs, step._targets, step._outputs = _read_only(xb), _read_only(yb), _read_only(y_hat)
            for cb in on_iteration:
                cb(step)
            for g in grads.values():
                g.flags.writeable = True
        self.optimizer.step(net.params, grads)
        if self._check_every_update:
            self.check_parameters()
        self.iteration += 1
        return loss_value, y_hat

    def check_parameters(self, iteration: int | None = None) -> None:
        """Raise NonFiniteParametersError if an update left a parameter NaN or infinite, naming
        ``iteration`` (by default the current one) as the update that did it.

        A finite sum proves every element finite without a boolean copy of the array."""
        for name, p in self.network.params.items():
            if not math.isfinite(float(np.add.reduce(p, axis=None))) and not np.isfinite(p).all():
                raise NonFiniteParametersError(name, self.epoch, self.iteration if iteration is None else iteration)

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        validation_data: tuple[Any, Any] | None = None,
        start: Position | None = None,
        history: History | None = None,
        callback_state: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    ) -> History:
        """Train for ``epochs`` epochs; every input is checked before the first iteration.

        ``start``, ``history`` and ``callback_state`` continue a fit from a checkpoint: the
        network's parameters and the optimizer's state are those saved at ``start``, ``history``
        what had been trained before it, and ``callback_state`` the stateful callbacks' states
        (``stateful_callbacks``); the rest of the fit is then the one an uninterrupted fit would
        have done. A history that a callback stopped (``stop_reason``) trains no further."""
        net, loss = self.network, self.loss
        X = net.check_input(X)
        y = prepare_targets(loss, y, net)
        if X.shape[0] != y.shape[0]:
            raise ConfigError(f"X has {X.shape[0]} examples but y has {y.shape[0]}")
        if validation_data is not None:
            X_val = net.check_input(validation_data[0], "X_val")
            y_val = prepare_targets(loss, validation_data[1], net, "y_val")
            if X_val.shape[0] != y_val.shape[0]:
                raise ConfigError(f"X_val has {X_val.shape[0]} examples but y_val has {y_val.shape[0]}")
        n = X.shape[0]
        batch_size = self.batch_size
        if batch_size > n:
            warnings.warn(f"batch_size {batch_size} exceeds the {n} training examples; using {n}", stacklevel=2)
            batch_size = n
        rng = np.random.default_rng(self.seed)
        shuffle = self.shuffle and n > 1
        starts = range(0, n, batch_size)
        self._per_epoch = len(starts)
        first_epoch, skip = 0, 0
        self._loss_sum = self._correct = 0.0
        if start is not None:
            skip = self._continue_from(start, history, rng)
            first_epoch = start.epoch
        elif history is not None:
            raise ConfigError("history continues a fit only together with start, the position it was saved at")
        self._rng, self._epoch_rng_state = rng, rng.bit_generator.state
        history = self.history = history if history is not None else History()

        self.stop_training, self.stop_reason = False, None
        self.has_validation = validation_data is not None
        schedule, optimizer = self.schedule, self.optimizer
        if schedule is not None:
            lr = _checked_lr(schedule, "initial_lr", schedule.initial_lr(optimizer.lr), 0)
            if start is not None:
                lr = _replay_schedule(schedule, lr, history, first_epoch)
            optimizer.lr = lr
        for cb in _hooks(self.callbacks, "on_train_begin"):
            cb(self)
        last_epoch = self.epochs
        if start is not None:
            _restore_callbacks(self.callbacks, callback_state)
            if history.stop_reason is not None:  # stopped early before the checkpoint: it ended there
                self.stop_reason, last_epoch = history.stop_reason, first_epoch
        on_iteration = _hooks(self.callbacks, "on_iteration")
        on_epoch_end = _hooks(self.callbacks, "on_epoch_end")
        accuracy_fn = getattr(loss, "accuracy", None)
        step = Step(net.params) if on_iteration else None
        add_loss = history.add_loss
        train_step = self.train_step

        # A diverging run is reported once, as NonFiniteLossError at the first non-finite loss,
        # rather than as numpy overflow warnings from deep inside a matmul.
        with np.errstate(over="ignore", invalid="ignore"):
            for epoch in range(first_epoch, last_epoch):
                self.epoch = epoch
                self._epoch_rng_state = rng.bit_generator.state
                order = rng.permutation(n) if shuffle else None
                loss_sum, correct = self._loss_sum, self._correct
                for start in starts[skip:]:
                    if order is None:  # slices are views: no copy at all
                        xb = X[start : start + batch_size]
                        yb = y[start : start + batch_size]
                    else:  # gather one batch at a time: no shuffled copy of the whole data set
                        idx = order[start : start + batch_size]
                        xb = X[idx]
                        yb = y[idx]
                    loss_value, y_hat = train_step(xb, yb, step, on_iteration)
                    add_loss(loss_value)
                    m = xb.shape[0]
                    loss_sum += loss_value * m
                    if accuracy_fn is not None:
                        correct += float(accuracy_fn(y_hat, yb)) * m
                    self._loss_sum, self._correct = loss_sum, correct
                skip = 0
                self._loss_sum = self._correct = 0.0
                if not self._check_every_update:
                    self.check_parameters(self.iteration - 1)
                val_loss = val_acc = None
                if validation_data is not None:
                    val_loss, val_acc = self._evaluate(X_val, y_val)
                summary = EpochSummary(
                    epoch=epoch,
                    iterations=self.iteration,
                    train_loss=loss_sum / n,
                    train_accuracy=None if accuracy_fn is None else correct / n,
                    val_loss=val_loss,
                    val_accuracy=val_acc,
                    lr=_learning_rate(optimizer),
                )
                history.add_epoch(summary)
                for cb in on_epoch_end:
                    cb(summary)
                if schedule is not None:
                    lr = schedule.next_lr(epoch, optimizer.lr, summary.metrics())
                    optimizer.lr = _checked_lr(schedule, "next_lr", lr, epoch + 1)
                if self.stop_training:
                    history.stop_reason = self.stop_reason or f"stopped by a callback after epoch {epoch + 1}"
                    break
        for cb in _hooks(self.callbacks, "on_train_end"):
            cb(history)
        return history

    def _continue_from(self, start: Position, history: History | None, rng: np.random.Generator) -> int:
        """Set the counters and the shuffler to ``start``; the batches of its epoch already done."""
        per_epoch = self._per_epoch
        done = history.iterations if history is not None else None
        within = start.iteration - start.epoch * per_epoch
        if done != start.iteration or not 0 <= within < per_epoch or start.epoch > self.epochs:
            raise ConfigError(
                f"cannot continue at epoch {start.epoch}, iteration {start.iteration} with {done} iterations of history "
                f"and {per_epoch} iterations per epoch; valid: a position this run's data and batch size produce"
            )
        rng.bit_generator.state = start.rng_state
        self.iteration, self.epoch = start.iteration, start.epoch
        self._loss_sum, self._correct = start.epoch_loss_sum, start.epoch_correct
        return within


def _nan_source(network: Network, loss_value: float) -> tuple[str, int | None] | None:
    """The part of the last forward pass that turned finite inputs into NaN: that is a bug of
    its own (0/0, inf - inf, the log of a negative), where an infinity may be an honest overflow
    of too large a step. None when no part did (the weights themselves overflowed)."""
    zs, activations = network.cache
    for layer, (z, a) in enumerate(zip(zs, activations[1:])):
        if not np.isfinite(z).all():
            return None
        if np.isnan(a).any():
            return ("activation", layer)
        if not np.isfinite(a).all():
            return None
    return ("loss", None) if math.isnan(loss_value) else None


def _read_only(arr: np.ndarray) -> np.ndarray:
    """A view callbacks cannot write through; the array itself may be the caller's data."""
    view = arr.view()
    view.flags.writeable = False
    return view


def _learning_rate(optimizer: Any) -> float | None:
    """The optimizer's ``lr`` attribute, the one interface schedules use; None without one."""
    lr = getattr(optimizer, "lr", None)
    return float(lr) if isinstance(lr, numbers.Real) and not isinstance(lr, bool) else None


def _replay_schedule(schedule: Any, lr: float, history: History, epochs_done: int) -> float:
    """The rate a continued fit resumes at: the schedule stepped again through the epochs done
    before the checkpoint, from their summaries, so that its own state (a plateau's counters)
    is the uninterrupted fit's too. Schedules are functions of the epochs' numbers, so this is
    exact; it needs every epoch's summary, which a History keeps up to ``max_points`` epochs."""
    if epochs_done == 0:
        return lr
    if history.epoch_stride != 1 or len(history.epochs) != epochs_done:
        raise ConfigError(
            f"cannot continue a scheduled fit after {epochs_done} epochs: its history keeps {len(history.epochs)} epoch "
            f"summaries; valid: a scheduled run of at most {history.max_points} epochs, or schedule=constant"
        )
    for summary in history.epochs:
        lr = _checked_lr(schedule, "next_lr", schedule.next_lr(summary.epoch, lr, summary.metrics()), summary.epoch + 1)
    return lr


def usable_schedule(schedule: Any, optimizer: Any) -> Any:
    """The schedule the loop steps, or None. A schedule that never changes the rate
    (``constant = True``) runs with any optimizer; any other needs the optimizer's ``lr``."""
    if schedule is None:
        return None
    if _learning_rate(optimizer) is None:
        if getattr(schedule, "constant", False):
            return None
        raise ConfigError(
            f"schedule {type(schedule).__name__} sets the optimizer's learning rate, but optimizer "
            f"{type(optimizer).__name__} has no numeric 'lr' attribute; an optimizer is scheduled "
            "through an 'lr' attribute that its step() reads (docs/plugins.md)"
        )
    for method in ("initial_lr", "next_lr"):
        if not callable(getattr(schedule, method, None)):
            raise ConfigError(f"schedule {type(schedule).__name__} has no {method}() method; a schedule provides initial_lr and next_lr")
    return schedule


def _checked_lr(schedule: Any, method: str, lr: Any, epoch: int) -> float:
    """A schedule's answer as the float the optimizer gets; a rate that is not a finite number
    >= 0 stops the run here rather than as a non-finite loss later."""
    if isinstance(lr, numbers.Real) and not isinstance(lr, bool) and math.isfinite(lr) and lr >= 0:
        return lr if type(lr) is float else float(lr)
    raise ConfigError(
        f"schedule {type(schedule).__name__}.{method} returned the learning rate {lr!r} for epoch {epoch + 1}; "
        "valid: a finite number >= 0"
    )
