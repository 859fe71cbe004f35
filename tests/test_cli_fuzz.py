"""Fuzzing the command line: any value for any key of the composed config ends in
exit 0, or in exit 2 with one ``error:`` line that names the key; never a traceback, never
exit 1 from a bad config value.

The keys are every leaf of the composed config (``backproplab --cfg job``), the same under each
option of each group (``optimizer=adam`` has ``beta1``, ``data=moons`` has ``n_samples``), every
activation's hyperparameters, and the group choices themselves. The values come from a nasty
set (huge, negative and zero numbers, nan/inf/1e308/-0.0, long and unicode strings, empty,
lists, dicts, null, booleans, interpolations) and from generated integers, floats and text.

Most examples run in-process through the command's own entry function (``_main``), with Hydra's
launch of the job replaced by a recorder: everything up to it (override checks, Hydra's
composition, the preflight check of the job, which validates, loads the data and builds the
network) is the real code, at a fraction of a subprocess's cost on 2 cores. A handful run
through the real command in a subprocess, training included, with keys that only make a run
long (epochs, sample counts, widths) left out.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from omegaconf import DictConfig

pytestmark = pytest.mark.slow

NASTY = [
    # integers
    "0", "-1", "1", "2", "2147483648", "4294967296", "9223372036854775808", "99999999999999999999",
    "-99999999999999999999", "9" * 400, "-" + "9" * 400,
    # floats
    "nan", "inf", "-inf", "1e308", "-1e308", "1e400", "1e-320", "-0.0", "0.0", "0.5", "-0.5", "1.5", "1e20",
    # strings
    "''", "abc", "'a b'", "x" * 1000, "'é漢字🙂'", "'\u202eevil'", "' '", "none", "None", "NaN", "adam", "float16",
    # containers, null, booleans
    "[]", "[1]", "[0]", "[-1]", "[1e308]", "['x']", "[[1]]", "[null]", "{}", "{a:1}", "{name:adam}", "null",
    "true", "false",
    # interpolations and Hydra specials
    "${trainer.seed}", "${nope}", "'${oc.env:NO_SUCH_VARIABLE_X}'", "???", "1,2",
]

GROUPS = ("data", "loss", "optimizer", "initializer", "logger")
ACTIVATION_KEYS = ("model.activation", "model.output_activation")
# Keys whose valid values only make a run long (or its data large): fuzzed in-process, where
# nothing trains, not in the real-run subprocesses.
LONG_RUN_KEYS = ("trainer.epochs", "data.n_samples", "model.hidden", "model.output_width", "data.batch_size")


def _leaves(node, prefix: str):
    for key in node:
        value = node._get_node(key)
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, DictConfig):
            yield from _leaves(value, path)
        else:  # a ListConfig (model.hidden, data.features) is one value, as it is typed
            yield path


def fuzz_targets(csv_path: Path) -> list[tuple[tuple[str, ...], str]]:
    """(overrides that select the options, key) for every key of every option, once each."""
    from hydra import compose, initialize_config_module

    from backproplab.components.loading import get_registry
    from backproplab.hydra_app.config_store import group_options, register_configs

    register_configs()
    targets: dict[str, tuple[str, ...]] = {}
    with initialize_config_module("backproplab.conf", version_base="1.3"):
        for key in _leaves(compose("config", overrides=["logger=mlflow"]), ""):
            targets.setdefault(key, ())
        for group in GROUPS:
            targets.setdefault(group, ())
            for option in group_options(group):
                chosen = (f"{group}={option}",)
                if group == "data" and option == "csv":
                    chosen += (f"data.path={csv_path}",)
                cfg = compose("config", overrides=[f"{group}={option}"])
                for key in _leaves(cfg[group], group):
                    selector = (f"{group}={option}",) if key == "data.path" else chosen
                    targets.setdefault(f"{option}:{key}", selector)
    registry = get_registry()
    for name in registry.names("activation"):
        for param in registry.get("activation", name).hyperparameters():
            for key in ACTIVATION_KEYS:
                targets.setdefault(f"{name}:{key}.{param}", (f"{key}={name}",))
    return sorted((_runnable(selector), key.split(":", 1)[-1]) for key, selector in targets.items())


# Options that do not run with the defaults alone (a cross_entropy loss after the default
# sigmoid output, an elu output for the default bce loss) get the first of these that makes
# them run, so that an error in the fuzz is about the fuzzed value, not about the selection.
COMPANIONS = [
    (),
    ("loss=mse",),
    ("model.output_activation=softmax",),
    ("model.output_activation=softmax", "loss=cross_entropy"),
    ("model.output_activation=identity", "loss=mse"),
]


@functools.lru_cache(maxsize=None)
def _runnable(selector: tuple[str, ...]) -> tuple[str, ...]:
    from hydra import compose, initialize_config_module

    from backproplab.errors import ConfigError
    from backproplab.run.job import prepare

    for extra in COMPANIONS:
        with initialize_config_module("backproplab.conf", version_base="1.3"):
            cfg = compose("config", overrides=["logger=none", *BASE, *extra, *selector])
        try:
            prepare(cfg)
        except ConfigError:
            continue
        return (*extra, *selector)
    # data=csv without its path: the fuzzed key is data.path itself.
    assert selector == ("data=csv",), f"no companion makes {selector} run"
    return selector


values = st.one_of(
    st.sampled_from(NASTY),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30).map(
        lambda s: "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"
    ),
)


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzzdata") / "small.csv"
    path.write_text("x1,x2,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
    return path


@pytest.fixture(scope="module")
def targets(csv_path):
    return fuzz_targets(csv_path)


def test_every_group_and_option_is_fuzzed(targets):
    keys = {key for _selector, key in targets}
    # The composed config's own keys, option keys and activation hyperparameters are all there.
    for key in ("model.hidden", "data.batch_size", "trainer.epochs", "trainer.seed", "optimizer.lr", "initializer.seed",
                "optimizer.beta1", "data.n_samples", "data.path", "data.target", "logger.buffer.writer",
                "model.activation.alpha", "optimizer", "data"):
        assert key in keys, key


def check_outcome(code: int, stderr: str, key: str, tmp: Path, before: set[str]) -> None:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.strip() and not line.startswith("warning: ")]
    if code == 0:
        assert not errors, stderr
        return
    assert len(errors) == 1 and errors[0].startswith("error: "), (code, stderr)
    line = errors[0]
    if code == 1 and re.match(r"error: non-finite (loss|parameter) ", line):
        return  # a valid value that made training diverge (lr=1e308): a failed run, as documented
    assert code == 2, (code, stderr)
    # The key as typed, or (for a value Hydra cannot parse) the override that holds it. A
    # group's ``name`` is its choice, which messages name as typed on the command line:
    # ``optimizer.name=adamm`` is ``optimizer=adamm: unknown optimizer 'adamm'``.
    group = key.removesuffix(".name")
    assert key in line or (key.endswith(".name") and f"{group}=" in line), (key, line)
    # Refused before anything was written.
    assert {p.name for p in tmp.iterdir()} == before, sorted(p.name for p in tmp.iterdir())


BASE = ("trainer.epochs=1",)


def _args(selector, key, value, tmp: Path) -> list[str]:
    # Tracking, when the fuzzed key is one of its own, goes to a store in ``tmp``.
    if "logger=none" in selector or key == "logger.tracking_uri":
        logger: tuple[str, ...] = ()
    elif key.startswith("logger"):
        logger = ("logger=mlflow", f"logger.tracking_uri=sqlite:///{tmp}/mlflow.db")
    else:
        logger = ("logger=none",)
    return [*BASE, *logger, *selector, f"{key}={value}"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_in_process(data, targets, tmp_path, monkeypatch):
    cli_main = importlib.import_module("backproplab.cli.main")  # the package re-exports main(), the function
    from backproplab.hydra_app import task
    from backproplab.hydra_app.error_report import TRACEBACK_ENV

    started = []
    monkeypatch.setattr(task, "main", lambda: started.append(list(sys.argv[1:])))
    monkeypatch.setattr(sys, "argv", ["backproplab"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    monkeypatch.setenv(TRACEBACK_ENV, "0")
    monkeypatch.chdir(tmp_path)
    selector, key = data.draw(st.sampled_from(targets), label="key")
    value = data.draw(values, label="value")
    args = _args(selector, key, value, tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main._main(args)
    check_outcome(code, err.getvalue(), key, tmp_path, before)
    assert bool(started) == (code == 0), (code, started)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_real_command(data, targets, tmp_path_factory, cli_env):
    """The real command in a subprocess, training included, as a single run or a one-job sweep."""
    selector, key = data.draw(
        st.sampled_from([t for t in targets if not t[1].startswith(LONG_RUN_KEYS) and t[1] not in ("data", "logger")]), label="key"
    )
    value = data.draw(st.sampled_from(NASTY), label="value")
    tmp = tmp_path_factory.mktemp("fuzzrun")
    args = _args(selector, key, value, tmp)
    if data.draw(st.booleans(), label="multirun"):
        args = ["-m", *args]
    proc = subprocess.run(
        [sys.executable, "-m", "backproplab", *args], cwd=tmp, env=cli_env(), capture_output=True, text=True, timeout=300
    )
    check_outcome(proc.returncode, proc.stderr, key, tmp, set())
