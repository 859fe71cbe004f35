"""The servable model and the pictures of learning, from real CLI runs
into real sqlite stores: pyfunc predictions against the network's own forward pass, the Model
Registry, the image keys and steps with their bound, and a real ``mlflow models serve``."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

import backproplab as bp
from backproplab.errors import ConfigError
from backproplab.tracking.lifecycle.settings import TrackingSettings
from conftest import cli_env

pytestmark = pytest.mark.slow

# MLflow names an image file "<key with / as ~>+step+<step>+timestamp+..." ('%' before 3.x).
IMAGE_FILE = re.compile(r"^images/(?P<key>[^+%]+)[+%]step[+%](?P<step>\d+)[+%]timestamp[+%].*(?<!compressed)\.png$")


def _run(tmp: Path, *overrides: str) -> tuple[MlflowClient, str, str]:
    uri = f"sqlite:///{tmp}/mlflow.db"
    proc = subprocess.run(
        [sys.executable, "-m", "backproplab", f"logger.tracking_uri={uri}", *overrides],
        cwd=tmp, env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr.lower(), proc.stderr  # MLflow's notices stay out of the run's stderr
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("backproplab").experiment_id])
    assert run.info.status == "FINISHED"
    return client, run.info.run_id, uri


def _artifact(client: MlflowClient, run_id: str, path: str, dst: Path) -> Path:
    return Path(client.download_artifacts(run_id, path, str(dst)))


def _forward(
    client: MlflowClient, run_id: str, tmp: Path, X: np.ndarray, activation: str, output: str, standardize: bool = True
) -> np.ndarray:
    """What the network computes, from the run's own params.npz and standardize.npz."""
    with np.load(_artifact(client, run_id, "params.npz", tmp), allow_pickle=False) as p:
        params = {k: p[k] for k in p.files if k != "classes"}
    sizes = [params["W1"].shape[1]] + [params[f"W{l}"].shape[0] for l in range(1, len(params) // 2 + 1)]
    net = bp.build_network(sizes, activation, output)
    net.set_params(params)
    scaling = [a.path for a in client.list_artifacts(run_id)]
    if standardize and "standardize.npz" in scaling:
        with np.load(_artifact(client, run_id, "standardize.npz", tmp), allow_pickle=False) as s:
            X = (X - s["mean"]) / s["scale"]
    return net.predict(X)


def _images(client: MlflowClient, run_id: str) -> dict[str, list[int]]:
    steps: dict[str, list[int]] = {}
    for info in client.list_artifacts(run_id, "images"):
        match = IMAGE_FILE.match(info.path)
        if match:
            steps.setdefault(match["key"].replace("~", "/"), []).append(int(match["step"]))
    return {k: sorted(v) for k, v in steps.items()}


@pytest.fixture(scope="module")
def moons_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("moons")
    client, run_id, uri = _run(
        tmp, "data=moons", "data.standardize=true", "model.hidden=[6]", "model.activation=tanh", "trainer.epochs=12",
        "logger.images.max_per_key=4", "logger.register_model=moons-net",
    )
    return tmp, client, run_id, uri


def test_pyfunc_model_predicts_the_networks_outputs_with_standardisation(moons_run, monkeypatch):
    import mlflow.pyfunc

    tmp, client, run_id, uri = moons_run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    signature = model.metadata.signature
    assert signature.inputs.input_names() == ["x1", "x2"]
    assert signature.outputs.input_names() == ["1"]  # moons' labels are 0/1: one sigmoid, P(label 1)
    assert model.metadata.get_input_schema() is not None
    X = np.random.default_rng(1).uniform(-1.5, 2.5, size=(40, 2))  # raw units, as a user sends them
    got = model.predict(pd.DataFrame(X, columns=["x1", "x2"]))
    assert list(got.columns) == ["1"]
    expected = _forward(client, run_id, tmp, X, "tanh", "sigmoid")
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-12, atol=1e-15)
    # The comparison can tell: without the standardisation the same weights answer otherwise.
    assert not np.allclose(got.to_numpy(), _forward(client, run_id, tmp, X, "tanh", "sigmoid", standardize=False), atol=1e-3)
    files = {a.path for a in client.list_artifacts(run_id, "model")} | {
        a.path for a in client.list_artifacts(run_id, "model/artifacts")
    }
    assert {"model/MLmodel", "model/served_model.py", "model/input_example.json", "model/artifacts/weights.npz"} <= files
    assert not any(f.endswith((".pkl", ".pickle", ".cloudpickle")) for f in files)
    requirements = _artifact(client, run_id, "model/requirements.txt", tmp).read_text()
    assert f"backproplab=={bp.__version__}" in requirements and "numpy" in requirements


def test_registered_model_version_has_the_run_as_source(moons_run):
    _, client, run_id, _ = moons_run
    (version,) = client.search_model_versions("name='moons-net'")
    assert version.run_id == run_id
    assert str(version.version) == "1"
    # MLflow 3 points the version at the run's logged model (its location: MLflow's SQL registry
    # would look a models:/<id> source up in the global store, not this one), MLflow 2 at the
    # run's artifact path.
    outputs = getattr(client.get_run(run_id), "outputs", None)
    if outputs is not None and outputs.model_outputs:
        assert version.source == client.get_logged_model(outputs.model_outputs[0].model_id).artifact_location
    else:
        assert version.source == f"runs:/{run_id}/model", version.source


def test_images_at_several_steps_within_the_bound(moons_run):
    _, client, run_id, _ = moons_run
    steps = _images(client, run_id)
    # 12 epochs of ceil(160 / 32) = 5 iterations; at most 4 pictures per key: the untrained
    # network at step 0 (where MLflow's image card opens), then 3 epochs, the last at the end.
    assert set(steps) == {"decision_boundary", "histograms/W1", "histograms/W2"}
    for key, found in steps.items():
        assert len(found) == 4, (key, found)
        assert len(set(found)) == 4 and found[0] == 0 and found[-1] == 60, (key, found)
        assert all(s % 5 == 0 for s in found), (key, found)  # at epoch ends, as the epoch metrics


def test_images_and_model_can_be_turned_off_and_a_bad_setting_is_one_line(tmp_path, cli):
    client, run_id, _ = _run(tmp_path, "logger.log_model=false", "logger.images.enabled=false")
    names = {a.path for a in client.list_artifacts(run_id)}
    assert "model" not in names and "images" not in names and "params.npz" in names
    proc = cli("logger.register_model=a/b", f"logger.tracking_uri=sqlite:///{tmp_path}/bad.db")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: logger.register_model must be a registered model name (non-empty, without '/' or ':', not '.' or starting with '..') "
        "or null, got 'a/b'"
    ]
    assert not (tmp_path / "bad.db").exists()


