"""``Checkpointer``: the trainer callback that keeps a run's checkpoint (``checkpoint.py``).

It writes one when training starts (so every killed run can be resumed), at the first epoch
boundary after every ``trainer.checkpoint_every_s`` seconds of training, at the end of
training, and when a stop signal arrives: SIGINT, SIGTERM, SIGUSR1 or SIGUSR2 (what SLURM and
submitit send before a preemption or a time limit).

A signal is acted on between two iterations, never inside one: an interrupt raised from the
handler could land half-way through an optimizer step (``W1`` updated, ``b1`` not), and no
checkpoint of that state could continue exactly. The handler only notes the signal; the next
``on_iteration`` (before that iteration's forward pass has any effect) writes the checkpoint
and raises the interrupt, so the run ends KILLED as before, and resumes from exactly there. A
second signal while the first waits raises at once (Ctrl-C twice), leaving the last checkpoint.
SIGUSR1/SIGUSR2 whose earlier handler is a function (submitit's requeue) get it called after
the checkpoint is written, so a requeue still happens.

Saving happens in ``on_iteration`` too (the periodic one is only *due* at the epoch's end):
this callback runs first in the list, so whatever it saves precedes the iteration every other
callback sees next, and the epoch that just ended has been handed to all of them. Before each
write ``before_save`` (tracking: flush every buffered metric into the store) makes the store
hold every step before the checkpoint; ``after_save`` (tracking: log it as the run's
``checkpoint/`` artifacts) makes it reachable from the run id alone.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from backproplab.numerics.trainer import Callback, EpochSummary, History, Step, stateful_callbacks
from . import checkpoint as files
from .stopping import STOP_SIGNALS, interrupt_for, signal_name


def optimizer_state(optimizer: Any) -> dict[str, np.ndarray]:
    """The optimizer's exported state; an optimizer without ``state_dict`` keeps none (the
    conformance kit holds such an optimizer to being stateless)."""
    export = getattr(optimizer, "state_dict", None)
    return {} if export is None else dict(export())


def load_optimizer_state(optimizer: Any, state: Mapping[str, np.ndarray]) -> None:
    load = getattr(optimizer, "load_state_dict", None)
    if load is not None:
        load(dict(state))
    elif state:
        raise ValueError(f"the checkpoint holds optimizer state but {type(optimizer).__name__} has no load_state_dict")


class Checkpointer(Callback):
    """Keeps ``directory``'s checkpoint of one run; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        *,
        every_s: float,
        config: Mapping[str, Any],
        run_id: str | None = None,
        resumed_from: Sequence[int] = (),
        overrides: Sequence[str] = (),
        job_num: int | None = None,
        launch_dir: str | None = None,
        before_save: Callable[[], None] | None = None,
        after_save: Callable[[Path], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
        self.every_s = float(every_s)
        self.config = dict(config)
        self.run_id = run_id
        self.resumed_from = list(resumed_from)
        self.overrides = list(overrides)
        self.job_num = job_num
        self.launch_dir = launch_dir
        self.before_save = before_save
        self.after_save = after_save
        self.clock = clock
        self.written = 0  # checkpoints written by this process
        self.last: files.Checkpoint | None = None
        self._trainer: Any = None
        self._due_at = 0.0
        self._act = False  # something to do before the next iteration: a save, or a stop
        self._save_due = False
        self._stop_signal: int | None = None
        self._stopping = False
        self._previous: dict[int, Any] = {}

    # -- the callback ----------------------------------------------------------------------
    def on_train_begin(self, trainer: Any) -> None:
        self._trainer = trainer
        self._install_handlers()
        self.save("start")
        self._due_at = self.clock() + self.every_s

    def on_iteration(self, step: Step) -> None:
        if self._act:
            self._service()

    def on_epoch_end(self, summary: EpochSummary) -> None:
        if self.clock() >= self._due_at:
            self._save_due = self._act = True

    def on_train_end(self, history: History) -> None:
        self.save("end")  # a signal may land while it is written: checked after it
        if self._stop_signal is not None:
            self._stop(save=False)
        self.close()

    # -- saving ----------------------------------------------------------------------------
    def save(self, reason: str, *, finished: bool = False) -> files.Checkpoint:
        """Write the checkpoint of where the trainer stands now."""
        trainer = self._trainer
        if self.before_save is not None:
            self.before_save()
        checkpoint = files.Checkpoint(
            run_id=self.run_id,
            position=trainer.position(),
            params={name: value.copy() for name, value in trainer.network.params.items()},
            optimizer_state=optimizer_state(trainer.optimizer),
            callback_state={key: dict(cb.state_dict()) for key, cb in stateful_callbacks(trainer.callbacks).items() if cb is not self},
            history_state=trainer.history.copy(),
            config=self.config,
            finished=finished,
            reason=reason,
            resumed_from=self.resumed_from,
            overrides=self.overrides,
            job_num=self.job_num,
            launch_dir=self.launch_dir,
            output_dir=str(self.directory.parent),
        )
        self._write(checkpoint)
        return checkpoint

    def _write(self, checkpoint: files.Checkpoint, *, record_only: bool = False) -> None:
        files.write(self.directory, checkpoint, record_only=record_only)
        self.last = checkpoint
        self.written += 1
        if self.after_save is not None:
            self.after_save(self.directory)

    def finish(self) -> None:
        """Mark the checkpoint finished: the run ended FINISHED, nothing is left to resume."""
        if self.last is None:
            return
        self.last.finished, self.last.reason = True, "finished"
        try:
            self._write(self.last, record_only=True)
        except Exception as exc:  # noqa: BLE001 - the run is recorded; only its marker is stale
            warnings.warn(f"could not mark the checkpoint in {self.directory} finished: {exc}", stacklevel=2)

    def failed(self, error: BaseException) -> None:
        """Mark the checkpoint as that of a run that failed with ``error`` (not a signal): a job
        started in this folder again starts afresh rather than meet the error again."""
        if self.last is None:
            return
        self.last.failed = f"{type(error).__name__}: {error}"[:500]
        try:
            self._write(self.last, record_only=True)
        except Exception:  # noqa: BLE001 - the run's own error is what is reported
            pass

    def _service(self) -> None:
        self._act = False
        if self._stop_signal is not None:
            self._stop()
        if self._save_due:
            self._save_due = False
            self.save("interval")
            self._due_at = self.clock() + self.every_s

    # -- signals ---------------------------------------------------------------------------
    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return
        self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}

    def close(self) -> None:
        """Give the signals back to the handlers they had before training (idempotent). A
        signal noted but not acted on yet goes to the handler it would have reached."""
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        pending = None if self._stopping else self._stop_signal
        if pending is None:
            return
        self._stopping = True
        handler = previous.get(pending)
        if callable(handler):
            handler(pending, None)
        elif handler != signal.SIG_IGN:
            raise interrupt_for(pending)

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002 - signal handler signature
        if self._stopping:
            return  # already stopping: the run ends KILLED for the first signal
        if self._stop_signal is not None:
            self._stopping = True
            raise interrupt_for(self._stop_signal)  # a second signal: stop without waiting
        self._stop_signal = signum
        self._act = True

    def _stop(self, *, save: bool = True) -> None:
        signum = self._stop_signal
        assert signum is not None
        self._stopping = True
        if save:
            self.save(signal_name(signum))
        previous = self._previous.get(signum)
        if signum in (signal.SIGUSR1, signal.SIGUSR2) and callable(previous):
            # submitit's handler requeues the job (and then exits): the checkpoint is in place.
            try:
                previous(signum, None)
            except SystemExit:
                pass
            except Exception as exc:  # noqa: BLE001 - the run still ends KILLED with its checkpoint
                warnings.warn(f"the {signal_name(signum)} handler this run replaced failed: {exc}", stacklevel=2)
        raise interrupt_for(signum)
