"""One configured run: validate, build every object, then train inside tracking.

``prepare`` does everything that can fail on bad input (config checks, data loading, names to
objects, output width) before anything is tracked or trained, so a mistake costs no MLflow run.
``run`` trains what ``prepare`` built. Both are free of Hydra, so the CLI, ``explain`` and tests
share them; every object is built fresh per call, so jobs of one multirun share no state.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Mapping, Sequence

import numpy as np

from backproplab.components.build import build_network
from backproplab.components.probe import PROBE_ROWS, Part, dry_iteration
from .config import MAX_ITERATIONS, RunConfig, owner, validate
from .data import Dataset, load_dataset
from backproplab.errors import BackproplabError, ComponentError, ConfigError, NonFiniteLossError, PluginError, exception_line
from backproplab.numerics.network import Network
from backproplab.components.loading import get_registry
from . import verdict
from .progress import fmt, make_progress
from .resources import check_network_memory, check_trace_memory
from backproplab.components.registry import Registry
from .context import ComponentInfo, RunContext
from .targets import encode, output_width
from backproplab.numerics.trainer import History, Trainer, usable_schedule
from backproplab.components.pairing import check_output_activation
from . import checkpoint as checkpoint_files
from .checkpoint import Checkpoint
from .checkpointing import Checkpointer, load_optimizer_state


@dataclass
class PreparedRun:
    """A validated run with every component built and the targets encoded for the network."""

    config: RunConfig
    dataset: Dataset
    network: Network
    loss: Any
    optimizer: Any
    schedule: Any
    callbacks: list[Any]
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
            # The configured callbacks first: a tracker or a progress bar after them sees an
            # epoch's stop request and the parameters a callback restored.
            callbacks=[*self.callbacks, *callbacks],
            schedule=self.schedule,
        )

    def context(
        self, overrides: Sequence[str] = (), *, job_num: int | None = None, launch_dir: str | None = None, resume: Checkpoint | None = None
    ) -> RunContext:
        return RunContext(
            resume=resume,
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

    ``losses`` and ``epochs`` are the run's ``History`` as kept: every one for a run of up to
    ``HISTORY_POINTS`` iterations (epochs), else thinned to every ``loss_stride``-th iteration
    (``epoch_stride``-th epoch), so result.json stays small however long the run. ``iterations``,
    ``last_loss`` and ``last_epoch`` are exact; left out, they are read off the lists.
    """

    status: str  # ok | failed
    losses: list[float] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    overrides: list[str] = field(default_factory=list)
    # Class names in label order when the data's targets were text, else None.
    classes: list[str] | None = None
    iterations: int | None = None
    last_loss: float | None = None
    last_epoch: dict[str, Any] | None = None
    loss_stride: int = 1
    epoch_stride: int = 1
    # Why training ended before its epochs, when a callback stopped it (early stopping).
    stop_reason: str | None = None
    # Why the run learned little or nothing (chance-level accuracy, a loss that did not fall) and
    # what to try instead (``verdict``); None when it learned.
    warning: str | None = None

    @property
    def n_iterations(self) -> int:
        return len(self.losses) if self.iterations is None else self.iterations

    @property
    def final_epoch(self) -> dict[str, Any] | None:
        if self.last_epoch is not None:
            return self.last_epoch
        return self.epochs[-1] if self.epochs else None

    def _last_epoch(self, key: str) -> Any:
        final = self.final_epoch
        return None if final is None else final.get(key)

    @property
    def last_iteration_loss(self) -> float | None:
        if self.last_loss is not None:
            return self.last_loss
        return self.losses[-1] if self.losses else None

    @property
    def final_train_loss(self) -> float | None:
        return self._last_epoch("train_loss")

    @property
    def final_loss(self) -> float | None:
        return self.final_train_loss if self.final_epoch is not None else self.last_iteration_loss

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
            return f"no loss after {self.n_iterations} iterations"
        final = self.final_epoch
        which = f"mean over epoch {final.get('epoch', len(self.epochs) - 1) + 1}" if final is not None else "last iteration"
        last = f"; last iteration {fmt(self.last_iteration_loss)}" if final is not None else ""
        stopped = f"; {self.stop_reason}" if self.stop_reason else ""
        return f"final loss {fmt(self.final_loss)} ({which}{last}) after {self.n_iterations} iterations{stopped}"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "final_loss": self.final_loss,
            "final_train_loss": self.final_train_loss,
            "final_val_loss": self._last_epoch("val_loss"),
            "final_train_accuracy": self._last_epoch("train_accuracy"),
            "final_val_accuracy": self._last_epoch("val_accuracy"),
            "last_iteration_loss": self.last_iteration_loss,
            "iterations": self.n_iterations,
            "losses": self.losses,
            "loss_stride": self.loss_stride,
            "epochs": self.epochs,
            "epoch_stride": self.epoch_stride,
            "error": self.error,
            "overrides": self.overrides,
            "classes": self.classes,
            "stop_reason": self.stop_reason,
            "warning": self.warning,
        }


