"""The run's data as MLflow dataset inputs: the training split and, when there is one, the
validation split, each with its name, digest, source and schema (the runs table's Dataset
column and the run page's Datasets panel).

Through MLflow's public dataset API (``mlflow.data.from_pandas``, ``MlflowClient.log_inputs``)
with the input tag ``mlflow.data.context`` = ``training`` / ``validation``. The digest is
computed here over every byte of the split (MLflow's own hashes only the first 10,000 rows and
maps a Python type check over every cell, which is slow on a large CSV).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from backproplab.run.context import RunContext
from backproplab.run.data import Dataset, source_of

CONTEXT_TAG = "mlflow.data.context"
TRAINING, VALIDATION = "training", "validation"
TARGET_COLUMN = "target"


def digest(X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    for array in (X, y):
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(array.data)
    return h.hexdigest()[:16]


def dataset_name(context: RunContext) -> str:
    """The data set's name as a user knows it: the CSV's file name, else ``data=NAME``."""
    data = context.config.get("data") or {}
    if data.get("name") == "csv" and data.get("path"):
        return Path(str(data["path"])).name
    return str(data.get("name") or (context.dataset.name if context.dataset else "data"))


def _source(context: RunContext) -> Any:
    from ..mlflow_private import code_dataset_source, dataset_source_for

    path, origin = source_of(context.config.get("data") or {}, context.dataset)
    if path is not None:
        import warnings

        with warnings.catch_warnings():
            # MLflow registers its local-file source twice and warns that a path matches both.
            warnings.simplefilter("ignore", UserWarning)
            return dataset_source_for(path)
    # Generated or built in: the generator and the keys that decide its arrays.
    return code_dataset_source({k: str(v) for k, v in origin.items()})


def _frame(dataset: Dataset, X: np.ndarray, y: np.ndarray) -> Any:
    import pandas as pd

    names = dataset.feature_names if len(dataset.feature_names) == X.shape[1] else [f"x{k}" for k in range(1, X.shape[1] + 1)]
    columns = {name: X[:, k] for k, name in enumerate(names)}
    # A feature may itself be called "target": the target column then takes a name no feature has,
    # instead of overwriting that feature's column in the record.
    target_names = [TARGET_COLUMN] if y.ndim == 1 else [f"{TARGET_COLUMN}{k + 1}" for k in range(y.shape[1])]
    while any(name in columns for name in target_names):
        target_names = [f"_{name}" for name in target_names]
    for k, name in enumerate(target_names):
        columns[name] = y if y.ndim == 1 else y[:, k]
    return pd.DataFrame(columns), target_names


def dataset_inputs(context: RunContext) -> list[Any]:
    """One ``DatasetInput`` per split (training, then validation when there is one)."""
    import mlflow.data
    from mlflow.entities import Dataset as DatasetEntity, DatasetInput, InputTag

    dataset = context.dataset
    if dataset is None:
        return []
    name, source = dataset_name(context), _source(context)
    inputs = []
    for split, X, y in ((TRAINING, dataset.X_train, dataset.y_train), (VALIDATION, dataset.X_val, dataset.y_val)):
        if X is None or y is None:
            continue
        frame, targets = _frame(dataset, X, y)
        data = mlflow.data.from_pandas(
            frame, source=source, targets=targets[0] if len(targets) == 1 else None, name=name, digest=digest(X, y)
        )
        inputs.append(DatasetInput(DatasetEntity(**data.to_dict()), tags=[InputTag(CONTEXT_TAG, split)]))
    return inputs


def split_of_metric(context: RunContext, key: str) -> tuple[str | None, str | None]:
    """(dataset name, digest) of the split a final metric is measured on, as the run's dataset
    input names it: ``final/val_*`` the validation split, any other the training split; (None,
    None) without data or without that split."""
    dataset = context.dataset
    if dataset is None:
        return None, None
    validation = key.startswith("final/val_")
    X, y = (dataset.X_val, dataset.y_val) if validation else (dataset.X_train, dataset.y_train)
    if X is None or y is None:
        return None, None
    return dataset_name(context), digest(X, y)


def log_datasets(client: Any, run_id: str, context: RunContext) -> None:
    inputs = dataset_inputs(context)
    if inputs:
        client.log_inputs(run_id, datasets=inputs)
