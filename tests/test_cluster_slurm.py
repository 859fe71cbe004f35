"""Sweeps through Hydra's submitit launcher on a real single-node SLURM cluster.

The fixture starts Debian's ``munged``, ``slurmctld`` and ``slurmd`` (``slurm-wlm``, installed by
.ci/run) with a generated ``slurm.conf`` in a temporary folder, as root. Slurm 22.05 has no
option to listen on one address: its daemons bind every interface. So the cluster, and the
commands that talk to it, run in a network namespace of their own (``unshare --net``) whose only
interface is loopback (with one private address on it, see ``Cluster``): nothing of the test is
reachable from outside the namespace, not even from the machine's own 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import cli_env
from test_tracking_sweep import DIVERGING_SWEEP, check_diverging_sweep

pytestmark = pytest.mark.slow

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "unshare", "nsenter")

SLURM_CONF = """\
ClusterName=backproplab
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    def __init__(self) -> None:
        missing = [name for name in DAEMONS if shutil.which(name) is None]
        if os.geteuid() != 0 or missing:
            # .ci/run installs slurm-wlm and munge and runs as root; a developer's machine may not.
            pytest.skip(f"a SLURM test cluster needs root and {', '.join(missing) or 'nothing more'} (.ci/run installs slurm-wlm and munge)")
        self.root = Path(tempfile.mkdtemp(prefix="bpl-slurm-", dir="/tmp"))
        for folder in ("state", "spool"):
            (self.root / folder).mkdir()
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.conf = self.root / "slurm.conf"
        self.conf.write_text(SLURM_CONF.format(root=self.root))
        self.env = cli_env(SLURM_CONF=str(self.conf))
        # The namespace lives as long as this process; every command enters it.
        self.netns = subprocess.Popen(
            # Slurm resolves its listening address with AI_ADDRCONFIG, which finds nothing where
            # loopback is the only address: a private one, on lo itself, leads nowhere else.
            ["unshare", "--net", "sh", "-c", "ip link set lo up && ip addr add 10.254.254.1/32 dev lo && echo up && exec sleep infinity"],
            stdout=subprocess.PIPE, text=True, start_new_session=True,
        )
        assert self.netns.stdout is not None and self.netns.stdout.readline().strip() == "up"
        self.pids: list[int] = []
        self.run(["munged", f"--key-file={key}", f"--socket={self.root}/munge.socket", f"--pid-file={self.root}/munged.pid",
                  f"--log-file={self.root}/munged.log", f"--seed-file={self.root}/munge.seed", "--force"])
        self.run(["slurmctld"])
        self.run(["slurmd", "-N", "localhost"])
        deadline = time.monotonic() + 60
        while True:
            state = self.run(["sinfo", "-h", "-o", "%t"], check=False).stdout.strip()
            if state == "idle":
                break
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the SLURM node did not become idle (sinfo: {state!r}):\n{self.logs()}")
            time.sleep(0.5)

    def prefix(self) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.netns.pid}/ns/net", "--"]

    def run(self, command: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.prefix(), *command], env=self.env, capture_output=True, text=True, timeout=120, **kwargs)
        if check and proc.returncode != 0:
            pytest.fail(f"{command[0]} failed ({proc.returncode}): {proc.stderr}\n{self.logs()}")
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-1500:] for p in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = self.root / f"{name}.pid"
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        time.sleep(1)
        os.killpg(self.netns.pid, signal.SIGKILL)
        self.netns.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm():
    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_a_sweep_through_submitit_slurm_lands_as_children_of_one_parent(slurm, tmp_path):
    """Two jobs submitted with sbatch and run by slurmd; one diverges. SLURM's partition and
    time limit are the launcher's own keys, accepted by the up-front check of every job."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = slurm.run(
        [sys.executable, "-m", "backproplab", "-m", "hydra/launcher=submitit_slurm",
         "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", f"logger.tracking_uri={uri}", *DIVERGING_SWEEP],
        check=False, cwd=tmp_path,
    )
    parent, _ = check_diverging_sweep(proc, uri, tmp_path, logs=slurm.logs())
    # Each job ran under SLURM: submitit's folder holds the job's own SLURM log.
    assert len(list(tmp_path.glob("multirun/*/*/.submitit/*/*_log.out"))) == 2
    assert parent.data.tags["hydra.launcher"].endswith("SlurmLauncher")


def test_the_slurm_daemons_live_in_a_namespace_with_loopback_only(slurm):
    """Slurm binds 0.0.0.0, but inside a namespace whose only interface is ``lo``."""
    interfaces = [line.split(":")[0].strip() for line in Path(f"/proc/{slurm.netns.pid}/net/dev").read_text().splitlines()[2:]]
    assert interfaces == ["lo"]
    ctld = int((slurm.root / "slurmctld.pid").read_text())
    assert os.readlink(f"/proc/{ctld}/ns/net") == os.readlink(f"/proc/{slurm.netns.pid}/ns/net")
