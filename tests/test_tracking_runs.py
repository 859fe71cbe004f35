"""Tracked runs against a real sqlite MLflow store: what is logged, and every status path.

One store per module (creating an MLflow sqlite schema takes seconds); each test uses its own
experiment, named after the test.
"""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

import backproplab as bp
from backproplab.errors import ConfigError, NonFiniteLossError
from backproplab.run.context import ComponentInfo, RunContext
from backproplab.tracking import check_tracking, track_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    # MLflow puts a sqlite store's artifacts in ./mlruns of the directory the store was first
    # opened from: open it, and run every test, from the temporary directory.
    root = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        yield "sqlite:///" + str(root / "mlflow.db")


@pytest.fixture
def experiment(request) -> str:
    return request.node.name


@pytest.fixture(scope="module")
def seed_example(shipped_data) -> dict:
    return json.loads((shipped_data / "seed_example.json").read_text())


def components(**names: str) -> list[ComponentInfo]:
    reg = bp.get_registry()
    kinds = {"activation": "activation", "output_activation": "activation", "loss": "loss", "optimizer": "optimizer", "initializer": "initializer"}
    return [ComponentInfo(kinds[role], role, name, reg.source_of(kinds[role], name)) for role, name in names.items()]


def worked_example_network() -> bp.Network:
    return bp.build_network([3, 4, 1], "sigmoid", initializer={"name": "legacy_randn", "seed": 3, "scale": 0.1})


def worked_example_context(net: bp.Network, epochs: int = 7) -> RunContext:
    config = {
        "model": {"hidden": [4], "activation": "sigmoid", "output_activation": "sigmoid"},
        "optimizer": {"name": "sgd", "lr": 0.5},
        "loss": {"name": "bce"},
        "initializer": {"name": "legacy_randn", "seed": 3, "scale": 0.1},
        "data": {"name": "seed_example", "batch_size": 1},
        "trainer": {"epochs": epochs, "shuffle": False},
    }
    return RunContext(
        config=config,
        network=net,
        components=components(activation="sigmoid", output_activation="sigmoid", loss="bce", optimizer="sgd", initializer="legacy_randn"),
        overrides=["trainer.epochs=7", "optimizer.lr=0.5"],
        task="binary",
        n_train=1,
        iterations_per_epoch=1,
        epochs=epochs,
    )


def logger(store: str, experiment: str, **extra) -> dict:
    return {"name": "mlflow", "tracking_uri": store, "experiment_name": experiment, **extra}


def only_run(store: str, experiment: str):
    client = MlflowClient(store)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} was not created"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


