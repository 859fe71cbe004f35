"""``backproplab runs``: repairs a store after a fault that no process was left to handle.

* ``runs reap`` ends runs left RUNNING by a process that is gone (``kill -9``, the OOM killer,
  a lost machine): such a process could not set a status, so MLflow shows it RUNNING forever.
  A run is reaped only when its ``backproplab.host`` is this host and the process named by
  ``backproplab.pid`` (and ``backproplab.pid_start``, so a reused PID is not mistaken for it) no
  longer exists; runs of other hosts are listed, never touched.
* ``runs replay SPOOL`` writes what a run spooled while its tracking server was gone (metrics
  with their original steps and timestamps, then the artifacts and the final status) and
  removes the spool.

Both give the run a description (``mlflow.note.content``) saying what happened, as a run that
ended in its own process has one.

* ``runs register NAME [--run RUN_ID]`` puts a run's model into the Model Registry as a new
  version of ``NAME``: the best child of a sweep (``--run`` the parent's id, or by default the
  experiment's latest sweep), or the run ``--run`` names.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path
from typing import Any, Sequence

from backproplab.errors import ConfigError
from ..records.description import set_note, spooled, stored
from ..transport.credentials import redact, reveal, take_uri
from ..transport.reachability import UriOption, check_http, check_sqlite, default_uri, is_http
from ..records.tags import HOST_TAG, PID_START_TAG, PID_TAG, process_start

EXIT_CONFIG = 2
FAILURE_TAG = "failure_reason"
# A store named on the command line of ``backproplab runs``: errors advise this option.
REPAIR_OPTION = UriOption("--tracking-uri", "give --tracking-uri the store the runs were logged to")


def _last_logged(run: Any) -> str:
    """" after epoch E" from the run's last stored ``epoch`` (epochs completed), when it has one:
    a run killed outright cannot say where it stopped, but its last flushed metrics can."""
    epochs = run.data.metrics.get("epoch")
    if epochs is None:
        return ""
    whole = int(epochs)
    into = "" if whole == epochs else f", in epoch {whole + 1}"
    return f" after {epochs:.4g} epochs completed{into} (the last metrics it flushed)"

def _client(uri: str | None) -> tuple[Any, str]:
    """A client for ``uri`` (backproplab's default when None) that must already hold a store; the
    URI's credentials moved where MLflow reads them (``credentials.take_uri``)."""
    from urllib.parse import urlparse

    from mlflow import MlflowClient

    uri = reveal(take_uri(REPAIR_OPTION.key, uri or default_uri(None)))
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        check_http(uri, REPAIR_OPTION)
    elif scheme == "sqlite":
        check_sqlite(uri, option=REPAIR_OPTION)
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else urlparse(uri).path
        if path and path != ":memory:" and not Path(path).exists():
            raise ConfigError(f"--tracking-uri {uri}: there is no store at {path}; valid: the URI runs were logged to")
    return MlflowClient(tracking_uri=uri), uri


def process_state(pid: int, started: str | None) -> str:
    """'alive' or 'gone' for a process of this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass  # another user's process: it exists
    if started is not None:
        now = process_start(pid)
        if now is not None and now != started:
            return "gone"  # the PID was reused by a later process
    return "alive"


def owner(tags: dict[str, str]) -> tuple[str, int | None, str | None]:
    """(state, pid, host) of the process a run's tags name: state is 'untagged' (no
    ``backproplab.pid``/``host`` tags), 'elsewhere' (another host: it cannot be checked from
    here), 'alive' or 'gone'."""
    pid_text, host = tags.get(PID_TAG), tags.get(HOST_TAG)
    if not pid_text or not host or not pid_text.isdigit():
        return "untagged", None, host
    pid = int(pid_text)
    if host != socket.gethostname():
        return "elsewhere", pid, host
    return process_state(pid, tags.get(PID_START_TAG)), pid, host


def reap(uri: str | None = None, experiment: str | None = None, out: Any = None) -> int:
    """Mark KILLED every RUNNING run of this host whose process is gone; print what was done."""
    from mlflow.entities import RunStatus, ViewType

    from ..transport.spool import bounded_http

    out = out or sys.stdout
    client, uri = _client(uri)
    with bounded_http(is_http(uri)):
        if experiment is not None:
            found = client.get_experiment_by_name(experiment)
            if found is None:
                names = sorted(e.name for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY))
                raise ConfigError(f"--experiment {experiment!r} is not an experiment of {redact(uri)}; valid: {', '.join(names) or 'none'}")
            experiments = [found]
        else:
            experiments = list(client.search_experiments(view_type=ViewType.ACTIVE_ONLY))
        names = {e.experiment_id: e.name for e in experiments}
        runs = []
        token = None
        while experiments:
            page = client.search_runs(
                list(names), filter_string="attributes.status = 'RUNNING'", max_results=1000, page_token=token
            )
            runs.extend(page)
            token = page.token
            if not token:
                break
        host = socket.gethostname()
        reaped = 0
        for run in runs:
            tags = run.data.tags
            label = f"run {run.info.run_id} ({run.info.run_name}, experiment {names.get(run.info.experiment_id)})"
            sweep = " [sweep parent]" if tags.get("backproplab.sweep") == "true" else ""
            state, pid, run_host = owner(tags)
            if state == "untagged":
                print(f"left {label}{sweep}: no {PID_TAG}/{HOST_TAG} tags (not started by this backproplab), so it cannot be checked", file=out)
                continue
            if state == "elsewhere":
                print(f"left {label}{sweep}: process {pid} on {run_host}, another host (this is {host}); run reap there", file=out)
                continue
            if state == "alive":
                print(f"left {label}{sweep}: process {pid} on {host} is still running", file=out)
                continue
            reason = f"process {pid} on {host} ended without closing the run (killed?){_last_logged(run)}; reaped by backproplab runs reap"
            client.set_tag(run.info.run_id, FAILURE_TAG, reason)
            set_note(client, run.info.run_id, stored(run, "KILLED", reason, "`backproplab runs reap`"))
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
            reaped += 1
            print(f"reaped {label}{sweep}: {reason}; marked KILLED", file=out)
    left = len(runs) - reaped
    print(f"reap: {len(runs)} RUNNING run(s) in {redact(uri)}; {reaped} marked KILLED, {left} left as they were", file=out)
    return 0


def replay(spool_file: str, uri: str | None = None, out: Any = None) -> int:
    """Write a spool's metrics, artifacts and final status into its run; then remove the spool."""
    from mlflow.entities import RunStatus

    from ..transport.buffer import MAX_METRICS_PER_BATCH
    from ..transport.spool import METRICS_LOST_TAG, Spool, bounded_http, damaged_artifacts, metrics_of, read_spool
    from ..transport.store import stored_run
    from ..transport.upload import send_all

    out = out or sys.stdout
    path = Path(spool_file)
    header, rows, end = read_spool(path)
    client, uri = _client(uri or header.get("tracking_uri"))
    run_id = header["run_id"]
    spool = Spool(path, run_id, uri)
    with bounded_http(is_http(uri)):
        run = stored_run(
            client, run_id, missing=f"run {run_id} of spool file {path} is not in {redact(uri)}",
            valid="--tracking-uri of the store the run was created in",
        )
        if run.info.status == "RUNNING":
            _refuse_if_owned(run, path)
        metrics = metrics_of(rows)
        # MLflow's store skips rows it already holds (a resumed run, a replay run twice).
        send_all(client, run_id, metrics, MAX_METRICS_PER_BATCH)
        artifacts = spool.artifacts_dir
        # Files the spool's manifest does not vouch for (cut short by a full disk, or saved by a
        # process that died before its manifest) are reported, never uploaded as the run's.
        damaged = damaged_artifacts(spool)
        for name in damaged:
            (artifacts / name).unlink()
        n_files = sum(1 for p in artifacts.rglob("*") if p.is_file()) if artifacts.is_dir() else 0
        if n_files:
            client.log_artifacts(run_id, str(artifacts))
        if end is None:
            # The process died while spooling: nothing recorded how the run ended.
            end = {"status": "FAILED", "reason": f"the run's process ended while its tracking server was lost; metrics replayed from {path}"}
        status = end.get("status") or "FAILED"
        losses = list(header.get("losses", []))
        if damaged:
            losses.append(f"spooled artifact file(s) {', '.join(damaged)} were damaged (not as saved) and are not uploaded")
        if losses:
            client.set_tag(run_id, METRICS_LOST_TAG, "; ".join(losses)[:5000])
            missing = [loss for loss in losses if loss not in (end.get("reason") or "")]
            if missing:
                end["reason"] = "; ".join([end["reason"], *missing] if end.get("reason") else missing)
        if end.get("reason"):
            client.set_tag(run_id, FAILURE_TAG, end["reason"])
        if end.get("note"):
            set_note(client, run_id, spooled(end["note"], str(path)))
        else:  # a spool from a process that died, or from before spools carried the note
            how = f"`backproplab runs replay {path}` (its tracking server was lost)"
            set_note(client, run_id, stored(client.get_run(run_id), status, end.get("reason"), how))
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.from_string(status)))
    spool.remove()
    print(
        f"replayed run {run_id} into {redact(uri)}: {len(metrics)} metrics, {n_files} artifact file(s), status {status}; removed {path}",
        file=out,
    )
    if damaged:
        print(
            f"error: {len(damaged)} spooled artifact file(s) of run {run_id} were damaged and not uploaded: {', '.join(damaged)} "
            "(the run's metrics and status are stored; the run's backproplab.metrics_lost tag says what is missing)",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


def _refuse_if_owned(run: Any, path: Path) -> None:
    """A ConfigError when the run's process may still be training it: that process writes the
    spool itself and sends it once its server answers, and a replay now would end the run FAILED
    under it. A run whose process is gone (or that no backproplab process owns) may be replayed."""
    state, pid, host = owner(run.data.tags)
    if state == "alive":
        raise ConfigError(
            f"run {run.info.run_id} is still training: its process {pid} on {host} is alive, and sends the spool itself "
            f"once its server answers; replay {path} after that process has ended"
        )
    if state == "elsewhere":
        raise ConfigError(
            f"run {run.info.run_id} is RUNNING, started by process {pid} on {host}, another host (this is "
            f"{socket.gethostname()}), so whether it still trains cannot be checked here; run the replay on {host}"
        )


def register(name: str, run_id: str | None = None, uri: str | None = None, experiment: str = "backproplab", out: Any = None) -> int:
    """Register the model of ``run_id`` (a sweep parent: its best child; None: the best child of
    ``experiment``'s latest sweep) as a new version of ``name``; print which."""
    from ..records.model import model_run, register_run
    from .settings import registered_model_name
    from ..transport.spool import bounded_http

    out = out or sys.stdout
    name = registered_model_name(name, key="backproplab runs register NAME", nullable=False)
    client, uri = _client(uri)
    with bounded_http(is_http(uri)):
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise ConfigError(f"--experiment {experiment!r} is not an experiment of {uri}; valid: the experiment the runs were logged to")
        run = model_run(client, run_id, found.experiment_id)
        version = register_run(client, run, name)
    print(
        f"registered run {run.info.run_name} ({run.info.run_id}) as {name} version {version.version}: load it as models:/{name}/{version.version}",
        file=out,
    )
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, as every backproplab error
        raise ConfigError(f"{self.prog}: {message}; see {self.prog} --help")


# What --tracking-uri means to every command but replay, which defaults to the spool's own URI.
STORE_HELP = "the store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)"


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="backproplab runs",
        description="Repair MLflow runs after faults no process could handle.",
    )
    commands = top.add_subparsers(dest="command", metavar="{reap,register,replay,resume}", parser_class=_Parser)
    reap_parser = commands.add_parser(
        "reap",
        help="mark KILLED the RUNNING runs whose process is gone (kill -9)",
        description="Mark KILLED every RUNNING run started on this host whose process no longer exists (killed with "
        "kill -9, by the OOM killer, ...), with a failure_reason saying so. Runs of other hosts and runs whose process "
        "still lives are listed and left alone. Sweep parents are included.",
    )
    reap_parser.add_argument("--tracking-uri", metavar="URI", help=STORE_HELP)
    reap_parser.add_argument("--experiment", metavar="NAME", help="only this experiment (default: every active one)")
    replay_parser = commands.add_parser(
        "replay",
        help="write a run's spooled metrics (tracking server lost) into the store",
        description="Write what a run spooled while its tracking server was gone: its metrics with their original "
        "steps and timestamps, its artifacts, then its final status and failure_reason; then remove the spool.",
    )
    replay_parser.add_argument("spool", metavar="SPOOL_FILE", help="a file from .backproplab-spool/")
    replay_parser.add_argument("--tracking-uri", metavar="URI", help="the store (default: the URI recorded in the spool)")
    resume_parser = commands.add_parser(
        "resume",
        help="continue a stopped run from its checkpoint, in the same MLflow run",
        description="Continue a KILLED run, a run FAILED by a signal, or a RUNNING run whose process is gone, from its "
        "checkpoint, in the same MLflow run, to its configured end: the result is bit for bit that of the run "
        "uninterrupted. A FINISHED run, a live one, or one without a checkpoint is refused (exit 2).",
    )
    resume_parser.add_argument("run_id", metavar="RUN_ID", help="the MLflow run id")
    resume_parser.add_argument("--tracking-uri", metavar="URI", help=STORE_HELP)
    register_parser = commands.add_parser(
        "register",
        help="register a sweep's best model (or a run's) in the Model Registry",
        description="Create a new version of registered model NAME from a run's model: the best child of a sweep "
        "(--run with the parent's id, or by default the latest sweep of the experiment), or the run --run names.",
    )
    register_parser.add_argument("name", metavar="NAME", help="the registered model's name")
    register_parser.add_argument("--run", metavar="RUN_ID", help="a sweep parent (its best child) or a run (default: the latest sweep)")
    register_parser.add_argument("--tracking-uri", metavar="URI", help=STORE_HELP)
    register_parser.add_argument("--experiment", metavar="NAME", default="backproplab", help="the experiment (default: backproplab)")
    return top


