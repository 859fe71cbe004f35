"""A value fitted into one of MLflow's length limits: cut with a marker, never refused.

A long value (a config path, an override list, a failure reason) must never fail a run or lose
what the store could hold, so whatever would exceed a limit keeps its head and ends with
``TRUNCATION_MARK``. The limits themselves are MLflow's (``mlflow_private``); this is how every
writer fits a value into them: params, tags, descriptions and the spool's tags alike.
"""

TRUNCATION_MARK = "...[truncated]"


def truncate(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return value[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK
