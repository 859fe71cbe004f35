"""Which jobs of a multirun failed, so the command can exit non-zero after the whole sweep ran.

A failed job must not stop the sweep, so the task function returns instead of raising. Its
``result.json`` records the failure; this Hydra callback runs in the launching process after
every job (basic or joblib launcher) and collects those records for ``backproplab.cli.main``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

RESULT_FILE = "result.json"

# (job output dir, error line) of the last multirun in this process.
failures: list[tuple[str, str]] = []
finished = False
_started = 0.0


def collect(sweep_dir: Path, since: float = 0.0) -> list[tuple[str, str]]:
    """Failed jobs under ``sweep_dir``; results older than ``since`` belong to an earlier sweep."""
    found = []
    for path in sorted(sweep_dir.glob(f"**/{RESULT_FILE}")):
        if path.stat().st_mtime < since:
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("status") != "ok":
            found.append((str(path.parent), str(record.get("error"))))
    return found


class SweepStatusCallback(Callback):
    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        global finished, _started
        failures.clear()
        finished = False
        _started = time.time() - 1.0  # file systems with coarse mtimes

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        global finished
        failures[:] = collect(Path(config.hydra.sweep.dir), _started)
        finished = True
