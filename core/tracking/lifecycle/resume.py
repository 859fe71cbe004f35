"""``backproplab runs resume RUN_ID``: continue a stopped run from its checkpoint, in the same
MLflow run, to its configured end.

The run is found in the store and judged first:

- KILLED (Ctrl-C, SIGTERM, a preemption; or ``runs reap`` after a ``kill -9``): resumed;
- FAILED by a signal (its ``failure_reason`` names one): resumed;
- RUNNING whose process is gone, judged as ``runs reap`` judges it (its host is this one and
  its process no longer exists): resumed, without reaping it first;
- FINISHED, RUNNING with a live process (or on another host), FAILED by an error, or a run
  without a checkpoint: one line, exit 2, and nothing is touched.

The checkpoint is the run's ``checkpoint/`` artifacts, so this works from any machine that
reaches the store; a newer one in the run's own output folder (a ``kill -9`` between writing
the folder's copy and uploading it) is preferred when that folder is on this machine. The run
continues in its output folder when that exists here, else in ``outputs/resumed/<RUN_ID>``,
from the folder it was launched in when that exists here (relative data paths mean the same).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from backproplab.errors import BackproplabError, ConfigError
from backproplab.run import checkpoint as checkpoint_files
from backproplab.run.checkpoint import Checkpoint
from backproplab.run.stopping import describe_signal, exit_code, signal_of
from .continuation import ARTIFACT_DIR
from ..records.tags import HOST_TAG, PID_START_TAG, PID_TAG, one_line

RESULT_FILE = "result.json"
# A failure_reason that says a signal ended the run, not an error in it.
_BY_SIGNAL = re.compile(r"\b(SIG[A-Z0-9]+|Ctrl-C|interrupted|killed)\b", re.IGNORECASE)


def _refuse(run_id: str, why: str) -> ConfigError:
    return ConfigError(f"run {run_id} cannot be resumed: {why}")


# (pid, the process's recorded start) -> "alive" or "gone": ``runs reap``'s judgement.
ProcessState = Callable[[int, "str | None"], str]


def judge(run: Any, process_state: ProcessState) -> None:
    """Nothing when ``run`` may be resumed; else the ConfigError that says why not."""
    run_id, status, tags = run.info.run_id, run.info.status, run.data.tags
    if status == "FINISHED":
        raise _refuse(run_id, "it is FINISHED; valid: a KILLED run, a run FAILED by a signal, or a RUNNING run whose process is gone")
    if status == "FAILED":
        reason = tags.get("failure_reason", "")
        if not _BY_SIGNAL.search(reason):
            raise _refuse(run_id, f"it FAILED with an error ({reason or 'no reason recorded'}), not by a signal; resuming would meet it again")
        return
    if status == "RUNNING":
        pid_text, host = tags.get(PID_TAG, ""), tags.get(HOST_TAG)
        here = socket.gethostname()
        if not pid_text.isdigit() or not host:
            raise _refuse(run_id, f"it is RUNNING without {PID_TAG}/{HOST_TAG} tags, so whether its process lives cannot be told")
        if host != here:
            raise _refuse(run_id, f"it is RUNNING on {host}, another host (this is {here}); run this there, or after `backproplab runs reap` there")
        if process_state(int(pid_text), tags.get(PID_START_TAG)) == "alive":
            raise _refuse(run_id, f"it is RUNNING and its process {pid_text} on {here} is still alive; stop it first (kill -TERM {pid_text} writes a checkpoint)")
        return
    if status != "KILLED":
        raise _refuse(run_id, f"it is {status}; valid: KILLED, FAILED by a signal, or RUNNING with a dead process")


def _local_newer(saved: Checkpoint, run_id: str) -> Checkpoint:
    """The run's own output folder's checkpoint when it is on this machine and newer."""
    if not saved.output_dir:
        return saved
    try:
        local = checkpoint_files.read(Path(saved.output_dir) / checkpoint_files.DIRECTORY)
    except ConfigError:
        return saved
    if local is not None and local.run_id == run_id and local.iteration > saved.iteration:
        return local
    return saved


def find_checkpoint(client: Any, run_id: str) -> Checkpoint:
    """The run's checkpoint, from its ``checkpoint/`` artifacts; a ConfigError when it has none."""
    with tempfile.TemporaryDirectory(prefix="backproplab-resume-") as tmp:
        try:
            # Two small files: MLflow's progress bar would be the only multi-line output.
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            folder = Path(client.download_artifacts(run_id, ARTIFACT_DIR, tmp))
            saved = checkpoint_files.read(folder)
        except ConfigError:
            raise
        except Exception:  # noqa: BLE001 - no such artifacts: said below in one line
            saved = None
    if saved is None:
        raise _refuse(run_id, f"it has no checkpoint (no {ARTIFACT_DIR}/{checkpoint_files.STATE_JSON} among its artifacts)")
    if saved.run_id != run_id:
        raise _refuse(run_id, f"its checkpoint belongs to run {saved.run_id}")
    return _local_newer(saved, run_id)


