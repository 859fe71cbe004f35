"""Every kind of bad input gives one line naming the key, the value and the valid choices, a
non-zero exit code, no traceback, and no training."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HIDE_PACKAGE, HIDE_PACKAGE_THEN_CLI


pytestmark = pytest.mark.slow

CONFIG = 2  # exit code for a wrong command line or config
FAILED = 1  # exit code for a run that failed while training


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "three.csv"
    path.write_text("a,b,label\n0,1,0\n1,0,1\n1,1,2\n0,0,1\n")
    return path


@pytest.fixture(scope="module")
def bad_cell(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "bad.csv"
    path.write_text("y,x1,x2\n1,2,3\n0,4,5\n1,six,7\n")
    return path


CASES = {
    "unknown optimizer": (
        ["optimizer=adamm"],
        r"^error: optimizer=adamm: unknown optimizer 'adamm'; available: .*adam, adamw.*sgd; did you mean 'adam'\?$",
    ),
    "unknown optimizer in a sweep": (["-m", "optimizer=sgd,rmsprp"], r"unknown optimizer 'rmsprp'; available: .*did you mean 'rmsprop'"),
    "unknown loss": (["loss=bce2"], r"^error: loss=bce2: unknown loss 'bce2'; available: .*bce.*; did you mean 'bce'\?$"),
    "unknown initializer": (["initializer=xavier"], r"unknown initializer 'xavier'; available: .*xavier_normal"),
    "unknown activation": (["model.activation=sigmod"], r"^error: model.activation: unknown activation 'sigmod'; available: .*did you mean 'sigmoid'\?$"),
    "unknown data set": (["data=mnist"], r"^error: data='mnist' is unknown; available: breast_cancer, circles, csv, digits, marks, moons, seed_example, (spirals, )?xor; "
                         r"for a CSV file of your own: data=csv data.path=mnist.csv$"),
    "unknown experiment": (["experiment=lr_sweeps"], r"experiment='lr_sweeps' is unknown; available: .*; did you mean 'lr_sweep'\?$"),
    "unknown hyperparameter": (["optimizer.momentun=0.9"], r"^error: optimizer.momentun is not a key of the config; valid keys: name, lr, momentum, nesterov, weight_decay; did you mean 'momentum'\?$"),
    "lr is not a number": (["optimizer.lr=abc"], r"^error: optimizer.lr='abc' is invalid for optimizer=sgd; valid: a number"),
    "hidden is not a list": (["model.hidden=foo"], r"^error: model.hidden='foo' is invalid; valid: a list of positive integers"),
    "hidden width zero": (["model.hidden=[4,0]"], r"^error: model.hidden=\[4, 0\] is invalid; valid: a list of positive integers"),
    "bad dtype": (["model.dtype=float16"], r"^error: model.dtype='float16' is invalid; valid: float64, float32$"),
    "epochs is not an integer": (["trainer.epochs=1.5"], r"^error: trainer.epochs=1.5 is invalid; valid: an integer in \[1, 1000000000\]$"),
    # sgd's schema declares lr a float (its annotation), so the typed 0 arrives as 0.0.
    "lr zero": (["optimizer.lr=0"], r"^error: optimizer.lr=0.0 is invalid; valid: a finite number > 0$"),
    "lr negative": (["optimizer=adam", "optimizer.lr=-0.1"], r"^error: optimizer.lr=-0.1 is invalid; valid: a finite number > 0$"),
    "batch size zero": (["data.batch_size=0"], r"^error: data.batch_size=0 is invalid; valid: an integer in \[1, 2147483647\] \(values above the training set size are clamped to it\)$"),
    "batch size negative": (["data.batch_size=-4"], r"^error: data.batch_size=-4 is invalid"),
    "output width vs classes": (
        ["data=digits", "model.output_width=3", "loss=cross_entropy", "model.output_activation=softmax"],
        r"^error: model.output_width=3 does not fit data=digits with 10 classes; valid: 10 \(or null to derive it from the data\)$",
    ),
    "csv path missing": (["data=csv"], r"^error: data.path is required but has no value; set it on the command line"),
    "csv file missing": (["data=csv", "data.path=nowhere.csv"], r"^error: data.path='nowhere.csv': file not found"),
    "csv column missing": (["data=csv", "data.path={bad_cell}", "data.target=label"], r"^error: data.target='label' is not a column of bad.csv; available: y, x1, x2$"),
    "csv non-numeric cell": (["data=csv", "data.path={bad_cell}"], r"^error: bad.csv row 3 \(line 4\), column 'x1': 'six' is not a finite number$"),
    "cross_entropy with 2 outputs on 3 classes": (
        ["data=csv", "data.path={three_classes}", "data.target=label", "loss=cross_entropy", "model.output_activation=softmax", "model.output_width=2"],
        r"^error: model.output_width=2 does not fit data=csv with 3 classes; valid: 3 \(or null",
    ),
    # Hydra's struct mode lets a key added with + through; the run config has a fixed set.
    "unknown top-level key added with +": (
        ["+trainr.x=1"],
        r"^error: trainr is not a key of the config; valid keys: hydra, model, data, loss, initializer, optimizer, "
        r"schedule, callbacks, trainer, logger; did you mean 'trainer'\?$",
    ),
    "unrelated top-level key added with +": (["+foo=bar"], r"^error: foo is not a key of the config; valid keys: hydra, model, .*logger$"),
    "malformed override": (["optimizer.lr=[1,"], r"^error: cannot parse the override 'optimizer.lr=\[1,': .*override_grammar"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_error(cli, tmp_path, case, three_classes, bad_cell):
    args, pattern = CASES[case]
    args = [a.format(three_classes=three_classes, bad_cell=bad_cell) for a in args]
    proc = cli(*args, "logger=none")
    line = one_line(proc.stderr)
    assert proc.returncode == CONFIG, (proc.returncode, proc.stderr)
    assert re.search(pattern, line), line
    # Nothing was trained: no iteration was printed and no run succeeded.
    assert "iteration 1/" not in proc.stdout and "final loss" not in proc.stdout
    # Checked before Hydra creates outputs/DATE/TIME/: a rejected run leaves nothing behind.
    assert not list(tmp_path.iterdir()), sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["logger.every_n_iterations=0"], "error: logger.every_n_iterations must be an integer >= 1, got 0"),
        (["logger.buffer.max_metrics=300"], "error: logger.buffer.max_metrics must be an integer >= 1000, got 300"),
        (["logger.buffer.writer=foo"], "error: logger.buffer.writer must be one of auto, sql, log_batch, got 'foo'"),
    ],
)
def test_a_bad_logger_value_is_refused_before_anything_is_written(cli, tmp_path, args, message):
    proc = cli(*args, f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db")
    assert proc.returncode == CONFIG, proc.stderr
    assert one_line(proc.stderr) == message
    assert "iteration 1/" not in proc.stdout
    assert not list(tmp_path.iterdir()), sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))


def test_non_finite_loss_fails_the_run_with_one_line(cli, tmp_path):
    proc = cli(
        "data=xor", "model.activation=identity", "model.output_activation=identity", "loss=mse",
        "optimizer.lr=10", "trainer.epochs=100", "logger=none",
    )
    assert proc.returncode == FAILED
    line = one_line(proc.stderr)
    assert line.startswith("error: non-finite loss") and "optimizer.lr" in line
    (result,) = tmp_path.glob("outputs/**/result.json")
    record = json.loads(result.read_text())
    assert record["status"] == "failed" and "non-finite loss" in record["error"]


@pytest.mark.parametrize("args", [["+hydra.job.env_set.BACKPROPLAB_X=1"], ["experiment=seed_backprop"]])
def test_hydra_keys_and_experiments_are_not_unknown_keys(cli, args):
    proc = cli(*args, "logger=none")
    assert proc.returncode == 0, proc.stderr
    assert "final loss 0.077904" in proc.stdout


def test_full_error_brings_the_traceback_back(cli, cli_env):
    # lr=0 passes the schema (a number) and is refused by the run's own range check, a ConfigError.
    proc = cli("optimizer.lr=0", "logger=none", env=cli_env(HYDRA_FULL_ERROR="1"))
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_batch_size_above_the_training_set_is_clamped_with_a_warning(cli):
    proc = cli("data.batch_size=20", "logger=none")
    assert proc.returncode == 0, proc.stderr
    assert "warning: batch_size 20 exceeds the 1 training examples; using 1" in proc.stderr
    assert "iteration 7/7  prediction 0.925053" in proc.stdout


# -- multiruns: every job is validated before the first one starts ------------------------------
SWEEP_CASES = {
    "bad value in a sweep list": (
        ["-m", "optimizer.lr=0.5,abc"],
        r"^error: sweep job #1 of 2 \(optimizer.lr=abc\) is invalid, so no job was started: "
        r"optimizer.lr='abc' is invalid for optimizer=sgd; valid: a number \(default 0.5\)$",
    ),
    "typo'd key in a multirun": (
        ["-m", "modl.x=1,2"],
        r"^error: 2 of 2 sweep jobs are invalid \(#0, #1\), so no job was started; the first, #0 \(modl.x=1\): "
        r"modl is not a key of the config; valid keys: .*model.*; did you mean 'model'\?$",
    ),
    "bad job in the middle of a product": (
        ["-m", "optimizer.lr=0.1,0.5", "model.hidden=[2],[0],[3]"],
        r"^error: 2 of 6 sweep jobs are invalid \(#1, #4\), so no job was started; the first, #1 \(optimizer.lr=0.1 model.hidden=\[0\]\): "
        r"model.hidden=\[0\] is invalid; valid: a list of positive integers",
    ),
    "bad value under the joblib launcher": (
        ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "data.batch_size=4,0"],
        r"^error: sweep job #1 of 2 \(data.batch_size=0\) is invalid, so no job was started: data.batch_size=0 is invalid; valid: an integer in \[1, 2147483647\]",
    ),
    # hydra.mode=MULTIRUN comes from the experiment, not from -m; the fixed override breaks every job.
    "experiment sweep with a bad fixed value": (
        ["experiment=lr_sweep", "trainer.epochs=0"],
        r"^error: 4 of 4 sweep jobs are invalid \(#0, #1, #2, #3\), so no job was started; the first, #0 \(optimizer.lr=0.01\): trainer.epochs=0 is invalid",
    ),
    # The logger node is the job's too: validated per job, as the job's track_run would.
    "bad logger value for every job": (
        ["-m", "optimizer.lr=0.1,0.5", "logger.every_n_iterations=0"],
        r"^error: 2 of 2 sweep jobs are invalid \(#0, #1\), so no job was started; the first, #0 \(optimizer.lr=0.1\): "
        r"logger.every_n_iterations must be an integer >= 1, got 0$",
    ),
    "bad logger value in a sweep list": (
        ["-m", "logger.buffer.writer=foo,auto"],
        r"^error: sweep job #0 of 2 \(logger.buffer.writer=foo\) is invalid, so no job was started: "
        r"logger.buffer.writer must be one of auto, sql, log_batch, got 'foo'$",
    ),
    "logger buffer too small": (
        ["-m", "logger.buffer.max_metrics=300"],
        r"^error: sweep job #0 of 1 \(logger.buffer.max_metrics=300 .*\) is invalid, so no job was started: "
        r"logger.buffer.max_metrics must be an integer >= 1000, got 300$",
    ),
    "unknown top-level key added with + in a sweep": (
        ["-m", "+trainr.x=1,2"],
        r"^error: 2 of 2 sweep jobs are invalid \(#0, #1\), so no job was started; the first, #0 \(\+trainr.x=1\): "
        r"trainr is not a key of the config; .*did you mean 'trainer'\?$",
    ),
    # A value under a swept group is checked on each job's own config: valid for
    # adam's jobs, one error naming the sgd jobs.
    "optimizer key valid for only some jobs": (
        ["-m", "optimizer=sgd,adam,sgd", "optimizer.beta1=0.95"],
        r"^error: 2 of 3 sweep jobs are invalid \(#0, #2\), so no job was started; the first, #0 "
        r"\(optimizer=sgd optimizer.beta1=0.95\): optimizer.beta1 is not a key of the config; valid keys: .*momentum",
    ),
    "data key valid for only some jobs": (
        ["-m", "data=moons,circles", "data.factor=0.5"],
        r"^error: sweep job #0 of 2 \(data=moons data.factor=0.5\) is invalid, so no job was started: "
        r"data.factor is not a key of the config; valid keys: .*noise",
    ),
    "loss key valid for only some jobs": (
        ["-m", "loss=huber,mse", "loss.delta=0.5"],
        r"^error: sweep job #1 of 2 \(loss=mse loss.delta=0.5\) is invalid, so no job was started: "
        r"loss.delta is not a key of the config",
    ),
    "initializer key valid for only some jobs": (
        ["-m", "initializer=xavier_normal,he_normal", "initializer.gain=2.0"],
        r"^error: sweep job #1 of 2 \(initializer=he_normal initializer.gain=2.0\) is invalid, so no job was started: "
        r"initializer.gain is not a key of the config",
    ),
    "data file missing in one job": (
        ["-m", "data=csv", "data.target=label", "data.path={three_classes},nowhere.csv"],
        r"^error: sweep job #1 of 2 \(data.path=nowhere.csv\) is invalid, so no job was started: data.path='nowhere.csv': file not found",
    ),
}


@pytest.mark.parametrize("case", sorted(SWEEP_CASES))
def test_a_bad_sweep_job_stops_the_multirun_before_anything_runs(cli, tmp_path, case, three_classes):
    args, pattern = SWEEP_CASES[case]
    args = [a.format(three_classes=three_classes) for a in args]
    # MLflow tracking stays on: the check must come before the parent run is created.
    proc = cli(*args, f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "hydra.sweep.dir=sweep")
    line = one_line(proc.stderr)
    assert proc.returncode == CONFIG, (proc.returncode, proc.stderr)
    assert re.search(pattern, line), line
    assert "iteration" not in proc.stdout and "final loss" not in proc.stdout and "Launching" not in proc.stdout
    assert not (tmp_path / "mlflow.db").exists()  # no parent run, no child run, no store
    assert not (tmp_path / "sweep").exists()  # Hydra did not even create the sweep directory


# -- sub-commands -----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["explain", "plugins"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_subcommand_help_prints_its_usage(cli, command, flag):
    proc = cli(command, flag)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: backproplab {command} [-h]")
    assert proc.stderr == ""


def test_explain_help_ignores_overrides_and_runs_nothing(cli):
    proc = cli("explain", "optimizer=adam", "--help")
    assert proc.returncode == 0 and "KEY=VALUE" in proc.stdout and "Parameters:" not in proc.stdout


@pytest.mark.parametrize(
    "word, pattern",
    [
        ("explian", r"^error: unknown command 'explian'; did you mean 'explain'\? \(commands: explain, plugins, runs\)$"),
        ("plugns", r"^error: unknown command 'plugns'; did you mean 'plugins'\? \(commands: explain, plugins, runs\)$"),
        ("train", r"^error: 'train' is neither a command \(explain, plugins, runs\) nor an override \(KEY=VALUE"),
    ],
)
def test_a_typo_d_subcommand_gets_a_hint(cli, tmp_path, word, pattern):
    proc = cli(word, "optimizer.lr=0.1")
    line = one_line(proc.stderr)
    assert proc.returncode == CONFIG
    assert re.search(pattern, line), line
    assert proc.stdout == "" and not list(tmp_path.iterdir())


def test_only_bare_words_are_taken_for_commands():
    from backproplab.cli.main import unknown_command

    for arg in ("optimizer.lr=0.1", "~model.dtype", "+trainer.x=1", "-m", "--cfg", "explain", "plugins", "model.hidden"):
        assert unknown_command(arg) is None, arg
    assert unknown_command("Explain").startswith("error: unknown command 'Explain'; did you mean 'explain'?")


# -- flags --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, pattern",
    [
        (["explain", "--bogus"], r"^error: unknown option '--bogus' for 'backproplab explain'; valid: overrides KEY=VALUE \(e.g. optimizer=adam\), -h/--help$"),
        (["explain", "optimizer=adam", "-m"], r"^error: unknown option '-m' for 'backproplab explain'; valid: overrides KEY=VALUE"),
        (["--bogus"], r"^error: unknown option '--bogus'; valid: -h/--help, .*-m/--multirun, .*-i/--info, and overrides KEY=VALUE$"),
        (["-m", "--multirn", "optimizer.lr=0.1,0.5"], r"^error: unknown option '--multirn'; valid: .*; did you mean '--multirun'\?$"),
        (["--cfg", "bogus"], r"^error: argument --cfg/-c: invalid choice: 'bogus' \(choose from 'job', 'hydra', 'all'\); see backproplab --help$"),
    ],
)
def test_an_unknown_option_is_one_line_naming_the_valid_ones(cli, tmp_path, args, pattern):
    proc = cli(*args, "logger=none")
    line = one_line(proc.stderr)
    assert proc.returncode == CONFIG, proc.stderr
    assert re.search(pattern, line), line
    assert "Lexer" not in proc.stderr and "usage:" not in proc.stderr
    assert proc.stdout == "" and not list(tmp_path.iterdir())


def test_plugins_with_an_unknown_option_is_one_line_too(cli):
    proc = cli("plugins", "--bogus")
    assert proc.returncode == CONFIG
    assert proc.stderr == "error: unrecognized arguments: --bogus for 'backproplab plugins'; valid: -h/--help, --json\n"
    assert proc.stdout == ""


def test_version_names_backproplab_first(cli):
    import backproplab

    proc = cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"backproplab {backproplab.__version__} (hydra-core ")


@pytest.mark.parametrize(
    "args", [["--help"], ["--info"], ["--cfg", "job"], ["explain"], ["plugins"], ["logger=none"]], ids=" ".join
)
def test_a_closed_stdout_ends_quietly(tmp_path, cli_env, args):
    """``backproplab --help | head -1``: the reader is gone before the command writes."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "backproplab", *args],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    proc.stdout.close()  # long before the interpreter has started, let alone printed
    stderr = proc.stderr.read()
    code = proc.wait(timeout=120)
    assert stderr == ""
    assert code in (0, 141)  # 141 = 128 + SIGPIPE, as a shell reports `yes | head -1`
    if args == ["logger=none"]:  # a run cut short is recorded, not lost
        record = json.loads(next(tmp_path.glob("outputs/**/result.json")).read_text())
        assert record["status"] == "failed" and "Broken pipe" in record["error"]


