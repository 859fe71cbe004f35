"""A run's description (the tag ``mlflow.note.content``, the run page's "Description"): what the
run is and how it ended, in Markdown, so a reviewer reads the answer without opening charts.

Written once, when the run ends, for single runs and sweep children alike:

    **moons** (160 training, 40 validation examples): network 2-8-8-1 (tanh; output sigmoid),
    loss bce, optimizer sgd (lr 0.5), batch size 32, 100 epochs.

    **FINISHED** after 100 epochs (500 iterations): train loss 0.0312, val loss 0.0451,
    train accuracy 0.994, val accuracy 0.975.

A FAILED or KILLED run says why and where: the reason, the epoch and the iteration.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from backproplab.numerics.trainer import EpochSummary, Step
from backproplab.run.context import RunContext

NOTE_TAG = "mlflow.note.content"


def _number(value: float) -> str:
    return f"{value:.4g}"


def _component(config: Mapping[str, Any], key: str) -> str:
    """``sgd (lr 0.5)`` from ``{"name": "sgd", "lr": 0.5}``; a bare name stays as it is."""
    spec = config.get(key)
    if not isinstance(spec, Mapping):
        return str(spec)
    # Zero and false are the options left off (momentum 0, nesterov false): only what was set.
    extra = ", ".join(f"{k} {v}" for k, v in spec.items() if k != "name" and v is not None and v is not False and v != 0)
    return f"{spec.get('name')} ({extra})" if extra else str(spec.get("name"))


def what(context: RunContext, data_name: str) -> str:
    config = context.config
    model = config.get("model") or {}
    data = config.get("data") or {}
    trainer = config.get("trainer") or {}
    sizes = getattr(context.network, "sizes", None)
    network = "-".join(str(s) for s in sizes) if sizes else f"hidden {model.get('hidden')}"
    examples = f"{context.n_train} training"
    if context.n_val:
        examples += f", {context.n_val} validation"
    activation = f"{model.get('activation')}; output {model.get('output_activation')}"
    parts = [
        f"**{data_name}** ({examples} examples): network {network} ({activation})",
        f"loss {_component(config, 'loss')}",
        f"optimizer {_component(config, 'optimizer')}",
        f"batch size {data.get('batch_size')}",
        f"{trainer.get('epochs', context.epochs)} epochs",
    ]
    return ", ".join(parts) + "."


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
    return f"after {len(epochs)} epochs ({last.iterations} iterations): " + ", ".join(numbers)


def position(step: Step | None) -> str:
    """``epoch E, iteration I`` (counted from 1, as the console counts), or that none ran."""
    if step is None:
        return "before the first iteration"
    return f"at epoch {step.epoch + 1}, iteration {step.iteration + 1}"


def describe(
    context: RunContext,
    data_name: str,
    status: str,
    reason: str | None,
    epochs: Sequence[EpochSummary],
    last_step: Step | None,
) -> str:
    lines = [what(context, data_name), ""]
    if status == "FINISHED":
        lines.append(f"**FINISHED** {final_numbers(epochs)}.")
    else:
        where, reason = position(last_step), reason or "no reason recorded"
        # A KILLED run's reason already says where; a FAILED one's is the exception alone.
        lines.append(f"**{status}**: {reason}." if where in reason else f"**{status}** {where}: {reason}.")
        lines.append("")
        lines.append(f"Completed before it stopped: {final_numbers(epochs)}.")
    return "\n".join(lines)
