"""The real command in a subprocess: the default run, ``python -m``, every experiment, explain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# hydra_compat: repeated on Hydra 1.4 by .ci/run.
pytestmark = [pytest.mark.slow, pytest.mark.hydra_compat]

WORKED_EXAMPLE = [0.520888, 0.647828, 0.757648, 0.836315, 0.880797, 0.907697, 0.925053]


def results(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("**/result.json"))]


def predictions(stdout: str) -> list[float]:
    return [float(line.split("prediction")[1].split()[0]) for line in stdout.splitlines() if " prediction " in line]


@pytest.mark.lowest_deps
def test_default_run_is_the_worked_example(cli, tmp_path, shipped_data):
    proc = cli("logger=none")
    assert proc.returncode == 0, proc.stderr
    assert predictions(proc.stdout) == pytest.approx(WORKED_EXAMPLE, abs=1e-6)
    example = json.loads((shipped_data / "seed_example.json").read_text())
    assert f"iteration 1/7  prediction 0.520888  loss {example['iteration_0']['loss']:.6f}" in proc.stdout
    (record,) = results(tmp_path / "outputs")
    assert record["status"] == "ok" and record["iterations"] == 7
    assert record["losses"][0] == pytest.approx(example["iteration_0"]["loss"], abs=1e-6)
    assert proc.stderr.strip() == ""


def test_console_script_runs_the_same_app(tmp_path, cli_env):
    script = Path(sys.executable).with_name("backproplab")
    proc = subprocess.run([str(script), "logger=none"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert predictions(proc.stdout) == pytest.approx(WORKED_EXAMPLE, abs=1e-6)


def test_seed_backprop_experiment(cli):
    proc = cli("experiment=seed_backprop", "logger=none")
    assert proc.returncode == 0, proc.stderr
    assert predictions(proc.stdout) == pytest.approx(WORKED_EXAMPLE, abs=1e-6)


def test_marks_experiment(cli, tmp_path):
    # No data.path: the experiment uses the shipped data=marks.
    proc = cli("experiment=marks", "logger=none")
    assert proc.returncode == 0, proc.stderr
    (record,) = results(tmp_path / "outputs")
    # 395 rows, 20% held out -> 316 training rows, batches of 20 -> 16 iterations x 100 epochs.
    assert record["iterations"] == 1600
    last = record["epochs"][-1]
    assert last["val_loss"] is not None and last["val_accuracy"] >= 0.9
    assert record["losses"][-1] < record["losses"][0]
    assert "epoch 100/100" in proc.stdout


@pytest.mark.parametrize(
    "name, key, values",
    [
        ("lr_sweep", "optimizer.lr", ["0.01", "0.1", "0.5", "1.0"]),
        ("batch_size_sweep", "data.batch_size", ["1", "8", "32", "160"]),
        ("architecture_sweep", "model.hidden", ["[2]", "[8]", "[8,8]", "[16,16,16]"]),
    ],
)
def test_sweep_experiments_run_as_multiruns(cli, tmp_path, name, key, values):
    proc = cli(f"experiment={name}", "logger=none", "trainer.epochs=3", "hydra.sweep.dir=sweep")
    assert proc.returncode == 0, proc.stderr
    records = results(tmp_path / "sweep")
    assert len(records) == len(values)
    swept = sorted(o.split("=", 1)[1] for r in records for o in r["overrides"] if o.startswith(key + "="))
    assert swept == sorted(values)
    assert all(r["status"] == "ok" for r in records)
    if name == "batch_size_sweep":
        # 160 training examples: iterations per epoch are ceil(160 / batch size).
        by_batch = {o.split("=")[1]: r["iterations"] for r in records for o in r["overrides"] if o.startswith(key)}
        assert by_batch == {"1": 480, "8": 60, "32": 15, "160": 3}


def test_explain_command(cli, shipped_data):
    proc = cli("explain")
    assert proc.returncode == 0, proc.stderr
    grad = json.loads((shipped_data / "seed_example.json").read_text())["iteration_0"]["grad"]
    row = next(line for line in proc.stdout.splitlines() if line.strip().startswith("w^2_11 "))
    assert float(row.split()[2]) == pytest.approx(grad["W2"][0][0], abs=1e-6)


@pytest.mark.lowest_deps
def test_default_tracking_store_lands_in_the_working_directory(cli, tmp_path, cli_env):
    env = cli_env()
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = cli(env=env)
    assert proc.returncode == 0, proc.stderr
    assert predictions(proc.stdout) == pytest.approx(WORKED_EXAMPLE, abs=1e-6)
    # hydra.job.chdir is false: the default sqlite:///mlflow.db is the user's cwd, not outputs/;
    # backproplab's own default, also on an MLflow whose default is a ./mlruns file store (MLflow 2).
    assert (tmp_path / "mlflow.db").is_file()
    assert not list((tmp_path / "outputs").glob("**/mlflow.db"))
    assert not (tmp_path / "mlruns" / "0" / "meta.yaml").exists()  # a file store's default experiment


@pytest.mark.lowest_deps
def test_cfg_of_a_multirun_shows_the_sweeps_config(cli, tmp_path):
    """``-m ... --cfg``: Hydra refuses the pair; backproplab shows the config the multirun composes."""
    launcher = cli("-m", "hydra/launcher=joblib", "--cfg", "hydra", "-p", "hydra.launcher")  # as docs/cluster.md's submitit_slurm
    assert launcher.returncode == 0, launcher.stderr
    assert launcher.stdout.startswith("# @package hydra.launcher\n")
    assert "\nn_jobs: -1\n" in launcher.stdout and "_target_: hydra_plugins.hydra_joblib_launcher" in launcher.stdout
    sweep = cli("-m", "optimizer.lr=0.1,0.5", "--cfg", "hydra", "-p", "hydra")
    assert sweep.returncode == 0, sweep.stderr
    assert "\nmode: MULTIRUN\n" in sweep.stdout and "\n  - optimizer.lr=0.1,0.5\n" in sweep.stdout
    assert "\nhydra_help:" not in sweep.stdout and "\nhelp:" not in sweep.stdout  # as Hydra's --cfg hydra
    job = cli("-m", "optimizer.lr=0.1,0.5", "--cfg", "job", "-p", "nope")
    assert job.returncode == 2 and job.stderr.strip() == "error: package 'nope' is not in the --cfg job config"
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "mlflow.db").exists()


def test_plugins_subcommand_is_dispatched(cli):
    proc = cli("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert "sgd" in json.dumps(report) and "legacy_randn" in json.dumps(report)


COUNT_LOADS = """
import atexit, sys
import backproplab.run.data as data
import backproplab.run.job as job

