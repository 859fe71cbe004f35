"""The trained network as an MLflow pyfunc model at the run's artifact path ``model``.

Saved with MLflow's "models from code" (``python_model=`` the path of ``served_model.py``), so
loading runs that file and never unpickles anything: the network is rebuilt from
``network.json`` (widths, activation specs, dtype, column names) with the installed backproplab,
and its weights and standardisation are read from ``weights.npz`` with ``allow_pickle=False``.

- Input: a DataFrame with the data set's feature columns (by name, in raw units: the model
  standardises them with the training split's mean and scale when ``data.standardize`` was on).
- Output: the network's outputs, one column per output unit. Classification columns are named
  by class (the class names of a text target, else the labels ``0, 1, ...``); a single-output
  binary network has one column, named by the positive class (label 1): its probability.
  Regression columns are named by the target (``data.target`` of a CSV with one target, else
  ``y1, y2, ...``, or ``y``).
- Requirements: ``backproplab==<this version>``, numpy, and the plugin distributions that
  provided the network's activations, so ``mlflow models serve`` works where they are installed.

On MLflow 3 the same files are also recorded as a logged model of the run (the runs table's
Models column, the experiment's Models tab), as MLflow 3 links a model to its results:

- its name says what it is: the data set, the layer widths and the hidden activation
  (``moons-mlp-2-8-1-tanh``), and for a sweep's child also what the child's run name says
  (``moons-mlp-2-8-1-tanh lr=0p5``: a model name cannot hold a ``.``);
- its parameters are the run's params (the config, without the tracking settings);
- the run's ``final/*`` metrics are logged again with the model's id and the data set split they
  were measured on (name and digest of the run's dataset input: ``final/train_*`` on the training
  split, ``final/val_*`` on the validation split), so the model's page lists its metrics and the
  datasets it was trained and validated on. Same key, value, step and timestamp as the run's own
  rows, which the store keeps once.

With ``logger.register_model`` a version of that registered model is created (``register``, also
behind ``backproplab runs register``). MLflow 2 has no logged models: there the model is the run's
artifact ``model`` alone, and a version's source is ``runs:/<run id>/model``.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from backproplab import __version__
from backproplab.run.context import RunContext
from .datasets import split_of_metric
from .naming import MAX_NAME, data_name
from .params import run_params
from ..transport.store import environment, quiet_loggers

MODEL_PATH = "model"
# What a logged model's name may not hold (MLflow's rule for logged model names).
_NOT_IN_NAME = re.compile(r"[/:%\"']")
_CODE = Path(__file__).with_name("served_model.py")
_EXAMPLE_ROWS = 5


def output_columns(context: RunContext) -> list[str]:
    network = context.network
    n = network.n_outputs
    if context.task == "regression":
        target = (context.config.get("data") or {}).get("target")
        if n == 1:
            return [target if isinstance(target, str) and target else "y"]
        return [f"y{k}" for k in range(1, n + 1)]
    names = list(context.classes) if context.classes is not None else [str(k) for k in range(max(2, n))]
    if n == 1:
        return [names[1] if len(names) > 1 else names[0]]
    return names[:n] if len(names) >= n else [str(k) for k in range(n)]


def feature_names(context: RunContext) -> list[str]:
    names = list(getattr(context.dataset, "feature_names", None) or [])
    if len(names) != context.network.n_inputs:
        names = [f"x{k}" for k in range(1, context.network.n_inputs + 1)]
    return names


def raw_inputs(context: RunContext, rows: int) -> np.ndarray | None:
    """The first training rows in the user's units (the data set holds them standardised)."""
    if context.dataset is None:  # a RunContext built by hand (Python API): no example to give
        return None
    X = np.asarray(context.dataset.X_train[:rows], dtype=float)
    if context.input_scaling is not None:
        X = X * np.asarray(context.input_scaling["scale"], dtype=float) + np.asarray(context.input_scaling["mean"], dtype=float)
    return X


def requirements(context: RunContext) -> list[str]:
    reqs = [f"backproplab=={__version__}", "numpy"]
    for info in context.components:
        dist = info.source.distribution
        if info.kind == "activation" and dist != "backproplab":
            req = f"{dist}=={info.source.version}"
            if req not in reqs:
                reqs.append(req)
    return reqs


