"""A run's description (the tag ``mlflow.note.content``, the run page's "Description"): what the
run is and how it ended, in Markdown, so a reviewer reads the answer without opening charts.

Written once, when the run ends, for single runs and sweep children alike:

    **moons** (160 training, 40 validation examples): network 2-8-8-1 (tanh; output sigmoid),
    loss bce, optimizer sgd (lr 0.5), batch size 32, 100 epochs.

    **FINISHED** after 100 epochs (500 iterations): train loss 0.0312, val loss 0.0451,
    train accuracy 0.994, val accuracy 0.975.

A FAILED or KILLED run says why and where: the reason, the epoch and the iteration. A FINISHED
run that learned little or nothing (chance-level accuracy, a loss that did not fall; see
``backproplab.run.verdict``) says so in a paragraph of its own, with what to try instead:

    **Learned little or nothing:** val accuracy 0.5 is chance level (...). A data= choice alone
    keeps the worked example's small sigmoid network ...; try experiment=moons, or ...

Runs that no live process could describe get theirs later, from what the store holds
(``stored``): a run reaped by ``backproplab runs reap`` (its process was killed outright), and a
run whose tracking server was lost at its end, when ``backproplab runs replay`` writes its spool
(the spool carries the description the run wrote for itself, ``spooled``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from backproplab.numerics.trainer import EpochSummary, Step
from backproplab.run import verdict
from backproplab.run.context import RunContext

NOTE_TAG = "mlflow.note.content"
# MLflow 3's UI opens a page in the mode the browser remembers (GenAI until the user picks
# "Model training"); this query on a link opens it in Model training mode, where a run page's
# breadcrumb, tabs and sidebar are those of a training run (README "Dashboard").
MODEL_TRAINING_QUERY = "workflowType=machine_learning"


# Where `mlflow ui` serves by default: the page of a run in a local store is there once it runs.
LOCAL_UI = "http://127.0.0.1:5000"


def run_page(base: str, experiment_id: str, run_id: str) -> str:
    """The address of a run's page on the UI at ``base``, in Model training mode."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_QUERY}"


def how_to_open(uri: str, experiment_id: str, run_id: str) -> str:
    """How a reader opens a run's page: a server at its own address; a local store (sqlite, a
    database) needs ``mlflow ui`` started on it first. The console's last ``mlflow:`` line, for
    a single run and a sweep's parent alike."""
    from ..transport.reachability import is_http

    if is_http(uri):
        return f"open {run_page(uri, experiment_id, run_id)}"
    return f"mlflow ui --backend-store-uri {uri}   then open {run_page(LOCAL_UI, experiment_id, run_id)}"


def set_note(client: Any, run_id: str, text: str) -> None:
    """``text`` as the run's description, cut to what a tag holds."""
    from ..mlflow_private import MAX_TAG_VAL_LENGTH  # mlflow only when a note is written

    from ..transport.limits import truncate

    client.set_tag(run_id, NOTE_TAG, truncate(text, MAX_TAG_VAL_LENGTH))


def _number(value: float) -> str:
    return f"{value:.4g}"


def _component(config: Mapping[str, Any], key: str) -> str:
    """``sgd (lr 0.5)`` from ``{"name": "sgd", "lr": 0.5}``; a bare name stays as it is."""
    return _spec_text(config.get(key))


def _spec_text(spec: Any) -> str:
    if not isinstance(spec, Mapping):
        return str(spec)
    # Zero and false are the options left off (momentum 0, nesterov false): only what was set.
    extra = ", ".join(f"{k} {v}" for k, v in spec.items() if k != "name" and v is not None and v is not False and v != 0)
    return f"{spec.get('name')} ({extra})" if extra else str(spec.get("name"))


def what(context: RunContext, data_name: str) -> str:
    model = context.config.get("model") or {}
    sizes = getattr(context.network, "sizes", None)
    network = "-".join(str(s) for s in sizes) if sizes else f"hidden {model.get('hidden')}"
    examples = f"{context.n_train} training"
    if context.n_val:
        examples += f", {context.n_val} validation"
    return _what(context.config, data_name, network, f" ({examples} examples)", context.epochs)


def _what(config: Mapping[str, Any], data_name: str, network: str, examples: str, epochs: Any) -> str:
    model = config.get("model") or {}
    data = config.get("data") or {}
    trainer = config.get("trainer") or {}
    activation = f"{model.get('activation')}; output {model.get('output_activation')}"
    parts = [
        f"**{data_name}**{examples}: network {network} ({activation})",
        f"loss {_component(config, 'loss')}",
        f"optimizer {_component(config, 'optimizer')}",
        *_schedule_and_callbacks(config),
        f"batch size {data.get('batch_size')}",
        f"{trainer.get('epochs', epochs)} epochs",
    ]
    return ", ".join(parts) + "."


def _schedule_and_callbacks(config: Mapping[str, Any]) -> list[str]:
    """``schedule step (step_size 2, gamma 0.5)`` unless the rate is constant, and the callbacks."""
    parts = []
    schedule = config.get("schedule")
    if isinstance(schedule, Mapping) and schedule.get("name") not in (None, "constant"):
        parts.append(f"schedule {_component(config, 'schedule')}")
    callbacks = config.get("callbacks")
    if isinstance(callbacks, Mapping) and callbacks:
        parts.append("callbacks " + ", ".join(_spec_text({"name": key, **node}) for key, node in callbacks.items() if isinstance(node, Mapping)))
    return parts