def main(argv: Sequence[str]) -> int:
    try:
        top = parser()
        args, unknown = top.parse_known_args(list(argv))
        if unknown:
            sub = top._subparsers._group_actions[0].choices.get(args.command) if args.command else None  # noqa: SLF001
            valid = [o for a in (sub or top)._actions for o in a.option_strings]
            where = f"backproplab runs {args.command}" if sub else "backproplab runs"
            raise ConfigError(f"unknown option {unknown[0]!r} for '{where}'; valid: {', '.join(valid)}")
        if args.command is None:
            raise ConfigError("backproplab runs needs a command; valid: reap, register, replay, resume; see backproplab runs --help")
        if args.command == "reap":
            return reap(args.tracking_uri, args.experiment)
        if args.command == "register":
            return register(args.name, args.run, args.tracking_uri, args.experiment)
        if args.command == "resume":
            from .resume import resume

            return resume(args.run_id, *_client(args.tracking_uri), process_state)
        return replay(args.spool, args.tracking_uri)
    except ConfigError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    except Exception as exc:  # noqa: BLE001 - a store failure midway: one line, and the spool stays
        print(f"error: backproplab runs {args.command}: {type(exc).__name__}: {redact(' '.join(str(exc).split()))[:300]}", file=sys.stderr, flush=True)
        return 1