def activation_specs(context: RunContext) -> tuple[Any, Any]:
    """(hidden, output) activation specs as configured (with their hyperparameters); a context
    built by hand (Python API) may carry only the components' names, or neither (None)."""
    model_config = context.config.get("model") or {}
    named = {info.role: info.name for info in context.components if info.kind == "activation"}
    return model_config.get("activation", named.get("activation")), model_config.get("output_activation", named.get("output_activation"))


def servable(context: RunContext) -> bool:
    return None not in activation_specs(context)


def write_model(directory: Path, context: RunContext, tracking_uri: str | None = None) -> Path:
    """Save the MLflow model of ``context``'s network into ``directory/model``; its path.
    ``tracking_uri``: the run's store. Some MLflow releases (3.9) open a tracking store for their
    tracing while saving a model, MLflow's default one unless told: a stray ./mlflow.db beside a
    run that tracks to a server."""
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    network = context.network
    hidden, output = activation_specs(context)
    features, outputs = feature_names(context), output_columns(context)
    files = directory / "files"
    files.mkdir(parents=True)
    spec = {
        "sizes": list(network.sizes),
        "activation": hidden,
        "output_activation": output,
        "dtype": network.dtype.name,
        "features": features,
        "outputs": outputs,
        "task": context.task,
        "classes": None if context.classes is None else list(context.classes),
    }
    (files / "network.json").write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    arrays = {name: np.asarray(value) for name, value in network.params.items()}
    if context.input_scaling is not None:
        arrays["mean"] = np.asarray(context.input_scaling["mean"], dtype=float)
        arrays["scale"] = np.asarray(context.input_scaling["scale"], dtype=float)
    np.savez(files / "weights.npz", **arrays)
    out_type = "float" if network.dtype.name == "float32" else "double"
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in features]),
        outputs=Schema([ColSpec(out_type, name) for name in outputs]),
    )
    rows = raw_inputs(context, _EXAMPLE_ROWS)
    example = None if rows is None else pd.DataFrame(rows, columns=features)
    path = directory / MODEL_PATH
    # A run's stderr carries its own progress and problems, not MLflow's notices and progress bars
    # about copying two small files.
    store = {"MLFLOW_TRACKING_URI": tracking_uri} if tracking_uri else {}
    with environment({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}, keep_set=True), environment(store), quiet_loggers("mlflow.pyfunc", "mlflow.models"):
        mlflow.pyfunc.save_model(
            str(path),
            python_model=str(_CODE),
            artifacts={"network": str(files / "network.json"), "weights": str(files / "weights.npz")},
            signature=signature,
            input_example=example,
            pip_requirements=requirements(context),
        )
    return path


def model_name(context: RunContext, run_name: str | None = None) -> str:
    """``moons-mlp-2-8-1-tanh``: the data set, the layer widths and the hidden activation; with a
    sweep child's ``run_name`` (``lr=0.5 bs=8``) after it, its dots as ``p`` (``lr=0p5 bs=8``)."""
    hidden, _ = activation_specs(context)
    activation = hidden.get("name") if isinstance(hidden, dict) else hidden
    sizes = "-".join(str(s) for s in context.network.sizes)
    parts = [data_name(context.config.get("data")) or "data", "mlp", sizes]
    if activation:
        parts.append(str(activation))
    name = "-".join(parts)
    if run_name:
        name += " " + re.sub(r"(?<=\d)\.(?=\d)", "p", run_name)
    return _NOT_IN_NAME.sub("-", name.replace(".", "_"))[:MAX_NAME]


def log_model(
    client: Any,
    run_id: str,
    context: RunContext,
    register_as: str | None = None,
    step: int = 0,
    *,
    name: str = MODEL_PATH,
    final: Sequence[tuple[str, float, int, int]] = (),
) -> str | None:
    """Log the model as the run's artifact ``model`` and (MLflow 3) as its logged model named
    ``name``, with the run's params and its ``final`` metrics (key, value, timestamp in ms, step);
    the logged model's id, or None on MLflow 2."""
    with tempfile.TemporaryDirectory(prefix="backproplab-model-") as tmp:
        path = write_model(Path(tmp), context, getattr(client, "tracking_uri", None))
        client.log_artifacts(run_id, str(path), MODEL_PATH)
        model_id = _logged_model(client, run_id, path, step, name, run_params(context.config))
    if model_id is not None and final:
        _link_metrics(client, run_id, model_id, context, final)
    if register_as is not None:
        register(client, run_id, register_as, model_id)
    return model_id


