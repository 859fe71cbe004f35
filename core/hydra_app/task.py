"""The Hydra application behind ``backproplab``: compose, run one job, record its result.

Importing this module stores the generated config nodes (components, experiments) in Hydra's
ConfigStore. That must happen at import, not in ``main``: the joblib launcher composes each
job's config inside a worker process, which only imports the module of the task function.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from backproplab.run import job as app
from . import preflight
from .config_store import register_configs
from .error_report import describe, one_line_warnings, tracebacks_wanted
from .sweep_status import RESULT_FILE, SWEEP_ID_ENV

register_configs()

# The exception of the last single run, handed to the CLI. Raising it through Hydra instead would
# make Hydra log its own "Error executing job" line before ours.
last_error: BaseException | None = None


def _write_result(out_dir: Path, record: dict[str, Any], hc: Any) -> None:
    if hc.mode == RunMode.MULTIRUN:  # what the launching process reads the job's outcome by
        record["job"] = int(hc.job.num)
        record["sweep_id"] = os.environ.get(SWEEP_ID_ENV)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULT_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def tracker_for(logger: Any) -> app.TrackRun:
    """MLflow unless ``logger=none``. Imported only for a tracked run: mlflow costs about a second
    of start-up, which logger=none, explain and compose should not pay."""
    if logger is None or logger.get("name") == "none":
        return app.untracked
    from backproplab.tracking import track_run

    return track_run


def task(cfg: DictConfig) -> dict[str, Any]:
    """One job. A single run hands its failure to the CLI (one line, non-zero exit); a multirun
    job prints it and returns, so the sweep carries on with the next job."""
    global last_error
    last_error = None
    one_line_warnings()  # a joblib worker process never ran the CLI's main()
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    overrides = list(hc.overrides.task)
    out_dir = Path(hc.runtime.output_dir)
    label = f"[{' '.join(overrides)}] " if multirun and overrides else ""
    try:
        # Python shows a warning once per code location per process; a fresh filter state per
        # job gives every job of a multirun its own warnings (e.g. the batch_size clamp).
        with warnings.catch_warnings():
            warnings.simplefilter("default", UserWarning)
            result, _ = app.run(
                cfg,
                overrides,
                prepared=None if multirun else preflight.take_prepared(cfg),
                track=tracker_for(cfg.logger),
                multirun=multirun,
                label=label,
                job_num=hc.job.num if multirun else None,
                launch_dir=hc.runtime.cwd,
            )
    except Exception as exc:
        line, _code = describe(exc)
        record = app.failed_result(exc, line.removeprefix("error: "), overrides).to_json()
        _write_result(out_dir, record, hc)
        if not multirun:
            last_error = exc
            return record
        if tracebacks_wanted():
            traceback.print_exc()
        print(f"{label}job failed: {record['error']}", file=sys.stderr, flush=True)
        return record
    record = result.to_json()
    _write_result(out_dir, record, hc)
    print(f"{label}{result.summary()}", flush=True)
    return record


main = hydra.main(config_path="pkg://backproplab.conf", config_name="config", version_base="1.3")(task)