calls = []
original = data.load_dataset

def counted(cfg, *args, **kwargs):
    calls.append(cfg.get("name"))
    return original(cfg, *args, **kwargs)

job.load_dataset = counted  # prepare() looks it up in its own module
atexit.register(lambda: print(f"loads={len(calls)}", file=sys.stderr))
from backproplab.cli import main
main(sys.argv[1:])
"""


def test_a_single_run_loads_its_data_once(tmp_path, cli_env):
    # The up-front check prepares the run (config, data, components) before Hydra creates
    # outputs/; the job then trains what was prepared instead of loading the data again.
    proc = subprocess.run(
        [sys.executable, "-c", COUNT_LOADS, "data=marks", "trainer.epochs=1", "logger=none"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "loads=1" in proc.stderr.splitlines()
    # A multirun checks every job in the launching process, loading each distinct data set once,
    # and each job (basic launcher, same process) trains what its check prepared: a sweep over
    # the learning rate loads its one data set once.
    proc = subprocess.run(
        [sys.executable, "-c", COUNT_LOADS, "-m", "data=marks", "trainer.epochs=1", "optimizer.lr=0.1,0.2", "logger=none"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "loads=1" in proc.stderr.splitlines()


def test_overrides_may_stand_on_both_sides_of_a_flag(cli):
    """Hydra's parser takes the overrides as one positional list: split by a flag, they ended in
    its usage text. The flags move ahead, each with its value; nothing else changes."""
    from backproplab.hydra_app.preflight import options_first

    assert options_first(["a=1", "--config-dir", "d", "b=2", "-m", "c=3", "--info", "config", "--cfg=job", "-i", "e=4"]) == [
        "--config-dir", "d", "-m", "--info", "config", "--cfg=job", "-i", "a=1", "b=2", "c=3", "e=4"]
    proc = cli("data=xor", "--cfg", "job", "trainer.epochs=3", "logger=none")
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    assert shown["data"]["name"] == "xor" and shown["trainer"]["epochs"] == 3
