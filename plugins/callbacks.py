"""Built-in training callbacks, selected on the command line as ``callbacks=[early_stopping]``."""

from __future__ import annotations

import numpy as np

from backproplab import Callback, EpochSummary, History, Trainer, hookimpl
from backproplab.validation import check_nonnegative_float

from .monitoring import check_monitor, monitored, resolve_mode


class EarlyStopping(Callback):
    """Keras's EarlyStopping: stop once the monitored number has not improved by more than
    ``min_delta`` for ``patience`` epochs (``patience=0``: at the first epoch without
    improvement). ``monitor`` ``auto`` watches ``val/loss`` with a validation split, else
    ``train/loss``; ``mode`` ``auto`` minimises a loss and maximises an accuracy. With
    ``restore_best``, a run that stops early ends with the parameters of its best epoch, as
    Keras's ``restore_best_weights`` does: those are the parameters saved and the model logged.

    The run ends normally (FINISHED), and says "stopped early at epoch k; best epoch j" (epochs
    counted from 1, as the console counts them)."""

    def __init__(
        self,
        monitor: str = "auto",
        mode: str = "auto",
        patience: int = 0,
        min_delta: float = 0.0,
        restore_best: bool = False,
    ):
        self.monitor = check_monitor(monitor)
        resolve_mode(mode, "loss")  # checks the value; auto is settled once the monitor is known
        self.mode = mode
        if not (isinstance(patience, int) and not isinstance(patience, bool) and patience >= 0):
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        self.patience = patience
        self.min_delta = check_nonnegative_float("min_delta", min_delta)
        if not isinstance(restore_best, bool):
            raise ValueError(f"restore_best must be true or false, got {restore_best!r}")
        self.restore_best = restore_best
        self._trainer: Trainer | None = None
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.wait = 0
        self._best_params: dict[str, np.ndarray] | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        self._trainer = trainer
        self.best = self.best_epoch = self.stopped_epoch = None
        self.wait = 0
        self._best_params = None

    def _improved(self, value: float, mode: str) -> bool:
        if self.best is None:
            return True
        return value - self.min_delta > self.best if mode == "max" else value + self.min_delta < self.best

    def on_epoch_end(self, summary: EpochSummary) -> None:
        name, value = monitored(self.monitor, summary.metrics())
        mode = resolve_mode(self.mode, name)
        epoch = summary.epoch
        trainer = self._trainer
        if self.restore_best and self._best_params is None:
            self._keep_params(trainer)
            self.best_epoch = epoch
        self.wait += 1
        if self._improved(value, mode):
            self.best, self.best_epoch = value, epoch
            if self.restore_best:
                self._keep_params(trainer)
            self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0 and trainer is not None:
            self.stopped_epoch = epoch
            best = epoch if self.best_epoch is None else self.best_epoch
            trainer.stop_training = True
            trainer.stop_reason = f"stopped early at epoch {epoch + 1}; best epoch {best + 1}"
            if self.restore_best and self._best_params is not None:
                trainer.network.set_params(self._best_params)
                trainer.stop_reason += f"; parameters of epoch {best + 1} restored"

    def _keep_params(self, trainer: Trainer | None) -> None:
        if trainer is not None:
            self._best_params = {name: p.copy() for name, p in trainer.network.params.items()}

    def on_train_end(self, history: History) -> None:
        self._trainer = None  # the callback keeps no network alive after the run
        self._best_params = None

    # A resumed run stops at the uninterrupted run's epoch, with its best parameters: the watch
    # so far travels in the run's checkpoint (npz: numbers as 0-d arrays, -1 and NaN for none).
    def state_dict(self) -> dict[str, np.ndarray]:
        state = {
            "best": np.float64(np.nan if self.best is None else self.best),
            "best_epoch": np.int64(-1 if self.best_epoch is None else self.best_epoch),
            "stopped_epoch": np.int64(-1 if self.stopped_epoch is None else self.stopped_epoch),
            "wait": np.int64(self.wait),
        }
        if self._best_params is not None:
            state.update({f"best_params/{name}": value.copy() for name, value in self._best_params.items()})
        return {key: np.asarray(value) for key, value in state.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        best, best_epoch, stopped = float(state["best"]), int(state["best_epoch"]), int(state["stopped_epoch"])
        self.best = None if np.isnan(best) else best
        self.best_epoch = None if best_epoch < 0 else best_epoch
        self.stopped_epoch = None if stopped < 0 else stopped
        self.wait = int(state["wait"])
        kept = {key.removeprefix("best_params/"): value.copy() for key, value in state.items() if key.startswith("best_params/")}
        self._best_params = kept or None


@hookimpl
def register_callbacks(register):
    register("early_stopping", EarlyStopping)