@pytest.mark.parametrize(
    "logger, message",
    [
        ({"register_model": "x:1"}, "logger.register_model must be a registered model name (non-empty, without '/' or ':', not"),
        ({"register_model": "..up"}, "logger.register_model must be a registered model name (non-empty, without '/' or ':', not"),
        ({"register_model": "m", "log_model": False}, "logger.register_model='m' registers the logged model, but logger.log_model=false"),
        ({"images": {"max_per_key": 0}}, "logger.images.max_per_key must be an integer >= 1, got 0"),
        ({"images": {"every": 3}}, "logger.images has no key 'every'; valid: enabled, max_per_key"),
        ({"images": {"enabled": "yes"}}, "logger.images.enabled must be true or false, got 'yes'"),
        ({"log_model": 1}, "logger.log_model must be true or false, got 1"),
    ],
)
def test_bad_model_and_image_settings_name_the_key(logger, message):
    with pytest.raises(ConfigError) as info:
        TrackingSettings.from_mapping({"name": "mlflow", **logger})
    assert str(info.value).startswith(message), str(info.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_answers_with_the_networks_outputs(tmp_path):
    # The worked example: three features, no decision boundary, a model served as a user would.
    client, run_id, uri = _run(tmp_path, "logger.images.max_per_key=2")
    assert set(_images(client, run_id)) == {"histograms/W1", "histograms/W2"}
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", f"runs:/{run_id}/model",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=cli_env(MLFLOW_TRACKING_URI=uri), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        X = np.array([[7.0, 8.0, 10.0], [0.0, 1.0, -2.0], [3.5, -1.0, 0.25]])
        body = json.dumps({"dataframe_split": {"columns": ["x1", "x2", "x3"], "data": X.tolist()}}).encode()
        deadline = time.monotonic() + 240  # a hang guard: the server imports MLflow and backproplab first
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "mlflow models serve never answered"
                time.sleep(1)
        got = pd.DataFrame(answer["predictions"])
        expected = _forward(client, run_id, tmp_path, X, "sigmoid", "sigmoid")
        assert list(got.columns) == ["1"]
        np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-12)
        assert 0.9 < got.iloc[0, 0] < 1  # the worked example's one example, trained towards its target 1
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.parametrize("epochs, bound", [(1, 10), (7, 10), (10, 10), (12, 4), (1000, 10), (3, 1)])
def test_chosen_epochs_are_bounded_spread_and_end_with_the_last(epochs, bound):
    from backproplab.tracking.records.images import chosen_epochs

    chosen = chosen_epochs(epochs, bound)
    assert len(chosen) == min(epochs, bound) and chosen == sorted(set(chosen))
    assert chosen[-1] == epochs - 1 and chosen[0] >= 0
    if len(chosen) > 2:  # evenly spread: no gap more than one epoch longer than another
        gaps = np.diff([-1, *chosen])
        assert gaps.max() - gaps.min() <= 1, chosen


