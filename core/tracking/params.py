"""The resolved config as MLflow params: dotted keys, string values, within MLflow's limits.

Lists stay one param (``model.hidden`` = ``[8, 8]``) because that is how users type and sweep
them; only mappings are flattened. Values longer than MLflow's limit are cut with a marker
rather than rejected, since a long value must never fail the run.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

from mlflow.entities import Param
from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

TRUNCATION_MARK = "...[truncated]"


def _format(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)  # null / true / 0.5: the YAML spelling users typed
    try:
        return json.dumps(value, default=str, separators=(", ", ": "))
    except (TypeError, ValueError):
        return str(value)


def truncate(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return value[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"optimizer": {"lr": 0.5}}`` -> ``{"optimizer.lr": "0.5"}``; empty mappings become ``{}``."""
    out: dict[str, str] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[truncate(dotted, MAX_ENTITY_KEY_LENGTH)] = truncate(_format(value), MAX_PARAM_VAL_LENGTH)
    return out


def param_batches(params: Mapping[str, str], size: int = MAX_PARAMS_TAGS_PER_BATCH) -> Iterator[list[Param]]:
    items = [Param(k, v) for k, v in sorted(params.items())]
    for start in range(0, len(items), size):
        yield items[start : start + size]


def log_params(client: Any, run_id: str, config: Mapping[str, Any]) -> dict[str, str]:
    params = flatten(config)
    for batch in param_batches(params):
        client.log_batch(run_id, params=batch, synchronous=True)
    return params