def final_numbers(epochs: Sequence[EpochSummary]) -> str:
    if not epochs:
        return "no epoch completed"
    last = epochs[-1]
    numbers = [f"train loss {_number(last.train_loss)}"]
    if last.val_loss is not None:
        numbers.append(f"val loss {_number(last.val_loss)}")
    if last.train_accuracy is not None:
        numbers.append(f"train accuracy {_number(last.train_accuracy)}")
    if last.val_accuracy is not None:
        numbers.append(f"val accuracy {_number(last.val_accuracy)}")
    return f"after {last.epoch + 1} epochs ({last.iterations} iterations): " + ", ".join(numbers)


def position(step: Step | None) -> str:
    """``epoch E, iteration I`` (counted from 1, as the console counts), or that none ran."""
    if step is None:
        return "before the first iteration"
    return f"at epoch {step.epoch + 1}, iteration {step.iteration + 1}"


def learning_note(context: RunContext, epochs: Sequence[EpochSummary], first_loss: float | None) -> str | None:
    """The paragraph of a run that learned little or nothing; None when it learned."""
    learned = verdict.judge(first_loss, epochs, context.dataset, context.config)
    if learned is None:
        return None
    return f"**Learned little or nothing:** {'; '.join(learned.signs)}. {learned.hint}."


def describe(
    context: RunContext,
    data_name: str,
    status: str,
    reason: str | None,
    epochs: Sequence[EpochSummary],
    last_step: Step | None,
    stop_reason: str | None = None,
    first_loss: float | None = None,
    *,
    resumed_from: Sequence[int] = (),
) -> str:
    """``first_loss``: the first iteration's loss, where the verdict on learning starts."""
    lines = [what(context, data_name), ""]
    if resumed_from:
        times = "once" if len(resumed_from) == 1 else f"{len(resumed_from)} times"
        steps = ", ".join(str(i) for i in resumed_from)
        where = "step" if len(resumed_from) == 1 else "steps"
        lines += [f"**Resumed** {times} from its checkpoint, at {where} {steps} (the iterations completed before each resume).", ""]
    if status == "FINISHED":
        lines.append(f"**FINISHED** {final_numbers(epochs)}.")
        if stop_reason:  # a callback ended training before its epochs: early stopping
            lines += ["", f"Training {stop_reason}."]
        note = learning_note(context, epochs, first_loss)
        if note is not None:
            lines += ["", note]
    else:
        where, reason = position(last_step), reason or "no reason recorded"
        # A KILLED run's reason already says where; a FAILED one's is the exception alone.
        lines.append(f"**{status}**: {reason}." if where in reason else f"**{status}** {where}: {reason}.")
        lines.append("")
        lines.append(f"Completed before it stopped: {final_numbers(epochs)}.")
    return "\n".join(lines)


# -- descriptions written after the run's process is gone -------------------------------------
def _plain(text: str) -> Any:
    """A param's stored text as the config value it was (params are strings in MLflow)."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _config_of(params: Mapping[str, str]) -> dict[str, Any]:
    """``{"optimizer": {"name": "sgd", "lr": 0.5}, ...}`` from the dotted params ``optimizer.lr``."""
    config: dict[str, Any] = {}
    for key, value in params.items():
        group, _, name = key.partition(".")
        if name:
            node = config.setdefault(group, {})
            if isinstance(node, dict):
                node[name] = _plain(value)
        else:
            config.setdefault(key, _plain(value))
    return config


def stored_what(run: Any) -> str | None:
    """What the run is, from its stored params (the network's input and output sizes are not
    among them: its hidden layers are); None for a run without backproplab's params (a sweep
    parent, a run made by other code)."""
    config = _config_of(run.data.params)
    data, model = config.get("data"), config.get("model")
    if not isinstance(data, dict) or not isinstance(model, dict) or "name" not in data:
        return None
    name = str(data["name"])
    if name == "csv" and data.get("path"):
        name = str(data["path"]).replace("\\", "/").rsplit("/", 1)[-1]
    return _what(config, name, f"hidden {model.get('hidden')}", "", "?")


def stored_numbers(run: Any) -> str | None:
    """The run's last flushed per-epoch numbers (or its final ones, when it got that far), with
    the epochs completed; None when no epoch's numbers reached the store."""
    metrics = run.data.metrics
    final = {k: metrics.get(f"final/{k}") for k in ("train_loss", "val_loss", "train_accuracy", "val_accuracy")}
    epoch = {k: metrics.get(f"{k.split('_')[0]}/{k.split('_')[1]}") for k in final}
    values = final if final["train_loss"] is not None else epoch
    if values["train_loss"] is None:
        return None
    numbers = ", ".join(f"{k.replace('_', ' ')} {_number(v)}" for k, v in values.items() if v is not None)
    done = metrics.get("epoch")
    when = "" if done is None else f" ({done:.4g} epochs completed at the last flushed iteration)"
    which = "final numbers" if values is final else "last logged epoch"
    return f"{which}{when}: {numbers}"


def stored(run: Any, status: str, reason: str | None, how: str) -> str:
    """The description of a run ended by ``how`` (``backproplab runs reap``, ...) from what the
    store holds: what the run is, how it ended and why, and the last numbers it flushed."""
    lines = []
    about = stored_what(run)
    if about is not None:
        lines += [about, ""]
    elif run.data.tags.get("backproplab.sweep") == "true":
        lines += ["**Sweep parent**: its child runs are listed under it.", ""]
    lines.append(f"**{status}**: {reason or 'no reason recorded'}.")
    lines.append("")
    numbers = stored_numbers(run)
    lines.append(f"Ended by {how}; " + (f"its {numbers}." if numbers else "no epoch's numbers reached the store."))
    return "\n".join(lines)


def spooled(note: str, spool_file: str) -> str:
    """A spooled run's own description, with how it reached the store."""
    return f"{note}\n\nWritten to the store later by `backproplab runs replay {spool_file}`: its tracking server was lost."