def _output_dir(saved: Checkpoint, run_id: str) -> Path:
    if saved.output_dir and Path(saved.output_dir).is_dir():
        return Path(saved.output_dir)
    return Path.cwd() / "outputs" / "resumed" / run_id


def _write_result(output_dir: Path, record: dict[str, Any], job_num: int | None) -> None:
    path = output_dir / RESULT_FILE
    if job_num is not None:  # a sweep's job: keep what the sweep reads it by
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            earlier = {}
        record["job"] = job_num
        record["sweep_id"] = earlier.get("sweep_id")
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def resume(run_id: str, client: Any, uri: str, process_state: ProcessState, out: Any = None) -> int:
    """Continue run ``run_id`` of the store at ``uri`` (``client``) to its configured end; the
    command's exit code. ``process_state`` judges a RUNNING run's process as ``runs reap`` does."""
    from backproplab.run import job

    from .run import track_run
    from ..transport.spool import bounded_http
    from ..transport.reachability import is_http

    out = out or sys.stdout
    with bounded_http(is_http(uri)):
        try:
            run = client.get_run(run_id)
        except Exception as exc:  # noqa: BLE001 - one line: no such run in this store
            raise ConfigError(f"run {run_id!r} is not in {uri} ({one_line(exc)[:160]}); valid: a run id of that store, or --tracking-uri of the store it was logged to") from None
        judge(run, process_state)
        saved = find_checkpoint(client, run_id)
    config = dict(saved.config)
    config["logger"] = {**(config.get("logger") or {}), "tracking_uri": uri}
    if saved.launch_dir and Path(saved.launch_dir).is_dir():
        os.chdir(saved.launch_dir)
    output_dir = _output_dir(saved, run_id)
    total = (config.get("trainer") or {}).get("epochs")
    print(
        f"resuming run {run_id} ({run.info.status}) from its checkpoint after {saved.iteration} iterations "
        f"({saved.epochs_completed} of {total} epochs done); output in {output_dir}",
        file=out,
        flush=True,
    )
    try:
        result, _ = job.run(
            config,
            saved.overrides,
            track=track_run,
            job_num=saved.job_num,
            launch_dir=saved.launch_dir,
            output_dir=output_dir,
            resume=saved,
        )
    except KeyboardInterrupt as exc:
        print(f"interrupted ({describe_signal(signal_of(exc))}); resume it again with: backproplab runs resume {run_id}", file=sys.stderr, flush=True)
        return exit_code(exc)
    except BackproplabError as exc:
        if isinstance(exc, ConfigError):
            raise
        _write_result(output_dir, job.failed_result(exc, one_line(exc), saved.overrides).to_json(), saved.job_num)
        print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
        return 1
    _write_result(output_dir, result.to_json(), saved.job_num)
    print(f"resumed run {run_id} to its end: {result.summary()}", file=out, flush=True)
    return 0