def logged_models_supported(client: Any) -> bool:
    """Whether the store's MLflow has logged models (MLflow 3); checked by feature, not version."""
    return hasattr(client, "create_logged_model")


def _logged_model(client: Any, run_id: str, path: Path, step: int, name: str, params: dict[str, str]) -> str | None:
    """MLflow 3 lists a run's models from its logged-model outputs; MLflow 2 has none (None)."""
    if not logged_models_supported(client):
        return None
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.create_logged_model(
        experiment_id, name=name, source_run_id=run_id, tags={"backproplab.version": __version__}, params=params
    )
    client.log_model_artifacts(logged.model_id, str(path))
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
    return logged.model_id


def _link_metrics(client: Any, run_id: str, model_id: str, context: RunContext, final: Sequence[tuple[str, float, int, int]]) -> None:
    """The run's final metrics once more, with the model's id and the split they measure."""
    from mlflow.entities import Metric

    metrics = []
    for key, value, timestamp_ms, step in final:
        dataset, digest = split_of_metric(context, key)
        metrics.append(Metric(key, value, timestamp_ms, step, model_id=model_id, dataset_name=dataset, dataset_digest=digest))
    client.log_batch(run_id, metrics=metrics, synchronous=True)


def register(client: Any, run_id: str, name: str, model_id: str | None = None) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # The logged model's own location rather than ``models:/<id>``: MLflow's SQL registry looks
    # such a URI up through the process's global tracking URI, not this client's store.
    source = client.get_logged_model(model_id).artifact_location if model_id is not None else f"runs:/{run_id}/{MODEL_PATH}"
    kwargs = {"model_id": model_id} if model_id is not None else {}
    version = client.create_model_version(name, source, run_id=run_id, **kwargs)
    if model_id is not None:
        _note_version(client, model_id, version)
    return version


def _note_version(client: Any, model_id: str, version: Any) -> None:
    """The version on its logged model (the tag MLflow's ``register_model`` sets), which the
    model's page lists under "Model versions"."""
    from ..mlflow_private import MLFLOW_MODEL_VERSIONS

    known = client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS)
    versions = (json.loads(known) if known else []) + [{"name": version.name, "version": version.version}]
    client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(versions)})


# The tags a sweep parent carries (hydra_app.mlflow_sweep): that it is one, and its best child.
SWEEP_TAG = "backproplab.sweep"
BEST_RUN_TAG = "backproplab.best_run_id"


def logged_model_of(run: Any) -> str | None:
    """The id of the model ``run`` logged as its output (MLflow 3), or None."""
    outputs = getattr(getattr(run, "outputs", None), "model_outputs", None) or []
    return outputs[-1].model_id if outputs else None


def model_run(client: Any, run_id: str | None, experiment_id: str) -> Any:
    """The run whose model to register: ``run_id`` itself, the best child when it is a sweep
    parent, and without ``run_id`` the best child of the experiment's latest sweep."""
    from backproplab.errors import ConfigError

    if run_id is None:
        parents = client.search_runs(
            [experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = 'true'", order_by=["attributes.start_time DESC"], max_results=1
        )
        if not parents:
            raise ConfigError("--run is needed: the experiment has no sweep whose best run to register; valid: a run id")
        run = parents[0]
    else:
        run = client.get_run(run_id)
    if run.data.tags.get(SWEEP_TAG) == "true":
        best = run.data.tags.get(BEST_RUN_TAG)
        if best is None:
            raise ConfigError(f"sweep {run.info.run_name} ({run.info.run_id}) has no best run (no child finished); valid: a child's run id")
        run = client.get_run(best)
    return run


def register_run(client: Any, run: Any, name: str) -> Any:
    """A new version of registered model ``name`` from ``run``'s model: its logged model on
    MLflow 3, else its artifact ``model``."""
    from backproplab.errors import ConfigError

    model_id = logged_model_of(run) if logged_models_supported(client) else None
    if model_id is None and not any(a.path == MODEL_PATH for a in client.list_artifacts(run.info.run_id)):
        raise ConfigError(
            f"run {run.info.run_name} ({run.info.run_id}) logged no model (it did not train to the end, or ran with "
            "logger.log_model=false); valid: a run that finished with a model"
        )
    return register(client, run.info.run_id, name, model_id)