def history(client: MlflowClient, run, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


def train_worked_example(store, experiment, epochs=7, callbacks=(), **logger_extra):
    net = worked_example_network()
    with track_run(worked_example_context(net, epochs), logger(store, experiment, **logger_extra)) as tracker:
        trainer = bp.build_trainer(
            net, loss="bce", optimizer={"name": "sgd", "lr": 0.5}, batch_size=1, epochs=epochs, shuffle=False,
            callbacks=[tracker, *callbacks],
        )
        hist = trainer.fit(np.array([[7.0, 8.0, 10.0]]), np.array([1.0]))
    return net, hist


# -- what a finished run holds ------------------------------------------------------------------
@pytest.mark.parametrize("background", [False, True], ids=["inline", "background"])
def test_worked_example_logs_the_articles_gradients(store, experiment, seed_example, background):
    net, hist = train_worked_example(store, experiment, buffer={"background": background})
    client, run = only_run(store, experiment)
    assert run.info.status == "FINISHED"

    grads = seed_example["iteration_0"]["grad"]
    logged = 0
    for name, value in grads.items():
        arr = np.atleast_2d(np.asarray(value)) if name.startswith("W") else np.asarray(value)
        for index, expected in np.ndenumerate(arr):
            layer = name[1:]
            key = f"grad/w{layer}_{index[0] + 1}_{index[1] + 1}" if name.startswith("W") else f"grad/b{layer}_{index[0] + 1}"
            step0 = dict(history(client, run, key))[0]
            assert step0 == pytest.approx(expected, abs=1e-6), key
            logged += 1
    assert logged == 21

    # param/* at step t are the values used in iteration t's forward pass.
    initial, after = seed_example["initial"], seed_example["iteration_0"]["after_update"]
    for j in range(4):
        for k in range(3):
            steps = dict(history(client, run, f"param/w1_{j + 1}_{k + 1}"))
            assert steps[0] == pytest.approx(initial["W1"][j][k], abs=1e-12)
            assert steps[1] == pytest.approx(after["W1"][j][k], abs=1e-6)

    losses = history(client, run, "batch/loss")
    assert [s for s, _ in losses] == list(range(7))
    assert [v for _, v in losses] == pytest.approx(hist.losses, rel=1e-12)
    assert losses[0][1] == pytest.approx(seed_example["iteration_0"]["loss"], abs=1e-6)
    for key in ("grad_norm/W1", "grad_norm/b2", "weight_norm/W2", "grad/w2_1_4", "param/b1_4"):
        assert [s for s, _ in history(client, run, key)] == list(range(7)), key
    norm0 = dict(history(client, run, "grad_norm/W1"))[0]
    assert norm0 == pytest.approx(np.linalg.norm(np.asarray(grads["W1"])), abs=1e-5)
    # Per epoch: step = iterations completed at the end of the epoch.
    train = history(client, run, "train/loss")
    assert [s for s, _ in train] == list(range(1, 8))
    assert [v for _, v in train] == pytest.approx([e.train_loss for e in hist.epochs])
    assert history(client, run, "train/accuracy")[-1] == (7, 1.0)
    assert "val/loss" not in run.data.metrics  # no validation data: not applicable, not logged
    # The final numbers, once, at the last epoch's step; no validation split: no final/val_*.
    assert {k for k in run.data.metrics if k.startswith("final/")} == {"final/train_loss", "final/train_accuracy", "final/epochs"}
    assert history(client, run, "final/epochs") == [(7, 7.0)]
    assert history(client, run, "final/train_loss") == [(7, pytest.approx(hist.epochs[-1].train_loss, rel=1e-12))]
    assert history(client, run, "final/train_accuracy") == [(7, 1.0)]
    # A single run is named by its data set and its network's widths.
    assert run.info.run_name == "seed_example mlp 3-4-1"
    # epoch = epochs completed at each step (one iteration per epoch here), once per step, so
    # both the per-iteration and the per-epoch metrics can be plotted against it.
    assert history(client, run, "epoch") == [(s, float(s)) for s in range(8)]

    params, tags = run.data.params, run.data.tags
    assert params["optimizer.lr"] == "0.5" and params["data.batch_size"] == "1" and params["model.hidden"] == "[4]"
    assert tags["component.loss"] == "bce"
    assert tags["component.loss.plugin"] == f"backproplab {bp.__version__}"
    assert tags["component.initializer"] == "legacy_randn"
    assert tags["backproplab.version"] == bp.__version__
    assert tags["hydra.overrides"] == "trainer.epochs=7 optimizer.lr=0.5"
    assert "failure_reason" not in tags

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for a in client.list_artifacts(run.info.run_id, "plots")
    }
    assert {"config.yaml", "params.npz", "plots/loss.png", "plots/grad_norms.png"} <= artifacts
    assert "trace.npz" not in artifacts
    local = Path(client.download_artifacts(run.info.run_id, "", dst_path=str(Path(store[10:]).parent / run.info.run_id)))
    with np.load(local / "params.npz", allow_pickle=False) as final:
        assert sorted(final.files) == ["W1", "W2", "b1", "b2"]
        for name in final.files:
            np.testing.assert_array_equal(final[name], net.params[name])
    assert yaml.safe_load((local / "config.yaml").read_text())["optimizer"] == {"name": "sgd", "lr": 0.5}
    for png in ("loss.png", "grad_norms.png"):
        assert (local / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_n_iterations_thins_per_iteration_metrics_only(store, experiment):
    train_worked_example(store, experiment, every_n_iterations=3)
    client, run = only_run(store, experiment)
    assert [s for s, _ in history(client, run, "batch/loss")] == [0, 3, 6]
    assert [s for s, _ in history(client, run, "grad/w1_1_1")] == [0, 3, 6]
    assert [s for s, _ in history(client, run, "train/loss")] == list(range(1, 8))
    # the epoch ends a thinned-out iteration row misses get their own epoch point, and no step twice
    assert history(client, run, "epoch") == [(s, float(s)) for s in range(8)]


def test_trace_keeps_every_iteration_at_full_precision(store, experiment, seed_example):
    net, hist = train_worked_example(store, experiment, trace=True, every_n_iterations=5)
    client, run = only_run(store, experiment)
    path = client.download_artifacts(run.info.run_id, "trace.npz", dst_path=str(Path(store[10:]).parent / experiment))
    with np.load(path, allow_pickle=False) as trace:
        np.testing.assert_array_equal(trace["loss"], hist.losses)
        np.testing.assert_array_equal(trace["iteration"], np.arange(7))
        np.testing.assert_allclose(trace["grad_W1"][0], seed_example["iteration_0"]["grad"]["W1"], atol=1e-6)
        np.testing.assert_array_equal(trace["param_W1"][0], seed_example["initial"]["W1"])
        np.testing.assert_array_equal(trace["param_b2"].shape, (7, 1))


def test_large_network_logs_norms_but_not_elements(store, experiment, shipped_data):
    data = np.loadtxt(shipped_data / "marks.csv", delimiter=",", skiprows=1)
    X, y = data[:, 1:], data[:, 0]
    X = (X - X.mean(0)) / X.std(0)
    net = bp.build_network([3, 8, 8, 1], "tanh", "sigmoid", initializer="xavier_normal", seed=0)
    first: dict = {}

    class FirstGrads(bp.Callback):
        def on_iteration(self, step):
            if step.iteration == 0:
                first.update({k: np.array(v) for k, v in step.grads.items()})
                first.update({"param_" + k: np.array(v) for k, v in step.params.items()})

    context = RunContext(
        config={"model": {"hidden": [8, 8]}, "data": {"batch_size": 20}},
        network=net,
        components=components(activation="tanh", loss="bce"),
        iterations_per_epoch=20,
        epochs=3,
    )
    with track_run(context, logger(store, experiment)) as tracker:
        trainer = bp.build_trainer(net, "bce", {"name": "sgd", "lr": 0.1}, batch_size=20, epochs=3, seed=1, callbacks=[tracker, FirstGrads()])
        trainer.fit(X, y, validation_data=(X[:50], y[:50]))
    client, run = only_run(store, experiment)
    keys = set(run.data.metrics)
    assert not any(k.startswith(("grad/", "param/")) for k in keys)
    assert {"batch/loss", "grad_norm/W3", "grad_norm/b3", "weight_norm/W3", "train/loss", "val/loss", "train/accuracy", "val/accuracy"} <= keys
    assert run.data.tags["backproplab.elementwise_metrics"] == "false"
    assert len(history(client, run, "batch/loss")) == 60
    assert [s for s, _ in history(client, run, "val/accuracy")] == [20, 40, 60]
    assert dict(history(client, run, "grad_norm/W2"))[0] == pytest.approx(np.linalg.norm(first["W2"]), rel=1e-12)
    assert dict(history(client, run, "weight_norm/W1"))[0] == pytest.approx(np.linalg.norm(first["param_W1"]), rel=1e-12)


# -- status paths -------------------------------------------------------------------------------
def test_non_finite_loss_fails_the_run_with_a_reason(store, experiment, capfd):
    # A linear network with a huge step on large targets overflows within a few iterations;
    # gradients and weights reach ~1e300 first, which the plots must survive.
    net = bp.build_network([3, 4, 1], "identity", initializer={"name": "legacy_randn", "seed": 3, "scale": 0.1})
    context = RunContext(config={"optimizer": {"lr": 1e4}}, network=net, components=components(loss="mse"))
    with pytest.raises(NonFiniteLossError) as info:
        with track_run(context, logger(store, experiment)) as tracker:
            bp.build_trainer(net, "mse", {"name": "sgd", "lr": 1e4}, batch_size=1, epochs=50, callbacks=[tracker]).fit(
                [[7.0, 8.0, 10.0]], [1.0]
            )
    assert "while ending" not in capfd.readouterr().err
    client, run = only_run(store, experiment)
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} == {"plots/loss.png", "plots/grad_norms.png"}
    assert run.info.status == "FAILED"
    reason = run.data.tags["failure_reason"]
    assert reason.startswith("non-finite loss") and "\n" not in reason
    # The iterations before the non-finite one were flushed, all finite.
    losses = history(client, run, "batch/loss")
    assert [s for s, _ in losses] == list(range(info.value.iteration))
    assert all(math.isfinite(v) for _, v in losses)


