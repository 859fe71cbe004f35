"""Unit tests of tracking's pure parts: names, layout, config flattening, buffer, settings,
and the sweep-parent hand-over. No MLflow store is touched here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from backproplab.errors import ConfigError
from backproplab.tracking.lifecycle import parent as sweep_parent
from backproplab.tracking.transport.buffer import MAX_METRICS_PER_BATCH, BatchWriter, Block, LogBatchSink
from backproplab.tracking.lifecycle.callback import MetricBuffer
from backproplab.tracking.records.metric_names import MetricLayout, element_names
from backproplab.tracking.records.params import flatten, param_batches
from backproplab.tracking.lifecycle.settings import TrackingSettings


def worked_example_params() -> dict[str, np.ndarray]:
    return {"W1": np.zeros((4, 3)), "b1": np.zeros(4), "W2": np.zeros((1, 4)), "b2": np.zeros(1)}


# -- names --------------------------------------------------------------------------------------
def test_element_names_follow_the_article_notation():
    # w^l_jk: row j (neuron), column k (input), both from 1.
    assert element_names("W1", (2, 3)) == ["w1_1_1", "w1_1_2", "w1_1_3", "w1_2_1", "w1_2_2", "w1_2_3"]
    assert element_names("b2", (3,)) == ["b2_1", "b2_2", "b2_3"]
    with pytest.raises(ValueError, match="notation"):
        element_names("gamma", (3,))


def test_raveled_weights_line_up_with_their_names():
    W = np.arange(12.0).reshape(4, 3)
    names = element_names("W1", W.shape)
    by_name = dict(zip(names, W.ravel()))
    for j in range(1, 5):
        for k in range(1, 4):
            assert by_name[f"w1_{j}_{k}"] == W[j - 1, k - 1]


def test_layout_of_the_worked_example_has_every_element():
    layout = MetricLayout.for_params(worked_example_params(), elementwise_max_params=64)
    keys = layout.keys
    assert keys[0] == "batch/loss"
    assert keys[1:7] == (
        "grad_norm/W1", "grad_norm/b1", "weight_norm/W1", "grad_norm/W2", "grad_norm/b2", "weight_norm/W2",
    )
    assert len([k for k in keys if k.startswith("grad/")]) == 21
    assert len([k for k in keys if k.startswith("param/")]) == 21
    assert {"grad/w1_4_3", "grad/b1_4", "grad/w2_1_4", "grad/b2_1", "param/w1_1_1", "param/b2_1"} <= set(keys)
    assert keys[-1] == "epoch"  # after every summary column the plots keep
    assert len(set(keys)) == len(keys) == 1 + 6 + 42 + 1


def test_layout_drops_elements_above_the_threshold():
    params = worked_example_params()  # 21 parameters
    assert MetricLayout.for_params(params, elementwise_max_params=21).elementwise
    layout = MetricLayout.for_params(params, elementwise_max_params=20)
    assert not layout.elementwise
    assert layout.keys == ("batch/loss", "grad_norm/W1", "grad_norm/b1", "weight_norm/W1", "grad_norm/W2", "grad_norm/b2", "weight_norm/W2", "epoch")


def test_norms_are_computed_from_elements_at_flush():
    params = {"W1": np.zeros((2, 2)), "b1": np.zeros(2)}
    layout = MetricLayout.for_params(params, 64)
    row = np.zeros((1, layout.n_columns))
    col = {k: i for i, k in enumerate(layout.keys)}
    g_w, g_b, w = np.array([3.0, 0, 0, 4.0]), np.array([1.0, 0]), np.array([0, 0, 6.0, 8.0])
    for i, v in enumerate(g_w):
        row[0, col[f"grad/w1_{i // 2 + 1}_{i % 2 + 1}"]] = v
    for i, v in enumerate(g_b):
        row[0, col[f"grad/b1_{i + 1}"]] = v
    for i, v in enumerate(w):
        row[0, col[f"param/w1_{i // 2 + 1}_{i % 2 + 1}"]] = v
    layout.finish_rows(row)
    assert row[0, col["grad_norm/W1"]] == pytest.approx(5.0)
    assert row[0, col["grad_norm/b1"]] == pytest.approx(1.0)
    assert row[0, col["weight_norm/W1"]] == pytest.approx(10.0)


# -- params -------------------------------------------------------------------------------------
def test_flatten_gives_dotted_keys_and_yaml_spelled_values():
    config = {
        "optimizer": {"name": "sgd", "lr": 0.5, "nesterov": False},
        "data": {"batch_size": 20, "path": None},
        "model": {"hidden": [8, 8], "extra": {}},
    }
    assert flatten(config) == {
        "optimizer.name": "sgd",
        "optimizer.lr": "0.5",
        "optimizer.nesterov": "false",
        "data.batch_size": "20",
        "data.path": "null",
        "model.hidden": "[8, 8]",
        "model.extra": "{}",
    }


def test_run_params_leave_out_the_tracking_settings_and_nulls():
    from backproplab.tracking.records.params import run_params, tracking_tag

    config = {
        "optimizer": {"name": "sgd", "lr": 0.5, "nesterov": False},
        "data": {"batch_size": 20, "path": None, "features": None},
        "logger": {"name": "mlflow", "tracking_uri": None, "buffer": {"max_metrics": 10}},
    }
    assert run_params(config) == {
        "optimizer.name": "sgd", "optimizer.lr": "0.5", "optimizer.nesterov": "false", "data.batch_size": "20",
    }
    assert json.loads(tracking_tag(config)) == config["logger"]
    assert tracking_tag({"optimizer": {}}) is None


def test_flatten_truncates_values_to_mlflows_limit():
    flat = flatten({"note": "x" * (MAX_PARAM_VAL_LENGTH + 50)})
    assert len(flat["note"]) == MAX_PARAM_VAL_LENGTH
    assert flat["note"].endswith("[truncated]")


def test_params_are_sent_at_most_100_per_batch():
    batches = list(param_batches({f"k{i:03d}": str(i) for i in range(250)}))
    assert [len(b) for b in batches] == [100, 100, 50]
    assert sorted(p.key for b in batches for p in b) == [f"k{i:03d}" for i in range(250)]


# -- buffer -------------------------------------------------------------------------------------
def test_block_builds_chunks_of_at_most_1000_metrics_in_step_order():
    keys = tuple(f"k{i}" for i in range(49))
    rows = 45
    values = np.arange(rows * 49, dtype=float).reshape(rows, 49)
    block = Block(keys, np.arange(rows), np.full(rows, 1234), values, [("train/loss", 0.5, 99, 7)])
    chunks = list(block.chunks())
    assert [len(c) for c in chunks] == [1000, 1000, 206]
    assert all(len(c) <= MAX_METRICS_PER_BATCH for c in chunks)
    flat = [m for c in chunks for m in c]
    assert (flat[0].key, flat[0].value, flat[0].step, flat[0].timestamp) == ("train/loss", 0.5, 7, 99)
    assert (flat[1].key, flat[1].value, flat[1].step) == ("k0", 0.0, 0)
    assert (flat[-1].key, flat[-1].value, flat[-1].step) == ("k48", float(rows * 49 - 1), rows - 1)


class RecordingClient:
    """Stands in for the network boundary only: records what would be sent."""

    def __init__(self, fail: bool = False):
        self.calls: list[list] = []
        self.fail = fail

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        if self.fail:
            raise RuntimeError("store is gone")
        self.calls.append(list(metrics))


@pytest.mark.parametrize("background", [False, True])
def test_writer_sends_every_buffered_row_once(background):
    layout = MetricLayout.for_params({"W1": np.zeros((1, 1)), "b1": np.zeros(1)}, 0)
    buf = MetricBuffer(layout, max_metrics=1000)
    client = RecordingClient()
    writer = BatchWriter(LogBatchSink(client, "run"), "run", background=background)
    for i in range(buf.capacity):
        buf.values[i] = [i, 4.0, 9.0, 16.0, i / 10]  # squared norms on the non-elementwise path
        buf.steps[i] = i
        buf.times[i] = 1.0
        buf.n += 1
    writer.submit(buf.take())
    writer.close()
    sent = [m for call in client.calls for m in call]
    assert len(sent) == buf.capacity * layout.n_columns == writer.metrics_written
    assert {m.key: m.value for m in sent if m.step == 3} == {
        "batch/loss": 3.0, "grad_norm/W1": 2.0, "grad_norm/b1": 3.0, "weight_norm/W1": 4.0, "epoch": 0.3,
    }
    assert buf.take() is None


def test_background_write_error_reaches_the_training_thread():
    layout = MetricLayout.for_params({"W1": np.zeros((1, 1)), "b1": np.zeros(1)}, 0)
    block = Block(layout.keys, np.arange(1), np.zeros(1, dtype=np.int64), np.zeros((1, 5)))
    writer = BatchWriter(LogBatchSink(RecordingClient(fail=True), "run"), "run", background=True)
    writer.submit(block)
    with pytest.raises(RuntimeError, match="store is gone"):
        writer.close()


# -- settings -----------------------------------------------------------------------------------
def test_settings_defaults_and_none():
    s = TrackingSettings.from_mapping({"name": "mlflow"})
    assert (s.enabled, s.tracking_uri, s.experiment_name, s.every_n_iterations, s.elementwise_max_params) == (
        True, None, "backproplab", 1, 64,
    )
    assert not TrackingSettings.from_mapping({"name": "none"}).enabled


def test_flush_interval_auto_is_short_on_sqlite_only():
    # kill -9 loses what was not flushed: about a second on sqlite, where a flush is cheap.
    auto = TrackingSettings.from_mapping({"name": "mlflow"})
    assert auto.flush_interval_for(sqlite=True) == 1.0 and auto.flush_interval_for(sqlite=False) == 15.0
    assert auto.on_server_loss == "continue"
    fixed = TrackingSettings.from_mapping({"name": "mlflow", "buffer": {"flush_interval_s": 5}})
    assert fixed.flush_interval_for(sqlite=True) == fixed.flush_interval_for(sqlite=False) == 5.0


@pytest.mark.parametrize(
    "logger, message",
    [
        ({"name": "wandb"}, "unknown logger 'wandb' (logger.name); valid: mlflow, none"),
        ({"name": "mlflow", "every_n_iterations": 0}, "logger.every_n_iterations must be an integer >= 1, got 0"),
        ({"name": "mlflow", "trace": "yes"}, "logger.trace must be true or false, got 'yes'"),
        ({"name": "mlflow", "tracking_url": "x"}, "logger has no key 'tracking_url'; valid:"),
        ({"name": "mlflow", "buffer": {"max_metrics": 10}}, "logger.buffer.max_metrics must be an integer >= 1000"),
        ({"name": "mlflow", "buffer": {"max_metrics": 2**32}}, "logger.buffer.max_metrics must be an integer in [1000, 100000000], got 4294967296"),
        ({"name": "mlflow", "max_points_per_metric": 0}, "logger.max_points_per_metric must be an integer >= 1, auto (at most 50 for a sweep's child, no limit for a single run) or null (no limit), got 0"),
        ({"name": "mlflow", "max_points_per_metric": True}, "logger.max_points_per_metric must be an integer >= 1, auto (at most 50 for a sweep's child, no limit for a single run) or null (no limit), got True"),
        ({"name": "mlflow", "max_points_per_metric": 2.5}, "logger.max_points_per_metric must be an integer >= 1, auto (at most 50 for a sweep's child, no limit for a single run) or null (no limit), got 2.5"),
        ({"name": "mlflow", "on_server_loss": "wait"}, "logger.on_server_loss must be one of continue, stop, got 'wait'"),
        ({"name": "mlflow", "buffer": {"flush_interval_s": "fast"}}, "logger.buffer.flush_interval_s must be a number > 0 or auto (1 s on sqlite, 15 s on a server), got 'fast'"),
        ({"name": "mlflow", "buffer": {"flush_interval_s": 0}}, "logger.buffer.flush_interval_s must be a number > 0 or auto"),
    ],
)
def test_settings_reject_bad_values_in_one_line(logger, message):
    with pytest.raises(ConfigError) as info:
        TrackingSettings.from_mapping(logger)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "settings, epochs, per_epoch, strides",
    [
        ({}, 1000, 100, (1, 1)),  # no cap: every iteration, every epoch
        ({"every_n_iterations": 3}, 1000, 100, (3, 1)),
        ({"max_points_per_metric": 1000}, 1000, 100, (100, 1)),
        ({"max_points_per_metric": 999}, 1000, 100, (101, 2)),  # rounded up: never more than the cap
        ({"max_points_per_metric": 1000, "every_n_iterations": 500}, 1000, 100, (500, 1)),  # the coarser wins
        ({"max_points_per_metric": 10**9}, 7, 1, (1, 1)),
        ({"max_points_per_metric": 1}, 7, 3, (21, 7)),
    ],
)
def test_max_points_per_metric_chooses_the_stride_from_the_run_length(settings, epochs, per_epoch, strides):
    s = TrackingSettings.from_mapping({"name": "mlflow", **settings})
    assert s.strides(epochs, per_epoch) == strides
    iteration_stride, epoch_stride = strides
    if "max_points_per_metric" in settings:
        assert len(range(0, epochs * per_epoch, iteration_stride)) <= settings["max_points_per_metric"]
        assert len(range(epochs, 0, -epoch_stride)) <= settings["max_points_per_metric"]


def test_max_points_per_metric_needs_a_known_run_length():
    s = TrackingSettings.from_mapping({"name": "mlflow", "max_points_per_metric": 100})
    with pytest.raises(ConfigError, match="needs the run's length"):
        s.strides(0, 10)
    assert TrackingSettings.from_mapping({"name": "mlflow"}).strides(0, 0) == (1, 1)


# -- sweep parent hand-over ---------------------------------------------------------------------
def test_the_sweeps_element_wise_decision_reaches_every_child(tmp_path):
    from backproplab.run.sweep import Sweep

    decided = sweep_parent.ParentRun("p", "sqlite:///a.db", "1", ("model.hidden",), elementwise=False, sampled=True)
    Sweep(tmp_path, None, {"model.hidden": "[4],[8]"}, parent=decided).write()  # the sweep's record, as jobs read it
    back = Sweep.read(tmp_path).parent
    assert back == decided
    # Off for the sweep: a 17-parameter child within its own limit of 64 logs no elements.
    assert not MetricLayout.for_params(_mlp(2, 4, 1), sweep_parent.elementwise_limit(back, 64, 17)).elementwise
    on = sweep_parent.ParentRun("p", "sqlite:///a.db", "1", elementwise=True)
    assert MetricLayout.for_params(_mlp(2, 16, 1), sweep_parent.elementwise_limit(on, 64, 65)).elementwise
    assert sweep_parent.elementwise_limit(None, 64, 65) == 64  # a single run: its own setting
    # A parent written before the decision existed still loads: each job decides itself.
    old = json.dumps({"run_id": "p", "tracking_uri": "sqlite:///a.db", "experiment_id": "1", "swept_keys": ["x"]})
    assert sweep_parent.ParentRun.from_json(old).elementwise is None


def _mlp(*sizes: int) -> dict[str, np.ndarray]:
    out = {}
    for layer, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        out[f"W{layer}"], out[f"b{layer}"] = np.zeros((n_out, n_in)), np.zeros(n_out)
    return out


def test_elementwise_decision_is_on_only_when_every_job_fits():
    from backproplab.hydra_app.mlflow_sweep import elementwise_decision
    from backproplab.hydra_app.preflight import SweepPlan

    assert elementwise_decision(SweepPlan(((17, 64), (21, 64)))) == (
        True, "on: the largest network of the sweep has 21 parameters <= logger.elementwise_max_params=64")
    assert elementwise_decision(SweepPlan(((17, 64), (105, 64)))) == (
        False, "off: a network of the sweep has 105 parameters > logger.elementwise_max_params=64")
    # A swept limit: each job is judged against its own.
    assert elementwise_decision(SweepPlan(((17, 10), (17, 64))))[0] is False
    assert elementwise_decision(SweepPlan(unknown="the search varies model.hidden")) == (
        False, "off: the search varies model.hidden, so the largest network is not known up front")
    assert elementwise_decision(None)[0] is False


# -- run names ----------------------------------------------------------------------------------
def test_child_names_show_only_what_differs_by_short_keys():
    from backproplab.tracking.records.naming import child_name, short_keys

    overrides = ["data=moons", "optimizer.lr=0.5", "data.batch_size=8", "model.hidden=[4]", "logger.tracking_uri=sqlite:///x.db"]
    assert child_name(overrides, ["optimizer.lr", "data.batch_size", "model.hidden"]) == "lr=0.5 bs=8 hidden=[4]"
    # Two keys with the same last part keep as many parts as tell them apart.
    assert short_keys(["model.activation.alpha", "model.output_activation.alpha", "optimizer"]) == {
        "model.activation.alpha": "activation.alpha", "model.output_activation.alpha": "output_activation.alpha",
        "optimizer": "optimizer",
    }
    # A search's sampled numbers: 4 significant digits after the trial number.
    assert child_name(["optimizer.lr=0.012345678", "data.batch_size=16"], ["optimizer.lr", "data.batch_size"], sampled=True, job=3) == (
        "#3 lr=0.01235 bs=16"
    )
    assert child_name(["trainer.epochs=3"], ["optimizer.lr"]) is None
    long = child_name([f"optimizer.lr={'1' * 100}"], ["optimizer.lr"])
    assert long is not None and len(long) == len("lr=") + 32 and long.endswith("…")


def test_a_component_node_is_named_as_typed():
    """``model.activation=leaky_relu model.activation.alpha=0.1,0.2`` reaches Hydra as component
    nodes (``{name:leaky_relu,alpha:0.1}``, hydra_app.preflight); names show what was typed."""
    from backproplab.tracking.records.naming import child_name, parent_name, typed_overrides, typed_swept

    swept = typed_swept({"model.activation": "{name:leaky_relu,alpha:0.1},{name:leaky_relu,alpha:0.2}", "optimizer.lr": "0.1,0.5"})
    assert swept == {"model.activation.alpha": "0.1,0.2", "optimizer.lr": "0.1,0.5"}
    assert child_name(["model.activation={name:leaky_relu,alpha:0.2}", "optimizer.lr=0.5"], swept) == "alpha=0.2 lr=0.5"
    assert parent_name(swept, "moons") == "sweep alpha, lr on moons"
    # Names that differ are shown as well; a node that is not a flat {name:...} stays as it is.
    both = typed_swept({"model.activation": "{name:relu},{name:elu,alpha:0.5}"})
    assert both == {"model.activation": "relu,elu", "model.activation.alpha": ",0.5"}
    assert child_name(["model.activation={name:elu,alpha:0.5}"], both) == "activation=elu alpha=0.5"
    assert typed_swept({"model.hidden": "[4],[8]", "x": "{a:1},{a:2}"}) == {"model.hidden": "[4],[8]", "x": "{a:1},{a:2}"}
    assert typed_overrides(["model.activation={name:swish,beta:0.5}", "data=moons"]) == [
        "model.activation=swish", "model.activation.beta=0.5", "data=moons",
    ]


def test_parent_and_single_run_names():
    from backproplab.tracking.records.naming import parent_name, single_name

    assert parent_name({"optimizer.lr": "0.1,0.5", "data.batch_size": "1,2"}, "moons") == "sweep lr, bs on moons"
    assert parent_name({"data": "moons,circles", "optimizer.lr": "0.1,0.5"}, "moons") == "sweep lr on moons,circles"
    assert parent_name({"optimizer.lr": "interval(0.01,1)"}, "xor", search=True) == "search lr on xor"
    assert single_name({"data": {"name": "moons"}}, [2, 8, 1]) == "moons mlp 2-8-1"
    assert single_name({"data": {"name": "csv", "path": "data/iris.csv"}}, [4, 8, 3]) == "iris mlp 4-8-3"


# -- tags ---------------------------------------------------------------------------------------
def test_git_commit_tag_is_the_users_project_and_backproplabs_own_is_separate(tmp_path):
    import subprocess

    from backproplab.tracking.records.tags import GIT_COMMIT_TAG, OWN_COMMIT_TAG, base_tags

    project = tmp_path / "my-experiments"
    project.mkdir()
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (project / "notes.txt").write_text("x")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()

    tags = base_tags("1.0", workdir=str(project))
    assert tags[GIT_COMMIT_TAG] == head
    assert tags.get(OWN_COMMIT_TAG) != head

    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    assert GIT_COMMIT_TAG not in base_tags("1.0", workdir=str(elsewhere))


def test_params_npz_keeps_the_networks_dtype(tmp_path):
    import backproplab as bp
    from backproplab.tracking.records.artifacts import write_params

    net = bp.build_network([3, 2, 1], "tanh", dtype="float32", seed=0)
    write_params(tmp_path / "params.npz", net.params)
    with np.load(tmp_path / "params.npz", allow_pickle=False) as saved:
        for name, value in net.params.items():
            assert saved[name].dtype == np.float32
            np.testing.assert_array_equal(saved[name], value)


def test_failure_reason_reads_like_the_console_for_our_errors_and_keeps_foreign_types():
    from backproplab.errors import ConfigError, NonFiniteLossError
    from backproplab.tracking.records.tags import one_line

    assert one_line(NonFiniteLossError(float("inf"), 0, 4)).startswith("non-finite loss inf at epoch 1, iteration 5; try")
    assert one_line(ConfigError("optimizer.lr='abc'\n  is invalid")) == "optimizer.lr='abc'; is invalid"  # as the console joins lines
    assert one_line(RuntimeError("store is gone")) == "RuntimeError: store is gone"


# -- plots drawn on a thread --------------------------------------------------------------------
def test_plot_thread_draws_both_plots_and_cleans_up():
    from backproplab.tracking.records.artifacts import PlotThread

    layout = MetricLayout.for_params({"W1": np.zeros((2, 2)), "b1": np.zeros(2)}, 64)
    summary = (np.arange(5), np.linspace(1.0, 0.1, 5)[:, None] * np.ones((5, layout.n_summary)))
    plots = PlotThread(layout, summary, [])
    directory = plots.wait()
    assert sorted(p.name for p in directory.iterdir()) == ["grad_norms.png", "loss.png"]
    assert (directory / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plots.cleanup()
    assert not directory.exists()


def test_plot_thread_hands_a_drawing_error_to_the_caller():
    from backproplab.tracking.records.artifacts import PlotThread

    layout = MetricLayout.for_params({"W1": np.zeros((2, 2)), "b1": np.zeros(2)}, 64)
    broken = (np.arange(5), np.zeros((5, 0)))  # no loss column: drawing must fail
    plots = PlotThread(layout, broken, [])
    with pytest.raises(IndexError):
        plots.wait()
    plots.cleanup()
    assert not plots.directory.parent.exists()


def test_the_loss_warning_keeps_the_cause_of_a_long_http_error():
    # What a refused connection really raises through MLflow's http_request: the cause is at
    # the end, and it is the only part that tells a dead server from a slow or failing one.
    import requests

    from backproplab.tracking.transport.spool import short

    with pytest.raises(requests.ConnectionError) as caught:
        requests.post("http://127.0.0.1:9/api/2.0/mlflow/runs/log-batch", timeout=2)
    text = short(caught.value)
    assert len(str(caught.value)) > 240 and len(text) < len(str(caught.value))
    assert text.startswith("HTTPConnectionPool(host='127.0.0.1', port=9)")
    assert "(Caused by NewConnectionError(" in text and text.endswith("))")
    assert short(ValueError("x " * 200)).endswith("…") and len(short(ValueError("x " * 200))) == 240


def test_a_refused_connection_is_never_connected_and_a_timeout_is_not():
    # The chains MLflow's http_request really raises (no server on port 9; a listener that
    # never answers): only the second is worth sending again one call at a time.
    import os
    import socket

    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    from backproplab.tracking.transport.upload import is_server_loss, never_connected

    def failure(uri: str) -> BaseException:
        with pytest.raises(Exception) as caught:
            http_request(get_default_host_creds(uri), "/api/2.0/mlflow/runs/log-batch", "POST", data="{}", max_retries=0, timeout=1)
        return caught.value

    refused = failure("http://127.0.0.1:9")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        timed_out = failure(f"http://127.0.0.1:{silent.getsockname()[1]}")
    assert is_server_loss(refused) and never_connected(refused)
    assert is_server_loss(timed_out) and not never_connected(timed_out)
    assert not never_connected(OSError(os.strerror(5)))
