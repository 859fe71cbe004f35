"""A sweep through Hydra's ``submitit_local`` launcher (the ``[slurm]`` extra's submitit, one
machine, no SLURM): each job runs in a process of its own that submitit starts, and still
becomes a child run of the sweep's parent; a failing job is a FAILED child and the parent's
summary is complete. The real command in a subprocess, tracking to a sqlite store.
"""

from __future__ import annotations

import pytest

from test_tracking_sweep import DIVERGING_SWEEP, check_diverging_sweep

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the [slurm] extra (hydra-submitit-launcher) is not installed")

pytestmark = pytest.mark.slow


def test_a_sweep_through_submitit_local_lands_as_children_of_one_parent(cli, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = cli(
        "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1",
        f"logger.tracking_uri={uri}", *DIVERGING_SWEEP,
        timeout=300,
    )
    parent, by_lr = check_diverging_sweep(proc, uri, tmp_path)
    # Each job ran under submitit: its folder holds the job's own log.
    assert len(list(tmp_path.glob("multirun/*/*/.submitit/*/*_log.out"))) == 2
    assert by_lr["0.001"].info.run_id != by_lr["1000.0"].info.run_id
    assert parent.data.tags["hydra.launcher"].endswith("LocalLauncher")