def test_exception_fails_the_run_after_flushing(store, experiment):
    class Boom(bp.Callback):
        def on_iteration(self, step):
            if step.iteration == 4:
                raise RuntimeError("boom\nsecond line")

    with pytest.raises(RuntimeError, match="boom"):
        train_worked_example(store, experiment, epochs=50, callbacks=[Boom()])
    client, run = only_run(store, experiment)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "RuntimeError: boom; second line"  # as the console words it
    assert [s for s, _ in history(client, run, "batch/loss")] == [0, 1, 2, 3, 4]
    assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_logger_none_touches_no_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    net = worked_example_network()
    with track_run(worked_example_context(net), {"name": "none"}) as tracker:
        assert type(tracker) is bp.Callback
        bp.build_trainer(net, "bce", {"name": "sgd", "lr": 0.5}, batch_size=1, epochs=2, callbacks=[tracker]).fit(
            [[7.0, 8.0, 10.0]], [1.0]
        )
    assert check_tracking({"name": "none"}) is None
    assert list(tmp_path.iterdir()) == []


def test_null_tracking_uri_honours_mlflow_tracking_uri(store, experiment, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    train_worked_example(store=None, experiment=experiment, epochs=2)
    _, run = only_run(store, experiment)
    assert run.info.status == "FINISHED"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_one_line_before_training(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    net = worked_example_network()
    entered = False
    with pytest.raises(ConfigError) as info:
        with track_run(worked_example_context(net), {"name": "mlflow", "tracking_uri": uri}):
            entered = True
    assert not entered
    message = str(info.value)
    assert uri in message and "not reachable" in message and "\n" not in message
    with pytest.raises(ConfigError, match="does not exist"):
        check_tracking({"name": "mlflow", "tracking_uri": f"sqlite:///{tmp_path}/missing/dir/mlflow.db"})


# -- interrupts: a real process, a real signal --------------------------------------------------
INTERRUPTED_SCRIPT = textwrap.dedent(
    """
    import sys, time, numpy as np, backproplab as bp
    from backproplab.run.context import RunContext
    from backproplab.tracking import track_run

    class Ready(bp.Callback):
        # Announce that training is under way, then slow down so the signal lands after a
        # bounded number of iterations (the flush on exit writes all of them).
        def on_iteration(self, step):
            if step.iteration == 200:
                print("READY", flush=True)
            elif step.iteration > 200:
                time.sleep(0.002)

    net = bp.build_network([3, 4, 1], "sigmoid", initializer={"name": "legacy_randn", "seed": 3, "scale": 0.1})
    ctx = RunContext(config={"trainer": {"epochs": 10**7}}, network=net, components=[])
    logger = {"name": "mlflow", "tracking_uri": sys.argv[1], "experiment_name": sys.argv[2],
              # nothing is flushed before the signal: the metrics seen afterwards prove the final flush
              "buffer": {"max_metrics": 10**8, "flush_interval_s": 3600}}
    trainer = None
    try:
        with track_run(ctx, logger) as tracker:
            trainer = bp.build_trainer(net, "bce", {"name": "sgd", "lr": 0.5}, batch_size=1, epochs=10**7,
                                       shuffle=False, callbacks=[tracker, Ready()])
            trainer.fit([[7.0, 8.0, 10.0]], [1.0])
    except KeyboardInterrupt as exc:
        print("INTERRUPTED", type(exc).__name__, trainer.iteration, flush=True)
        sys.exit(130)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_kills_the_run_after_flushing(tmp_path, store, experiment, signum):
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), store, experiment], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", line + proc.stderr.read()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    # The run's own lines (its MLflow link) come before the script's.
    (ended,) = [line for line in out.splitlines() if line.startswith("INTERRUPTED ")]
    name, iterations = ended.split()[1], int(ended.split()[2])
    assert name == ("Terminated" if signum == signal.SIGTERM else "KeyboardInterrupt")
    client, run = only_run(store, experiment)
    assert run.info.status == "KILLED"
    steps = [s for s, _ in history(client, run, "batch/loss")]
    who = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    # Where it stopped, counted from 1 as the console counts: one iteration per epoch here.
    assert run.data.tags["failure_reason"] == f"interrupted by {who} at epoch {len(steps)}, iteration {len(steps)}"
    assert iterations >= 200
    assert steps == list(range(len(steps))) and len(steps) in (iterations, iterations + 1)
    assert len(history(client, run, "grad/w1_1_1")) == len(steps)
    # A KILLED run still carries the final numbers of the epochs it completed.
    (last_step, last_loss), = history(client, run, "train/loss")[-1:]
    assert history(client, run, "final/train_loss") == [(last_step, last_loss)]


def test_a_server_that_never_answers_is_one_line_after_a_bounded_wait():
    """A port that accepts connections and then says nothing (a hung server, a wrong service)
    must not leave the user waiting on MLflow's retries: the health check's own timeout, well
    under the 10 s the user is promised, ends it with one line."""
    from backproplab.tracking.transport import reachability, store

    assert reachability.HEALTH_TIMEOUT_S < 10 and float(store.CHECK_HTTP_TIMEOUT_S) < 10
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or writes
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ConfigError) as info:
            check_tracking({"name": "mlflow", "tracking_uri": uri})
    message = str(info.value)
    assert message.startswith(f"MLflow tracking server {uri} is not reachable (") and "\n" not in message
    assert "timed out" in message
