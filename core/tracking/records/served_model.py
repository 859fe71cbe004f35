"""The logged network as MLflow "models from code": this file is copied into the model and run by
``mlflow.pyfunc.load_model``, so nothing of the network is pickled.

``load_context`` rebuilds the network from ``network.json`` (layer widths, activation specs,
dtype, feature and output column names) with the installed backproplab and its plugins, then
reads the weights and the standardisation from ``weights.npz`` with ``allow_pickle=False``.
``predict`` takes the features by name, standardises them as in training, and returns the
network's outputs, one column per output (see ``backproplab.tracking.records.model``).

Not imported by backproplab itself: ``set_model`` below is what MLflow looks for when it runs
the file.
"""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd


class NetworkModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from backproplab import build_network

        spec = json.loads(Path(context.artifacts["network"]).read_text(encoding="utf-8"))
        network = build_network(
            spec["sizes"],
            activation=spec["activation"],
            output_activation=spec["output_activation"],
            dtype=spec["dtype"],
        )
        with np.load(context.artifacts["weights"], allow_pickle=False) as weights:
            network.set_params({name: weights[name] for name in network.params})
            self.mean = weights["mean"] if "mean" in weights.files else None
            self.scale = weights["scale"] if "scale" in weights.files else None
        self.network = network
        self.features = list(spec["features"])
        self.outputs = list(spec["outputs"])

    # A DataFrame hint: one MLflow takes as is, without deriving a second signature from it (the
    # model's signature, logged with it, names the features).
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        X = model_input[self.features].to_numpy(dtype=float)
        if self.mean is not None:
            X = (X - self.mean) / self.scale
        outputs = self.network.predict(X)
        return pd.DataFrame(np.asarray(outputs), columns=self.outputs)


mlflow.models.set_model(NetworkModel())
