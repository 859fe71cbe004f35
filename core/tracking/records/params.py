"""The resolved config as MLflow params: dotted keys, string values, within MLflow's limits.

Lists stay one param (``model.hidden`` = ``[8, 8]``) because that is how users type and sweep
them; only mappings are flattened. Values longer than MLflow's limit are cut with a marker
rather than rejected, since a long value must never fail the run.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

from mlflow.entities import Param

from ..mlflow_private import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

from ..transport.credentials import redact
from ..transport.limits import truncate


def _format(value: Any) -> str:
    # A password or token in a URI (a config file's, say) is never a param: see ``credentials``.
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)  # null / true / 0.5: the YAML spelling users typed
    try:
        return json.dumps(value, default=str, separators=(", ", ": "))
    except (TypeError, ValueError):
        return str(value)


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


# How the run was tracked is not what was trained: one tag (``backproplab.logger``), not a dozen
# params that would crowd the runs table and the compare view.
TRACKING_SECTION = "logger"


def run_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The params of a run: the config flattened, without the tracking settings and without the
    keys whose value is null (unset options, whose literal "null" only cluttered the table;
    config.yaml keeps the whole config)."""
    trained = {k: v for k, v in config.items() if k != TRACKING_SECTION}
    return {k: v for k, v in flatten(_drop_nulls(trained)).items()}


def _drop_nulls(config: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if value is None:
            continue
        out[key] = _drop_nulls(value) if isinstance(value, Mapping) and value else value
    return out


def tracking_tag(config: Mapping[str, Any]) -> str | None:
    """The ``logger`` section as one compact JSON value, or None when the config has none."""
    section = config.get(TRACKING_SECTION)
    if not isinstance(section, Mapping):
        return None
    return redact(json.dumps(section, default=str, separators=(",", ":"), sort_keys=True))


def log_params(client: Any, run_id: str, config: Mapping[str, Any]) -> dict[str, str]:
    params = run_params(config)
    for batch in param_batches(params):
        client.log_batch(run_id, params=batch, synchronous=True)
    return params
