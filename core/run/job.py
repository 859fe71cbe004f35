"""One configured run: validate, build every object, then train inside tracking.

``prepare`` does everything that can fail on bad input (config checks, data loading, names to
objects, output width) before anything is tracked or trained, so a mistake costs no MLflow run.
``run`` trains what ``prepare`` built. Both are free of Hydra, so the CLI, ``explain`` and tests
share them; every object is built fresh per call, so jobs of one multirun share no state.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator, Mapping, Sequence

import numpy as np

from backproplab.components.build import build_network
from .config import MAX_ITERATIONS, RunConfig, validate
from .data import Dataset, load_dataset
from backproplab.errors import ConfigError
from backproplab.numerics.network import Network
from backproplab.components.loading import get_registry
from . import verdict
from .progress import fmt, make_progress
from .resources import check_network_memory
from backproplab.components.registry import Registry
from .context import ComponentInfo, RunContext
from .targets import encode, output_width
from backproplab.numerics.trainer import History, Trainer
from backproplab.components.pairing import check_output_activation


@dataclass
class PreparedRun:
    """A validated run with every component built and the targets encoded for the network."""

    config: RunConfig
    dataset: Dataset
    network: Network
    loss: Any
    optimizer: Any
    y_train: np.ndarray
    y_val: np.ndarray | None
    components: list[ComponentInfo]

    @property
    def iterations_per_epoch(self) -> int:
        n = self.dataset.n_train
        return math.ceil(n / min(self.config.batch_size, n))

    def trainer(self, callbacks: Sequence[Any] = (), *, epochs: int | None = None) -> Trainer:
        cfg = self.config
        return Trainer(
            self.network,
            self.loss,
            self.optimizer,
            batch_size=cfg.batch_size,
            epochs=epochs or cfg.trainer.epochs,
            shuffle=cfg.shuffle,
            seed=cfg.trainer.seed,
            callbacks=callbacks,
        )

    def context(self, overrides: Sequence[str] = (), *, job_num: int | None = None, launch_dir: str | None = None) -> RunContext:
        return RunContext(
            job_num=job_num,
            launch_dir=launch_dir,
            config=self.config.resolved,
            network=self.network,
            components=self.components,
            overrides=list(overrides),
            task=self.dataset.task,
            n_train=self.dataset.n_train,
            n_val=self.dataset.n_val,
            iterations_per_epoch=self.iterations_per_epoch,
            epochs=self.config.trainer.epochs,
            input_scaling=None
            if self.dataset.input_mean is None
            else {"mean": self.dataset.input_mean, "scale": self.dataset.input_scale},
            classes=self.dataset.classes,
            dataset=self.dataset,
        )


@dataclass
class RunResult:
    """What a finished (or failed) job reports; written as ``result.json`` by the CLI.

    "Final loss" means what the sweep summary means by it: the last epoch's mean training loss
    (MLflow's last ``train/loss``), or the last iteration's loss if no epoch ended. The last
    iteration's loss alone (MLflow's last ``loss``, one batch) is ``last_iteration_loss``.
    """

    status: str  # ok | failed
    losses: list[float] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    overrides: list[str] = field(default_factory=list)
    # Class names in label order when the data's targets were text, else None.
    classes: list[str] | None = None
    # Why the run learned little or nothing (chance-level accuracy, a loss that did not fall) and
    # what to try instead (``verdict``); None when it learned.
    warning: str | None = None

    def _last_epoch(self, key: str) -> Any:
        return self.epochs[-1].get(key) if self.epochs else None

    @property
    def last_iteration_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None

    @property
    def final_train_loss(self) -> float | None:
        return self._last_epoch("train_loss")

    @property
    def final_loss(self) -> float | None:
        return self.final_train_loss if self.epochs else self.last_iteration_loss

    def objective(self, name: str) -> tuple[str, float]:
        """(the result key, its value) that ``trainer.objective=name`` reports to a search
        sweeper; a ``BackproplabError`` when the run has no such finite value."""
        import math

        from backproplab.errors import BackproplabError

        record = self.to_json()
        key = name
        if name == "auto":
            key = "final_val_loss" if record.get("final_val_loss") is not None else "final_loss"
        value = record.get(key)
        if value is None:
            why = "no validation split (data.val_fraction)" if "val" in key else "no such value (accuracy needs a classification loss)"
            raise BackproplabError(f"trainer.objective={name} has no value: the run has {why}")
        if not math.isfinite(float(value)):
            raise BackproplabError(f"trainer.objective={name} is {value}, not a finite number")
        return key, float(value)

    def summary(self) -> str:
        """The line the CLI prints when a run ends, saying which loss it quotes."""
        if self.final_loss is None:
            return f"no loss after {len(self.losses)} iterations"
        which = f"mean over epoch {len(self.epochs)}" if self.epochs else "last iteration"
        last = f"; last iteration {fmt(self.last_iteration_loss)}" if self.epochs else ""
        return f"final loss {fmt(self.final_loss)} ({which}{last}) after {len(self.losses)} iterations"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "final_loss": self.final_loss,
            "final_train_loss": self.final_train_loss,
            "final_val_loss": self._last_epoch("val_loss"),
            "final_train_accuracy": self._last_epoch("train_accuracy"),
            "final_val_accuracy": self._last_epoch("val_accuracy"),
            "last_iteration_loss": self.last_iteration_loss,
            "iterations": len(self.losses),
            "losses": self.losses,
            "epochs": self.epochs,
            "error": self.error,
            "overrides": self.overrides,
            "classes": self.classes,
            "warning": self.warning,
        }


def _component_info(registry: Registry, kind: str, role: str, spec: Any) -> ComponentInfo:
    name = spec if isinstance(spec, str) else spec["name"]
    return ComponentInfo(kind, role, name, registry.source_of(kind, name))


def _build(registry: Registry, kind: str, spec: Mapping[str, Any], key: str) -> Any:
    name = spec["name"]
    try:
        return registry.resolve(kind, dict(spec))
    except ConfigError as exc:
        # The registry words its errors for the API ("optimizer 'sgd': momentum must be ...");
        # on the command line the component is named once, as the user typed it.
        text, prefix = str(exc), f"{kind} {name!r}"
        rest = text[len(prefix):] if text.startswith(prefix) else f": {text}"
        detail = rest[2:] if rest.startswith(": ") else ""
        detail = detail.removeprefix(f"{name} ")  # a plugin's "lion beta1 must be ..."
        # "scale must be a finite number > 0, got 0": a constructor naming its hyperparameter
        # is about the key the user typed, initializer.scale, which the line names instead.
        params = sorted((p for p in spec if p != "name"), key=len, reverse=True)
        for param in params:
            must = re.fullmatch(rf"{re.escape(param)} must be (.+?)(?:, got .*)?", detail)
            if must:
                raise ConfigError(key=f"{key}.{param}", value=spec[param], problem=f"is invalid for {key}={name}", valid=must.group(1)) from None
        if detail and params:
            # "needs low < high, got low=1e+308, high=0.05": each hyperparameter named by its key.
            words = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, params)) + r")(?![\w(])")
            raise ConfigError(f"{key}={name}: {words.sub(lambda m: f'{key}.{m.group(1)}', detail)}") from None
        raise ConfigError(f"{key}={name}{rest}") from None


def _check_size(config: RunConfig, dataset: Dataset, width: int) -> None:
    """What only the data's size decides, refused before any weight is allocated: a network
    that cannot fit into memory, and more iterations than ``MAX_ITERATIONS``."""
    model = config.model
    n = dataset.n_train
    batch_rows = min(config.batch_size, n)
    per_epoch = math.ceil(n / batch_rows)
    epochs = config.trainer.epochs
    if epochs * per_epoch > MAX_ITERATIONS:
        raise ConfigError(
            key="trainer.epochs",
            value=epochs,
            problem=f"makes {epochs * per_epoch} iterations ({per_epoch} per epoch: {n} training examples in batches of {batch_rows})",
            valid=f"at most {MAX_ITERATIONS} iterations in all, here trainer.epochs <= {MAX_ITERATIONS // per_epoch} "
            "(or a larger data.batch_size)",
        )
    # Name the key that makes the network large: an explicit output width wider than every
    # hidden layer, else model.hidden.
    if model.output_width is not None and model.output_width > max(model.hidden, default=0):
        key, value = "model.output_width", model.output_width
    else:
        key, value = "model.hidden", list(model.hidden)
    itemsize = 4 if model.dtype == "float32" else 8
    check_network_memory([dataset.n_features, *model.hidden, width], batch_rows, itemsize, key=key, value=value)


def prepare(cfg: Any, registry: Registry | None = None) -> PreparedRun:
    """Validate ``cfg`` (a composed DictConfig or plain mapping) and build the run's objects."""
    registry = registry or get_registry()
    config = validate(cfg, registry)
    loss = _build(registry, "loss", config.loss.as_spec(), "loss")
    # Before the data are loaded: a loss that does not fit the output activation is a config error.
    check_output_activation(loss, config.model.output_activation, registry, loss_name=config.loss.name, cli=True)
    dataset = load_dataset(config.data)
    width = output_width(dataset, loss, config.loss.name, config.model.output_width)
    model = config.model
    _check_size(config, dataset, width)
    # Each activation spec is built once here so that a bad hyperparameter names its key; the
    # network then builds its own instance per layer.
    for key, spec in (("model.activation", model.activation), ("model.output_activation", model.output_activation)):
        _build(registry, "activation", {"name": spec} if isinstance(spec, str) else spec, key)
    # A fresh initializer per run: a seeded one (legacy_randn) keeps its stream in the instance.
    initializer = _build(registry, "initializer", config.initializer.as_spec(), "initializer")
    try:
        network = build_network(
            [dataset.n_features, *model.hidden, width],
            activation=model.activation,
            output_activation=model.output_activation,
            initializer=initializer,
            seed=config.trainer.seed,
            dtype=model.dtype,
            registry=registry,
        )
    except ConfigError as exc:
        raise ConfigError(f"model: {exc}") from None
    optimizer = _build(registry, "optimizer", config.optimizer.as_spec(), "optimizer")
    y_train = encode(dataset, dataset.y_train, width)
    y_val = None if dataset.y_val is None else encode(dataset, dataset.y_val, width)
    components = [
        _component_info(registry, "activation", "activation", model.activation),
        _component_info(registry, "activation", "output_activation", model.output_activation),
        _component_info(registry, "loss", "loss", config.loss.name),
        _component_info(registry, "optimizer", "optimizer", config.optimizer.name),
        _component_info(registry, "initializer", "initializer", config.initializer.name),
    ]
    return PreparedRun(config, dataset, network, loss, optimizer, y_train, y_val, components)