# -- a launcher or sweeper from an extra that is not installed -------------------------
# Each plugin is hidden from the command's imports (HIDE_PACKAGE_THEN_CLI), as if not installed.
@pytest.mark.parametrize(
    "choice,extra,package",
    [
        ("hydra/launcher=ray", "ray", "hydra_plugins.hydra_ray_launcher"),
        ("hydra/launcher=submitit_slurm", "slurm", "hydra_plugins.hydra_submitit_launcher"),
        ("hydra/launcher=submitit_local", "slurm", "hydra_plugins.hydra_submitit_launcher"),
        ("hydra/sweeper=optuna", "optuna", "hydra_plugins.hydra_optuna_sweeper"),
    ],
)
def test_a_plugin_that_is_not_installed_names_its_extra(tmp_path, cli_env, choice, extra, package):
    proc = subprocess.run(
        [sys.executable, "-c", HIDE_PACKAGE_THEN_CLI, package, "-m", choice, "optimizer.lr=0.1,0.5",
         f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == CONFIG, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith(f"error: {choice} needs the Hydra plugin ") and f'pip install "backproplab[{extra}]"' in line
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "mlflow.db").exists()


def test_joblib_without_its_plugin_names_the_parallel_extra(tmp_path, cli_env):
    proc = subprocess.run(
        [sys.executable, "-c", HIDE_PACKAGE_THEN_CLI, "hydra_plugins.hydra_joblib_launcher", "-m", "hydra/launcher=joblib", "optimizer.lr=0.1,0.5",
         f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == CONFIG, proc.stderr
    line = one_line(proc.stderr)
    assert "hydra/launcher=joblib" in line and "hydra-joblib-launcher" in line
    assert 'pip install "backproplab[parallel]"' in line
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "mlflow.db").exists()


# Composes hydra/launcher=ray in-process with the Ray plugin hidden, as if it were not installed
# (the [test] extra installs it); prints the exit code and the error line.
HIDE_RAY_AND_COMPOSE = HIDE_PACKAGE + """from hydra import compose, initialize_config_module
from backproplab.hydra_app.compat import version_base
from backproplab.hydra_app.config_store import register_configs
from backproplab.hydra_app.error_report import describe

register_configs()
with initialize_config_module("backproplab.conf", **version_base()):
    try:
        compose("config", overrides=["hydra/launcher=ray"], return_hydra_config=True)
    except Exception as exc:
        line, code = describe(exc)
        print(code)
        print(line)
    else:
        print("composed")
"""


def test_a_missing_plugin_chosen_outside_the_command_line_names_its_extra(tmp_path, cli_env):
    """An experiment's defaults can choose a launcher too: Hydra's own 'Could not find' then
    becomes the same hint (here ray, hidden from the process's imports)."""
    proc = subprocess.run([sys.executable, "-c", HIDE_RAY_AND_COMPOSE, "hydra_plugins.hydra_ray_launcher"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines()[-2:] == [
        str(CONFIG),
        'error: hydra/launcher=ray needs the Hydra plugin hydra-ray-launcher, which is not installed; install it with: pip install "backproplab[ray]"',
    ], proc.stdout + proc.stderr


def test_the_extras_in_the_hints_exist():
    import tomllib

    from backproplab.hydra_app.error_report import PLUGIN_EXTRAS

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for distribution, _module, extra in PLUGIN_EXTRAS.values():
        assert any(req.startswith(distribution) for req in extras[extra]), (extra, distribution)


@pytest.mark.parametrize(
    "args,status",
    [("data=moons trainer.epochs=300 logger=none", {"141"}), ("--help", {"0", "141"})],
    ids=["a run cut short", "short output races head"],
)
def test_head_minus_one_exit_status_is_as_the_readme_says(tmp_path, cli_env, args, status):
    """The README's `| head -1` sentence, run by a real shell: the command's own status (bash's
    PIPESTATUS[0]) is 141 when the reader left before it finished writing; a short output may
    or may not be all written before `head` exits."""
    import subprocess
    import sys

    script = f'"{sys.executable}" -m backproplab {args} | head -1 > /dev/null; echo "status=${{PIPESTATUS[0]}}"'
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().removeprefix("status=") in status, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


# -- a misspelt launcher or sweeper: the closest option, also among the extras' plugins --------------
@pytest.mark.parametrize(
    "choice,hidden,valid,meant",
    [
        # the Optuna plugin not installed: still the name to install, not just Hydra's own options
        ("hydra/sweeper=optuan", "hydra_plugins.hydra_optuna_sweeper", "available: basic", "optuna"),
        ("hydra/launcher=jobli", "hydra_plugins.no_such_plugin", "available: basic, joblib,", "joblib"),
    ],
)
def test_a_misspelt_launcher_or_sweeper_gets_did_you_mean(tmp_path, cli_env, choice, hidden, valid, meant):
    proc = subprocess.run(
        [sys.executable, "-c", HIDE_PACKAGE_THEN_CLI, hidden, "-m", choice, "optimizer.lr=0.1,0.5",
         f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == CONFIG, proc.stderr
    group, value = choice.split("=")
    line = one_line(proc.stderr)
    assert line.startswith(f"error: {group}='{value}' is unknown; ") and valid in line, line
    assert line.endswith(f"did you mean '{meant}'?"), line
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "mlflow.db").exists()