def _component_info(registry: Registry, kind: str, role: str, spec: Any) -> ComponentInfo:
    name = spec if isinstance(spec, str) else spec["name"]
    return ComponentInfo(kind, role, name, registry.source_of(kind, name))


def _build(registry: Registry, kind: str, spec: Mapping[str, Any], key: str) -> Any:
    name = spec["name"]
    chosen = owner(kind, name, key)
    try:
        return registry.resolve(kind, dict(spec))
    except ComponentError:
        raise  # names the component and its plugin already
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
                raise ConfigError(key=f"{key}.{param}", value=spec[param], problem=f"is invalid for {chosen}", valid=must.group(1)) from None
        if detail and params:
            # "needs low < high, got low=1e+308, high=0.05": each hyperparameter named by its key.
            words = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, params)) + r")(?![\w(])")
            raise ConfigError(f"{chosen}: {words.sub(lambda m: f'{key}.{m.group(1)}', detail)}") from None
        raise ConfigError(f"{chosen}{rest}") from None


def _check_size(config: RunConfig, dataset: Dataset, width: int) -> None:
    """What only the data's size decides, refused before any weight is allocated: a network
    that cannot fit into memory, more iterations than ``MAX_ITERATIONS``, and a trace of every
    iteration (``logger.trace``) that cannot fit into memory. Nothing else a run keeps grows
    with its length."""
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
    sizes = [dataset.n_features, *model.hidden, width]
    check_network_memory(sizes, batch_rows, itemsize, key=key, value=value)
    logger = config.logger
    if logger.get("name") != "none" and logger.get("trace") is True:
        check_trace_memory(sizes, epochs * per_epoch)


def _part(registry: Registry, kind: str, key: str, spec: Any) -> tuple[Part, Any]:
    """A fresh instance of the component ``spec`` names, with what the probe says about it."""
    name = spec if isinstance(spec, str) else spec["name"]
    source = registry.source_of(kind, name)
    return Part(kind, name, key, source), registry.resolve(kind, spec if isinstance(spec, str) else dict(spec))


def _dry_iteration(registry: Registry, config: RunConfig, network: Network, dataset: Dataset, y_train: np.ndarray) -> None:
    """Every component called once as training will call it (``probe.dry_iteration``), so that a
    plugin that breaks its interface is named before anything is written."""
    model = config.model
    layers = [
        *(_part(registry, "activation", "model.activation", model.activation) for _ in model.hidden),
        _part(registry, "activation", "model.output_activation", model.output_activation),
    ]
    X = np.asarray(dataset.X_train[:PROBE_ROWS], dtype=network.dtype)
    y = np.asarray(y_train[:PROBE_ROWS], dtype=network.dtype)
    with np.errstate(all="ignore"):
        dry_iteration(
            network.params,
            layers,
            _part(registry, "loss", "loss", config.loss.as_spec()),
            _part(registry, "optimizer", "optimizer", config.optimizer.as_spec()),
            X,
            y,
        )


def data_key(data: Mapping[str, Any]) -> str:
    """What decides a data set's arrays: every ``data`` key but the two that decide only the
    order the trainer takes them in."""
    return json.dumps({k: v for k, v in dict(data).items() if k not in ("batch_size", "shuffle")}, sort_keys=True, default=repr)