class _StopAfter(bp.Callback):
    def __init__(self, iterations: int) -> None:
        self.iterations = iterations

    def on_iteration(self, step) -> None:
        if step.iteration + 1 == self.iterations:
            raise KeyboardInterrupt


def test_snapshots_copy_params_at_epoch_ends_and_the_last_batch_gradients():
    from backproplab.tracking.records.images import Snapshots

    class Recorder(bp.Callback):
        """What the trainer shows at each iteration, to compare the snapshots with."""

        def __init__(self, snapshots: Snapshots) -> None:
            self.snapshots, self.grads, self.params = snapshots, {}, {}

        def on_iteration(self, step) -> None:
            self.grads[step.iteration] = {k: np.array(v) for k, v in step.grads.items()}
            if step.iteration == self.snapshots.grad_iteration:
                self.snapshots.grads(step)

        def on_epoch_end(self, summary) -> None:
            self.params[summary.iterations] = {k: np.array(v) for k, v in net.params.items()}
            self.snapshots.epoch_end(summary)

    X = np.random.default_rng(0).normal(size=(20, 2))
    y = (X[:, 0] > 0).astype(float)
    net = bp.build_network([2, 3, 1], "tanh", "sigmoid")
    untrained = {k: np.array(v) for k, v in net.params.items()}
    snapshots = Snapshots(net.params, epochs=9, iterations_per_epoch=4, max_per_key=4)
    recorder = Recorder(snapshots)
    bp.build_trainer(net, batch_size=5, epochs=9, callbacks=[recorder]).fit(X, y)
    assert [s.step for s in snapshots.taken] == [0, 12, 24, 36] and [s.epoch for s in snapshots.taken] == [-1, 2, 5, 8]
    first = snapshots.taken[0]
    assert first.grads is None and not np.array_equal(first.params["W1"], net.params["W1"])
    for name in net.params:
        np.testing.assert_array_equal(first.params[name], untrained[name])  # a copy, not a view of the trained ones
    for snap in snapshots.taken[1:]:
        for name in net.params:
            np.testing.assert_array_equal(snap.params[name], recorder.params[snap.step][name])
            np.testing.assert_array_equal(snap.grads[name], recorder.grads[snap.step - 1][name])  # the epoch's last batch
    snapshots.finish(None)
    assert len(snapshots.taken) == 4  # a run that reached its last epoch gets nothing more