# How a run is tracked: a context manager around training that yields a Callback (or None). The
# caller chooses it (the Hydra app picks MLflow or nothing from the logger node), so a configured
# run neither imports nor decides on a tracking backend.
TrackRun = Callable[[RunContext, Mapping[str, Any]], ContextManager[Any]]


@contextlib.contextmanager
def untracked(context: RunContext, logger: Any) -> Iterator[None]:  # noqa: ARG001 - TrackRun's signature
    yield None


def fit(prepared: PreparedRun, callbacks: Sequence[Any]) -> History:
    return _fit(prepared, prepared.trainer(callbacks))


def _fit(prepared: PreparedRun, trainer: Trainer) -> History:
    validation = None if prepared.y_val is None else (prepared.dataset.X_val, prepared.y_val)
    return trainer.fit(prepared.dataset.X_train, prepared.y_train, validation_data=validation)


def run(
    cfg: Any,
    overrides: Sequence[str] = (),
    *,
    track: TrackRun = untracked,
    multirun: bool = False,
    label: str = "",
    job_num: int | None = None,
    launch_dir: str | None = None,
    registry: Registry | None = None,
    prepared: PreparedRun | None = None,
) -> tuple[RunResult, History]:
    """Prepare, then train inside ``track`` (for MLflow, ``backproplab.tracking.track_run``, which
    records FINISHED/FAILED/KILLED and re-raises).

    ``label`` prefixes the progress lines of a multirun job. ``prepared``: ``cfg`` already
    prepared (by the command's up-front check), so its data are not loaded twice."""
    prepared = prepared or prepare(cfg, registry)
    context = prepared.context(overrides, job_num=job_num, launch_dir=launch_dir)
    progress = make_progress(prepared.config.trainer.epochs, prepared.iterations_per_epoch, multirun=multirun, label=label)
    trainer: Trainer | None = None
    try:
        with track(context, prepared.config.logger) as tracker:
            trainer = prepared.trainer([cb for cb in (tracker, progress) if cb is not None])
            history = _fit(prepared, trainer)
    except BaseException as exc:
        # What was trained before the failure (a full disk, a non-finite loss) goes into the
        # failed run's result.json with the error; see ``failed_result``.
        exc.backproplab_history = trainer.history if trainer is not None else None  # type: ignore[attr-defined]
        raise
    finally:
        close = getattr(progress, "close", None)
        if close is not None:
            close()
    result = result_of(history, overrides, prepared.dataset.classes)
    learned = verdict.judge(history.losses[0] if history.losses else None, history.epochs, prepared.dataset, context.config)
    result.warning = None if learned is None else learned.text()
    return result, history


def result_of(history: History, overrides: Sequence[str] = (), classes: Sequence[str] | None = None) -> RunResult:
    epochs = [dict(vars(summary)) for summary in history.epochs]
    return RunResult("ok", list(history.losses), epochs, None, list(overrides), None if classes is None else list(classes))


def failed_result(exc: BaseException, error: str, overrides: Sequence[str] = ()) -> RunResult:
    """The result of a run that raised ``exc``: the error, and the iterations and epochs it had
    completed (``run`` leaves them on the exception), so that result.json agrees with the store."""
    history = getattr(exc, "backproplab_history", None)
    if history is None:
        return RunResult("failed", error=error, overrides=list(overrides))
    partial = result_of(history, overrides)
    return RunResult("failed", partial.losses, partial.epochs, error, partial.overrides)