def prepare(cfg: Any, registry: Registry | None = None, *, loaded: dict[str, Dataset] | None = None) -> PreparedRun:
    """Validate ``cfg`` (a composed DictConfig or plain mapping) and build the run's objects.

    ``loaded``: data sets already loaded, by ``data_key``, shared with other runs prepared with
    the same dict (a sweep's check loads each distinct data set once); training only reads them."""
    registry = registry or get_registry()
    config = validate(cfg, registry)
    loss = _build(registry, "loss", config.loss.as_spec(), "loss")
    # Before the data are loaded: a loss that does not fit the output activation is a config error.
    check_output_activation(loss, config.model.output_activation, registry, loss_name=config.loss.name, cli=True)
    key = data_key(config.data) if loaded is not None else ""
    dataset = loaded.get(key) if loaded is not None else None
    if dataset is None:
        dataset = load_dataset(config.data, registry)
        if loaded is not None:
            loaded[key] = dataset
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
    schedule = _build(registry, "schedule", config.schedule.as_spec(), "schedule")
    try:
        usable_schedule(schedule, optimizer)
    except ConfigError as exc:
        raise ConfigError(f"schedule={config.schedule.name}: {exc}") from None
    callbacks = [_build(registry, spec.kind, spec.as_spec(), spec.key) for spec in config.callbacks]
    _check_monitors(dataset, loss, [("schedule", schedule), *((spec.key, cb) for spec, cb in zip(config.callbacks, callbacks))])
    y_train = encode(dataset, dataset.y_train, width)
    y_val = None if dataset.y_val is None else encode(dataset, dataset.y_val, width)
    _dry_iteration(registry, config, network, dataset, y_train)
    components = [
        _component_info(registry, "activation", "activation", model.activation),
        _component_info(registry, "activation", "output_activation", model.output_activation),
        _component_info(registry, "loss", "loss", config.loss.name),
        _component_info(registry, "optimizer", "optimizer", config.optimizer.name),
        _component_info(registry, "initializer", "initializer", config.initializer.name),
        _component_info(registry, "schedule", "schedule", config.schedule.name),
        *(_component_info(registry, spec.kind, spec.key, spec.name) for spec in config.callbacks),
    ]
    return PreparedRun(config, dataset, network, loss, optimizer, schedule, callbacks, y_train, y_val, components)


def _check_monitors(dataset: Dataset, loss: Any, built: Sequence[tuple[str, Any]]) -> None:
    """A schedule or callback that watches a number the run will not have (``monitor=val/loss``
    without a validation split, an accuracy under a loss that has none), refused before anything
    is tracked or trained."""
    for key, component in built:
        monitor = getattr(component, "monitor", None)
        if not isinstance(monitor, str):
            continue
        if monitor.startswith("val/") and dataset.y_val is None:
            problem, valid = "needs a validation split, which this run's data has none of", "auto, train/loss, or a split with data.val_fraction=0.2"
        elif monitor.endswith("/accuracy") and getattr(loss, "accuracy", None) is None:
            problem, valid = "needs an accuracy, which this run's loss does not compute", "auto, train/loss or val/loss"
        else:
            continue
        raise ConfigError(key=f"{key}.monitor", value=monitor, problem=problem, valid=valid)


# How a run is tracked: a context manager around training that yields a Callback (or None). The
# caller chooses it (the Hydra app picks MLflow or nothing from the logger node), so a configured
# run neither imports nor decides on a tracking backend.
TrackRun = Callable[[RunContext, Mapping[str, Any]], ContextManager[Any]]


@contextlib.contextmanager
def untracked(context: RunContext, logger: Any) -> Iterator[None]:  # noqa: ARG001 - TrackRun's signature
    yield None


def fit(prepared: PreparedRun, callbacks: Sequence[Any]) -> History:
    return _fit(prepared, prepared.trainer(callbacks))


