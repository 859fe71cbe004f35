"""What MLflow tracking costs, measured in one process against temporary sqlite stores.

Two cases, each with the default logging (every metric, every iteration):

* worked example: 3-4-1 sigmoid/bce/sgd lr 0.5, one example, 2000 iterations
  (50 metrics per iteration: batch/loss, epoch, 6 norms, 21 grad/* and 21 param/* elements);
* marks.csv: [3, 8, 8, 1] tanh/sigmoid/bce/sgd lr 0.1, batch 20, 100 epochs, standardised inputs
  (2000 iterations, 11 metrics per iteration: batch/loss, epoch and 9 norms, plus per-epoch metrics).

Printed per case:

* wall time of training with ``logger=none`` vs with tracking (training + final flush, i.e. until
  every metric is in the store; also the whole ``track_run`` block with run creation, params,
  artifacts and status): the default writer (``auto``: SQL inserts into the sqlite store's
  tables), the same from the background thread, and ``logger.buffer.writer=log_batch``;
* speed-up over the naive way: ``mlflow.log_metrics`` once per iteration, same metrics;
* cost per metric written vs raw ``MlflowClient.log_batch`` of prebuilt ``Metric`` objects in
  batches of 1000, the same metrics, in the same process and store;
* what the sqlite default ``flush_interval_s=auto`` (1 s, which bounds what a ``kill -9`` loses)
  costs against 15 s (the default before). In both cases above the 10,000-metric buffer fills
  several times a second, so the interval adds no flush there; it matters only for runs that log
  fewer than 10,000 metrics a second. So it is timed on a worked example 10x longer (20,000
  iterations) with ``every_n_iterations=100``: the buffer never fills, and the interval alone
  decides how many transactions there are.

* what the servable model (``logger.log_model``) and the pictures of learning
  (``logger.images``) add per run, on a moons run ([2, 8, 1] tanh/sigmoid, 200 examples, batch
  20, 20 epochs; 10 decision boundaries and 20 histograms at the default
  ``images.max_per_key=10``): the whole ``track_run`` block without either, with each, and with
  both, and the training loop alone with the snapshots vs without (what the hot path pays).

Repetitions are interleaved and the best is compared, so a noisy neighbour slows every variant
alike. A script, not a test: wall-clock numbers never decide a test.

    python benchmarks/bench_tracking.py [--repeat N] [--naive-iterations N] [--only-extras]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time

import numpy as np

import backproplab as bp
from backproplab import datasets
from backproplab.run.context import RunContext
from backproplab.tracking import track_run
from backproplab.tracking.records.metric_names import LOSS, MetricLayout



def worked_example():
    net = bp.build_network([3, 4, 1], "sigmoid", initializer={"name": "legacy_randn", "seed": 3, "scale": 0.1})
    trainer_args = dict(loss="bce", optimizer={"name": "sgd", "lr": 0.5}, batch_size=1, epochs=2000, shuffle=False)
    return net, trainer_args, np.array([[7.0, 8.0, 10.0]]), np.array([1.0])


def marks():
    data = np.loadtxt(datasets.path("marks.csv"), delimiter=",", skiprows=1)
    X, y = data[:, 1:], data[:, 0]
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    net = bp.build_network([3, 8, 8, 1], "tanh", "sigmoid", initializer="xavier_normal", seed=0)
    trainer_args = dict(loss="bce", optimizer={"name": "sgd", "lr": 0.1}, batch_size=20, epochs=100, shuffle=True, seed=0)
    return net, trainer_args, X, y


CASES = {"worked example (2000 it.)": worked_example, "marks.csv [8,8] b20 e100": marks}


def context(net, trainer_args):
    config = {"trainer": {k: v for k, v in trainer_args.items() if k in ("batch_size", "epochs")}, "optimizer": trainer_args["optimizer"]}
    return RunContext(config=config, network=net, components=[], epochs=trainer_args["epochs"])


class NaiveLogger(bp.Callback):
    """The approach tracking replaces: one ``mlflow.log_metrics`` call per iteration."""

    def __init__(self, layout: MetricLayout):
        self.layout = layout

    def on_iteration(self, step):
        import mlflow

        values = {LOSS: step.loss}
        elementwise = self.layout.elementwise
        for key in self.layout.keys[1 : self.layout.n_summary]:
            kind, name = key.split("/")
            array = step.grads[name] if kind == "grad_norm" else step.params[name]
            values[key] = float(np.linalg.norm(array))
        if elementwise:
            for prefix, slots, source in (("grad", self.layout.grad_slots, step.grads), ("param", self.layout.param_slots, step.params)):
                for slot in slots:
                    keys = self.layout.keys[slot.start : slot.stop]
                    values.update(zip(keys, source[slot.param].ravel().tolist()))
        mlflow.log_metrics(values, step=step.iteration)


def time_none(make):
    net, args, X, y = make()
    with track_run(context(net, args), {"name": "none"}) as tracker:
        trainer = bp.build_trainer(net, callbacks=[tracker], **args)
        t0 = time.perf_counter()
        trainer.fit(X, y)
        return time.perf_counter() - t0


def time_tracked(make, uri, experiment, background, hot_path_only=False, writer="auto", flush_interval_s=None, **logger_extra):
    """(training+flush seconds, whole block seconds, metrics written).

    ``hot_path_only``: a buffer large enough that nothing is written during ``fit``; the first
    figure is then the training time with buffering alone, i.e. what the loop itself pays.
    """
    net, args, X, y = make()
    buffer = {"background": background, "writer": writer}
    if hot_path_only:
        buffer.update(max_metrics=10**8, flush_interval_s=3600)
    if flush_interval_s is not None:
        buffer["flush_interval_s"] = flush_interval_s
    # The model and the pictures are timed on their own (extras_cost): these figures stay the
    # metric writers' alone, comparable with the earlier ones.
    logger = {"name": "mlflow", "tracking_uri": uri, "experiment_name": experiment, "buffer": buffer, "log_model": False, "images": {"enabled": False}}
    logger.update(logger_extra)
    t_block = time.perf_counter()
    with track_run(context(net, args), logger) as tracker:
        trainer = bp.build_trainer(net, callbacks=[tracker], **args)
        t0 = time.perf_counter()
        trainer.fit(X, y)
        if not hot_path_only:
            tracker.close()  # the final flush: every metric is in the store after this
        t_train = time.perf_counter() - t0
    return t_train, time.perf_counter() - t_block, tracker.writer.metrics_written, tracker.writer.write_calls


def moons_prepared():
    from backproplab.run.job import prepare
    from backproplab.hydra_app.config_store import register_configs
    from hydra import compose, initialize_config_module

    register_configs()  # the generated component nodes, as the CLI stores them
    with initialize_config_module(config_module="backproplab.conf", version_base=None):
        cfg = compose(
            "config",
            overrides=["data=moons", "data.val_fraction=0", "model.hidden=[8]", "model.activation=tanh",
                       "data.batch_size=20", "trainer.epochs=20", "optimizer.lr=0.5"],
        )
    return prepare(cfg)  # as the CLI prepares a run: the data set and its feature names included


def time_extras(uri: str, experiment: str, log_model: bool, images: bool) -> tuple[float, float]:
    """(training loop seconds, whole track_run block seconds) of the moons run as the CLI runs it."""
    prepared = moons_prepared()
    logger = {"name": "mlflow", "tracking_uri": uri, "experiment_name": experiment, "log_model": log_model, "images": {"enabled": images}}
    t_block = time.perf_counter()
    with track_run(prepared.context(), logger) as tracker:
        trainer = prepared.trainer([tracker])
        t0 = time.perf_counter()
        trainer.fit(prepared.dataset.X_train, prepared.y_train)
        t_train = time.perf_counter() - t0
    return t_train, time.perf_counter() - t_block


def extras_cost(uri: str, repeat: int) -> None:
    variants = {"neither": (False, False), "model only": (True, False), "pictures only": (False, True), "model + pictures": (True, True)}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    time_extras(uri, "extras warm-up", True, True)  # imports (mlflow.pyfunc, PIL) once, outside every figure
    for _ in range(repeat):
        for name, (model, images) in variants.items():
            times[name].append(time_extras(uri, f"extras {name}", model, images))
    best = {name: (min(t[0] for t in ts), min(t[1] for t in ts)) for name, ts in times.items()}
    base_train, base_block = best["neither"]
    print("\n== model and pictures: moons [2, 8, 1], 200 examples, batch 20, 20 epochs (200 iterations)")
    for name, (train, block) in best.items():
        print(
            f"  {name:<17} training {train * 1e3:7.1f} ms (x{train / base_train:.2f})   whole run {block * 1e3:7.0f} ms "
            f"(+{(block - base_block) * 1e3:5.0f} ms, x{block / base_block:.2f})"
        )


def long_worked_example():
    net, trainer_args, X, y = worked_example()
    return net, {**trainer_args, "epochs": 20_000}, X, y


def flush_cadence(uri: str, repeat: int) -> None:
    """auto (1 s on sqlite) vs 15 s, interleaved, on a run long enough for the interval to matter."""
    auto, old = [], []
    for r in range(repeat):
        for interval, into in ((("auto", auto), (15, old)) if r % 2 == 0 else ((15, old), ("auto", auto))):
            into.append(
                time_tracked(long_worked_example, uri, f"cadence {interval}", background=False, flush_interval_s=interval, every_n_iterations=100)
            )
    best_auto, best_old = min(auto), min(old)
    extra = best_auto[3] - best_old[3]
    print("\n== flush cadence: worked example, 20,000 iterations, every_n_iterations=100, default writer (best of %d, interleaved)" % repeat)
    print(f"  flush_interval_s=15              {best_old[0] * 1e3:9.1f} ms  ({best_old[3]} transactions)")
    print(f"  flush_interval_s=auto (1 s)      {best_auto[0] * 1e3:9.1f} ms  ({best_auto[3]} transactions)")
    cost = best_auto[0] - best_old[0]
    print(
        f"  difference                       {cost * 1e3:+9.1f} ms  ({cost / best_old[0] * 100:+.1f}%; "
        f"{extra} more transactions, {cost / extra * 1e3 if extra else float('nan'):+.1f} ms each)"
    )


def time_naive(make, uri, experiment, iterations):
    """Seconds per iteration of the naive logger, over the first ``iterations`` iterations."""
    import mlflow

    net, args, X, y = make()
    layout = MetricLayout.for_params(net.params, 64)
    args = dict(args)
    per_epoch = -(-X.shape[0] // min(args["batch_size"], X.shape[0]))
    args["epochs"] = max(1, iterations // per_epoch)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run():
        trainer = bp.build_trainer(net, callbacks=[NaiveLogger(layout)], **args)
        t0 = time.perf_counter()
        trainer.fit(X, y)
        return (time.perf_counter() - t0) / trainer.iteration


def time_raw_log_batch(make, uri, experiment, n_metrics):
    """Seconds per metric of MlflowClient.log_batch, 1000 prebuilt metrics per call."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    net, _, _, _ = make()
    keys = MetricLayout.for_params(net.params, 64).keys
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment) or client.get_experiment(client.create_experiment(experiment))
    run_id = client.create_run(exp.experiment_id).info.run_id
    ts = int(time.time() * 1000)
    metrics = [Metric(keys[i % len(keys)], float(i), ts, i // len(keys)) for i in range(n_metrics)]
    t0 = time.perf_counter()
    for start in range(0, n_metrics, 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000], synchronous=True)
    elapsed = time.perf_counter() - t0
    client.set_terminated(run_id)
    return elapsed / n_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive-iterations", type=int, default=2000, help="iterations timed for the naive logger")
    parser.add_argument("--only-cadence", action="store_true", help="only the flush cadence comparison")
    parser.add_argument("--only-extras", action="store_true", help="only what the model and the pictures add")
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    print(f"python {platform.python_version()}, numpy {np.__version__}, ", end="")
    import mlflow

    print(f"mlflow {mlflow.__version__}, {platform.machine()}, {os.cpu_count()} CPUs")
    home = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        os.chdir(tmp)  # the sqlite store's artifacts go to ./mlruns: keep them in the temp dir
        uri = f"sqlite:///{tmp}/mlflow.db"
        from backproplab.tracking.transport.store import connect

        connect(uri, "warm-up")  # the schema is created once per store; not part of any figure
        if args.only_extras:
            extras_cost(uri, args.repeat)
            os.chdir(home)
            return
        for name, make in ({} if args.only_cadence else CASES).items():
            none, inline, background, via_log_batch, raw, hot = [], [], [], [], [], []
            for r in range(args.repeat):
                none.append(time_none(make))
                hot.append(time_tracked(make, uri, f"{name} hot path", background=False, hot_path_only=True)[0])
                inline.append(time_tracked(make, uri, f"{name} inline", background=False))
                background.append(time_tracked(make, uri, f"{name} background", background=True))
                via_log_batch.append(time_tracked(make, uri, f"{name} log_batch", background=False, writer="log_batch"))
                raw.append(time_raw_log_batch(make, uri, f"{name} raw", inline[-1][2]))
            naive = time_naive(make, uri, f"{name} naive", args.naive_iterations)
            t_none = min(none)
            best_inline = min(inline)
            best_bg = min(background)
            best_lb = min(via_log_batch)
            n_metrics = best_inline[2]
            iterations = 2000
            per_metric = (best_inline[0] - t_none) / n_metrics
            per_metric_bg = (best_bg[0] - t_none) / n_metrics
            per_metric_lb = (best_lb[0] - t_none) / n_metrics
            raw_per_metric = min(raw)
            naive_total = naive * iterations
            print(f"\n== {name}: {iterations} iterations, {n_metrics} metrics written")
            print(f"  logger=none                      {t_none * 1e3:9.1f} ms")
            print(f"  buffering only (no writes)       {min(hot) * 1e3:9.1f} ms  (+{(min(hot) - t_none) / iterations * 1e6:.1f} us per iteration on the training loop)")
            print(f"  tracking (default writer)        {best_inline[0] * 1e3:9.1f} ms  (x{best_inline[0] / t_none:.1f} of none; whole track_run block {best_inline[1] * 1e3:.0f} ms)")
            print(f"  tracking, background thread      {best_bg[0] * 1e3:9.1f} ms  (whole block {best_bg[1] * 1e3:.0f} ms)")
            print(f"  tracking, writer=log_batch       {best_lb[0] * 1e3:9.1f} ms  (x{best_lb[0] / t_none:.0f} of none)")
            print(f"  naive mlflow.log_metrics/iter.   {naive_total * 1e3:9.1f} ms  ({naive * 1e3:.2f} ms per iteration, timed over {args.naive_iterations})")
            print(f"  speed-up over naive              {naive_total / best_inline[0]:9.1f} x   (target >= 10; writer=log_batch: {naive_total / best_lb[0]:.1f} x)")
            print(f"  cost per metric, tracking        {per_metric * 1e6:9.1f} us  (background thread {per_metric_bg * 1e6:.1f} us, writer=log_batch {per_metric_lb * 1e6:.1f} us)")
            print(f"  cost per metric, raw log_batch   {raw_per_metric * 1e6:9.1f} us  (1000 prebuilt metrics per call)")
            print(f"  tracking / raw                   {per_metric / raw_per_metric:9.2f}     (target <= 1.3; writer=log_batch: {per_metric_lb / raw_per_metric:.2f})")
        flush_cadence(uri, args.repeat)
        if not args.only_cadence:
            extras_cost(uri, args.repeat)
        os.chdir(home)


if __name__ == "__main__":
    main()
