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
Models column), and with ``logger.register_model`` a version of that registered model is created.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from backproplab import __version__
from backproplab.run.context import RunContext
from .store import environment, quiet_loggers

MODEL_PATH = "model"
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


def log_model(client: Any, run_id: str, context: RunContext, register_as: str | None = None, step: int = 0) -> None:
    with tempfile.TemporaryDirectory(prefix="backproplab-model-") as tmp:
        path = write_model(Path(tmp), context, getattr(client, "tracking_uri", None))
        client.log_artifacts(run_id, str(path), MODEL_PATH)
        model_id = _logged_model(client, run_id, path, step)
    if register_as is not None:
        register(client, run_id, register_as, model_id)


def _logged_model(client: Any, run_id: str, path: Path, step: int) -> str | None:
    """MLflow 3 lists a run's models from its logged-model outputs; MLflow 2 has none (None)."""
    if not hasattr(client, "create_logged_model"):
        return None
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.create_logged_model(experiment_id, name=MODEL_PATH, source_run_id=run_id, tags={"backproplab.version": __version__})
    client.log_model_artifacts(logged.model_id, str(path))
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
    return logged.model_id


def register(client: Any, run_id: str, name: str, model_id: str | None = None) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"models:/{model_id}" if model_id is not None else f"runs:/{run_id}/{MODEL_PATH}"
    kwargs = {"model_id": model_id} if model_id is not None else {}
    return client.create_model_version(name, source, run_id=run_id, **kwargs)