@pytest.mark.parametrize("bound, steps", [(1, [36]), (2, [0, 36]), (3, [0, 16, 36])])
def test_the_untrained_network_counts_against_the_bound(bound, steps):
    from backproplab.tracking.records.images import Snapshots

    net = bp.build_network([2, 3, 1], "tanh", "sigmoid")
    snapshots = Snapshots(net.params, epochs=9, iterations_per_epoch=4, max_per_key=bound)

    class Ends(bp.Callback):
        def on_epoch_end(self, summary) -> None:
            snapshots.epoch_end(summary)

    X = np.random.default_rng(0).normal(size=(20, 2))
    bp.build_trainer(net, batch_size=5, epochs=9, callbacks=[Ends()]).fit(X, (X[:, 0] > 0).astype(float))
    assert [s.step for s in snapshots.taken] == steps


def test_every_key_has_a_picture_at_step_0_where_mlflows_card_opens():
    """MLflow 3.17's image card starts at step 0 and draws only a picture logged at exactly its
    step: the untrained network's boundary and weight histograms are that first view."""
    from backproplab.run.data import Dataset
    from backproplab.tracking.records.images import ImageThread, PlaneData, Snapshots

    net = bp.build_network([2, 4, 1], "tanh", "sigmoid")
    snapshots = Snapshots(net.params, epochs=3, iterations_per_epoch=4, max_per_key=3)

    class Both(bp.Callback):
        def on_iteration(self, step) -> None:
            if step.iteration == snapshots.grad_iteration:
                snapshots.grads(step)

        def on_epoch_end(self, summary) -> None:
            snapshots.epoch_end(summary)

    X = np.random.default_rng(1).normal(size=(20, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)
    bp.build_trainer(net, batch_size=5, epochs=3, callbacks=[Both()]).fit(X, y)
    dataset = Dataset("quadrants", "classification", X, y.astype(int), n_classes=2, feature_names=["x1", "x2"])
    images = ImageThread(snapshots, PlaneData.of(dataset, None), list(net.activations), 3).wait()
    steps: dict[str, list[int]] = {}
    for key, step, pixels in images:
        steps.setdefault(key, []).append(step)
        assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.std() > 0, key  # a picture, not a blank
    assert steps == {"decision_boundary": [0, 8, 12], "histograms/W1": [0, 8, 12], "histograms/W2": [0, 8, 12]}
    first, last = (next(p for k, s, p in images if k == "decision_boundary" and s == step) for step in (0, 12))
    assert not np.array_equal(first, last)  # the boundary moved


def test_a_run_stopped_early_gets_its_last_boundary_where_it_stopped():
    from backproplab.tracking.records.images import Snapshots

    X = np.random.default_rng(0).normal(size=(20, 2))
    net = bp.build_network([2, 3, 1], "tanh", "sigmoid")
    snapshots = Snapshots(net.params, epochs=9, iterations_per_epoch=4, max_per_key=4)

    class Last(bp.Callback):
        step = None

        def on_iteration(self, step) -> None:
            self.step = step

        def on_epoch_end(self, summary) -> None:
            snapshots.epoch_end(summary)

    last = Last()
    with pytest.raises(KeyboardInterrupt):
        bp.build_trainer(net, batch_size=5, epochs=9, callbacks=[last, _StopAfter(30)]).fit(X, (X[:, 0] > 0).astype(float))
    snapshots.finish(last.step)
    assert [s.step for s in snapshots.taken] == [0, 12, 24, 30]
    assert snapshots.taken[-1].grads is None  # a boundary, no histogram: no whole epoch's gradients
