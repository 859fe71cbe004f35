"""A SLURM requeue on the real one-node cluster (``test_cluster_slurm.Cluster``): the requeued
job continues its run from the checkpoint in its output folder, in the same MLflow run, and
ends with the uninterrupted run's numbers, bit for bit.

The job stops itself (SIGSTOP) as iteration ``AT`` begins on its first start only: a
``sitecustomize`` on the job's PYTHONPATH wraps the trainer's step, and leaves a marker file the
test waits for. ``scontrol requeue`` then does what a preemption does: SLURM sends the job
SIGCONT and SIGTERM (the run writes its checkpoint at the next iteration boundary and ends
KILLED), and starts it again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from test_cluster_slurm import Cluster
from test_resume_cli import ITERATIONS, recorded

pytestmark = pytest.mark.slow

AT = 7
HOOK = """
import os
if os.environ.get("SLURM_JOB_ID"):
    with open(os.environ["BPL_TEST_STARTS"], "a") as out:
        out.write(os.environ.get("SLURM_RESTART_COUNT", "0") + "\\n")
    if os.environ.get("SLURM_RESTART_COUNT", "0") == "0":
        import signal
        from backproplab.numerics.trainer import Trainer

        train_step = Trainer.train_step

        def stopping(self, *args, **kwargs):
            if self.iteration == int(os.environ["BPL_TEST_STOP_AT"]):
                open(os.environ["BPL_TEST_REACHED"], "w").close()
                os.kill(os.getpid(), signal.SIGSTOP)
            return train_step(self, *args, **kwargs)

        Trainer.train_step = stopping
"""
RUN = ["data=moons", "trainer.epochs=4", "optimizer=adam", "trainer.checkpoint_every_s=0"]


@pytest.fixture(scope="module")
def slurm():
    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    """Until ``path`` exists (an event of the job), or the command ended without it."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate()
            pytest.fail(f"the job never reached iteration {AT}: {out}\n{err}")
        time.sleep(0.2)


def test_a_requeued_slurm_job_finishes_its_run_in_the_same_mlflow_run(slurm, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    env = dict(
        slurm.env,
        PYTHONPATH=os.pathsep.join(filter(None, [str(hook), slurm.env.get("PYTHONPATH")])),
        BPL_TEST_STOP_AT=str(AT),
        BPL_TEST_REACHED=str(tmp_path / "reached"),
        BPL_TEST_STARTS=str(tmp_path / "starts"),
    )
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = subprocess.Popen(
        [*slurm.prefix(), sys.executable, "-m", "backproplab", "-m", "hydra/launcher=submitit_slurm",
         "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=10", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", f"hydra.sweep.dir={tmp_path}/sweep", f"logger.tracking_uri={uri}", *RUN],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for_file(tmp_path / "reached", proc)
        (job_id,) = slurm.run(["squeue", "-h", "-o", "%i"]).stdout.split()
        slurm.run(["scontrol", "requeue", job_id])
        # SLURM holds a requeued job back for a while (its BeginTime); a preempted job's wait
        # is the cluster's business, not this test's.
        slurm.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=False)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"{out}\n{err}\n{slurm.logs()}"
    assert (tmp_path / "starts").read_text().split() == ["0", "1"], "the job ran twice: started, then requeued"

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("backproplab").experiment_id
    children = client.search_runs([experiment], "tags.mlflow.parentRunId != ''")
    (child,) = [r for r in client.search_runs([experiment]) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) <= 1
    assert child.info.status == "FINISHED"
    # SLURM sends SIGCONT, then SIGTERM: the run goes on for a few iterations in between
    assert AT <= int(child.data.tags["backproplab.resumed_from"]) < ITERATIONS
    state = (tmp_path / "sweep" / "0" / "checkpoint" / "state.json").read_text()
    assert f'"run_id": "{child.info.run_id}"' in state and '"finished": true' in state

    # the uninterrupted run, here, with the same config
    alone = tmp_path / "alone"
    alone.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "backproplab", f"logger.tracking_uri=sqlite:///{alone}/mlflow.db", f"hydra.run.dir={alone}/run", *RUN],
        cwd=alone, env=slurm.env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    _, expected_history, expected_params = recorded(alone)
    history = {key: [(m.step, m.value) for m in client.get_metric_history(child.info.run_id, key)] for key in expected_history}
    assert [s for s, _ in history["batch/loss"]] == list(range(ITERATIONS))
    assert history["batch/loss"] == expected_history["batch/loss"]
    for key, points in history.items():
        steps = [s for s, _ in points]
        assert len(steps) == len(set(steps)), f"{key}: a step stored twice"
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        with np.load(client.download_artifacts(child.info.run_id, "params.npz", tmp), allow_pickle=False) as npz:
            for key, value in expected_params.items():
                assert np.array_equal(npz[key], value), key