def _fit(prepared: PreparedRun, trainer: Trainer, resume: Checkpoint | None = None) -> History:
    validation = None if prepared.y_val is None else (prepared.dataset.X_val, prepared.y_val)
    try:
        if resume is None:
            return trainer.fit(prepared.dataset.X_train, prepared.y_train, validation_data=validation)
        return trainer.fit(
            prepared.dataset.X_train, prepared.y_train, validation_data=validation, start=resume.position, history=resume.history(),
            callback_state=resume.callback_state,
        )
    except NonFiniteLossError as exc:
        if exc.at_fault is None:
            raise
        raise NonFiniteLossError(exc.loss, exc.epoch, exc.iteration, exc.at_fault, _part_at_fault(exc.at_fault, prepared)) from None
    except BackproplabError:
        raise
    except Exception as exc:
        # Raised inside training: named after the component whose code raised it, if one did.
        culprit = _component_raising(exc, prepared)
        if culprit is None:
            raise
        raise PluginError(
            f"{culprit} raised {exception_line(exc, with_type=True)} at epoch {trainer.epoch + 1}, iteration {trainer.iteration + 1}; "
            "fix the plugin or choose another component"
        ) from exc


def _part_at_fault(at_fault: tuple[str, int | None], prepared: PreparedRun) -> str | None:
    """``key=name (kind 'name' from <distribution>), layer k`` for the trainer's ``at_fault``."""
    kind, layer = at_fault
    if kind == "activation" and layer is not None:
        role = "output_activation" if layer == prepared.network.n_layers - 1 else "activation"
        where = f", layer {layer + 1},"
    else:
        role, where = kind, ""
    info = next((c for c in prepared.components if c.kind == kind and c.role == role), None)
    if info is None:
        return None
    key = f"model.{role}" if kind == "activation" else role
    return Part(kind, info.name, key, info.source).label() + where


def _component_raising(exc: BaseException, prepared: PreparedRun) -> str | None:
    """``key=name (kind 'name' from <distribution>)`` of the run's component whose module raised
    ``exc`` (the innermost such frame of its traceback); None when none did."""
    objects = [
        *(("activation", "model.activation", act) for act in prepared.network.activations[:-1]),
        ("activation", "model.output_activation", prepared.network.activations[-1]),
        ("loss", "loss", prepared.loss),
        ("optimizer", "optimizer", prepared.optimizer),
    ]
    by_module: dict[str, tuple[str, str, Any]] = {}
    for kind, key, obj in objects:
        by_module.setdefault(type(obj).__module__, (kind, key, obj))
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        found = by_module.get(frame.f_globals.get("__name__", ""))
        if found is None:
            continue
        kind, key, obj = found
        info = next((c for c in prepared.components if c.kind == kind and (c.role == key.rsplit(".", 1)[-1])), None)
        if info is None:
            return None
        return Part(kind, info.name, key, info.source).label()
    return None


# What a continued run may change: how it is tracked and how often it is checkpointed decide
# nothing it computes.
_MAY_DIFFER = ("hydra", "logger", "trainer.checkpoint_every_s")


def _first_difference(saved: Any, current: Any, key: str = "") -> str | None:
    """The first dotted key whose value differs between two configs, or None when equal."""
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        for name in sorted(set(saved) | set(current), key=str):
            if (f"{key}.{name}" if key else str(name)) in _MAY_DIFFER:
                continue
            found = _first_difference(saved.get(name), current.get(name), f"{key}.{name}" if key else str(name))
            if found is not None:
                return found
        return None
    return None if saved == current else key


def unfinished_checkpoint(output_dir: Path | str, config: Mapping[str, Any]) -> Checkpoint | None:
    """The checkpoint of an unfinished run in ``output_dir`` (a requeued job's, or one killed
    before), which a job started there continues; None when there is none or its run finished.
    A checkpoint of another config is refused: continuing it would mix two runs."""
    directory = Path(output_dir) / checkpoint_files.DIRECTORY
    record = checkpoint_files.read_record(directory)
    if record is None or record.get("finished") or record.get("failed"):
        return None
    saved = checkpoint_files.read(directory)
    if saved is None or saved.finished:
        return None
    differs = _first_difference(saved.config, config)
    if differs is not None:
        raise ConfigError(
            f"{directory} holds the checkpoint of an unfinished run whose {differs} differs from this run's; valid: the same "
            "config, to continue that run, or another output folder"
        )
    return saved


