"""A sweep through Hydra's ``submitit_local`` launcher (the ``[slurm]`` extra's submitit, one
machine, no SLURM): each job runs in a process of its own that submitit starts, and still
becomes a child run of the sweep's parent; a failing job is a FAILED child and the parent's
summary is complete. The real command in a subprocess, tracking to a sqlite store.
"""

from __future__ import annotations

import pytest

from test_tracking_sweep import check_summary, loss_steps, sweep_runs

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the [slurm] extra (hydra-submitit-launcher) is not installed")

pytestmark = pytest.mark.slow


def test_a_sweep_through_submitit_local_lands_as_children_of_one_parent(cli, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = cli(
        "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1",
        f"logger.tracking_uri={uri}", "model.activation=identity", "model.output_activation=identity", "loss=mse",
        "optimizer.lr=0.001,1000", "trainer.epochs=20",
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: 1 of 2 jobs of the multirun failed; the first, #1 (optimizer.lr=1000): non-finite loss" in proc.stderr
    # Each job ran under submitit: its folder holds the job's own log.
    assert len(list(tmp_path.glob("multirun/*/*/.submitit/*/*_log.out"))) == 2
    client, parent, children = sweep_runs(uri)
    # optimizer.lr is a float in sgd's schema: the typed 1000 is logged as 1000.0
    by_lr = {c.data.params["optimizer.lr"]: c for c in children}
    assert len(children) == 2
    assert by_lr["0.001"].info.status == "FINISHED" and loss_steps(client, by_lr["0.001"]) == list(range(20))
    assert by_lr["1000.0"].info.status == "FAILED" and by_lr["1000.0"].data.tags["failure_reason"].startswith("non-finite loss")
    assert by_lr["0.001"].info.run_id != by_lr["1000.0"].info.run_id
    assert parent.info.status == "FAILED" and parent.data.tags["failure_reason"] == "1 of 2 jobs failed"
    assert parent.data.tags["hydra.launcher"].endswith("LocalLauncher")
    check_summary(client, parent, children, tmp_path, ["optimizer.lr"])