def continue_from(prepared: PreparedRun, resume: Checkpoint) -> None:
    """Put the checkpoint's parameters and optimizer state into the prepared run's objects."""
    checkpoint_files.restore_parameters(prepared.network.params, resume.params)
    try:
        load_optimizer_state(prepared.optimizer, resume.optimizer_state)
    except Exception as exc:  # noqa: BLE001 - a plugin's own refusal: one line naming the optimizer
        raise ConfigError(f"optimizer={prepared.config.optimizer.name} cannot take the checkpoint's state: {exc}") from None


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
    output_dir: Path | str | None = None,
    resume: Checkpoint | None = None,
) -> tuple[RunResult, History]:
    """Prepare, then train inside ``track`` (for MLflow, ``backproplab.tracking.track_run``, which
    records FINISHED/FAILED/KILLED and re-raises).

    ``label`` prefixes the progress lines of a multirun job. ``prepared``: ``cfg`` already
    prepared (by the command's up-front check), so its data are not loaded twice.

    ``output_dir``: the job's output folder, where its checkpoint is kept (``checkpoint/``); an
    unfinished run's checkpoint found there is continued, in the same MLflow run (not one of a run
    that failed with an error: that one starts afresh). ``resume``: a
    checkpoint to continue (``backproplab runs resume``)."""
    prepared = prepared or prepare(cfg, registry)
    if resume is None and output_dir is not None:
        resume = unfinished_checkpoint(output_dir, prepared.config.resolved)
    if resume is not None:
        continue_from(prepared, resume)
    context = prepared.context(overrides, job_num=job_num, launch_dir=launch_dir, resume=resume)
    progress = make_progress(prepared.config.trainer.epochs, prepared.iterations_per_epoch, multirun=multirun, label=label)
    trainer: Trainer | None = None
    checkpointer: Checkpointer | None = None
    try:
        with track(context, prepared.config.logger) as tracker:
            if output_dir is not None:
                checkpointer = Checkpointer(
                    Path(output_dir) / checkpoint_files.DIRECTORY,
                    every_s=prepared.config.trainer.checkpoint_every_s,
                    config=prepared.config.resolved,
                    run_id=getattr(tracker, "run_id", None),
                    resumed_from=context.resumed_from,
                    overrides=overrides,
                    job_num=job_num,
                    launch_dir=launch_dir,
                    before_save=getattr(tracker, "flush_and_wait", None),
                    after_save=getattr(tracker, "publish_checkpoint", None),
                )
            # The checkpointer first: a save or stop it makes precedes the iteration the others see.
            trainer = prepared.trainer([cb for cb in (checkpointer, tracker, progress) if cb is not None])
            try:
                history = _fit(prepared, trainer, resume)
            finally:
                if checkpointer is not None:
                    checkpointer.close()
        if checkpointer is not None:
            checkpointer.finish()
    except BaseException as exc:
        # What was trained before the failure (a full disk, a non-finite loss) goes into the
        # failed run's result.json with the error; see ``failed_result``.
        exc.backproplab_history = trainer.history if trainer is not None else None  # type: ignore[attr-defined]
        if checkpointer is not None and not isinstance(exc, KeyboardInterrupt):
            checkpointer.failed(exc)  # an error would meet the resumed run again: not to be continued
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
    return RunResult(
        "ok",
        list(history.losses),
        epochs,
        None,
        list(overrides),
        None if classes is None else list(classes),
        iterations=history.iterations,
        last_loss=history.last_loss,
        last_epoch=None if history.last_epoch is None else dict(vars(history.last_epoch)),
        loss_stride=history.loss_stride,
        epoch_stride=history.epoch_stride,
        stop_reason=history.stop_reason,
    )


def failed_result(exc: BaseException, error: str, overrides: Sequence[str] = ()) -> RunResult:
    """The result of a run that raised ``exc``: the error, and the iterations and epochs it had
    completed (``run`` leaves them on the exception), so that result.json agrees with the store."""
    history = getattr(exc, "backproplab_history", None)
    if history is None:
        return RunResult("failed", error=error, overrides=list(overrides))
    partial = result_of(history, overrides)
    partial.status, partial.error = "failed", error
    return partial
