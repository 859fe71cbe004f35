"""The Python API: build components from registered names, then train on arrays.

Component specs are a registered name (``"relu"``), a mapping with a name and keyword
hyperparameters (``{"name": "leaky_relu", "alpha": 0.1}``) or a ready instance.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from backproplab.errors import ConfigError
from backproplab.numerics.network import Network
from .loading import get_registry
from .registry import Registry
from backproplab.numerics.trainer import Trainer
from .pairing import check_output_activation


def build_network(
    sizes: Sequence[int],
    activation: Any = "sigmoid",
    output_activation: Any = None,
    initializer: Any = "xavier_normal",
    *,
    seed: int | np.random.Generator | None = 0,
    dtype: Any = "float64",
    registry: Registry | None = None,
) -> Network:
    """A dense network of widths ``sizes`` (inputs first, outputs last).

    ``activation`` is one spec for every hidden layer or a list with one per hidden layer;
    ``output_activation`` defaults to the hidden activation when there is a single spec.
    """
    registry = registry or get_registry()
    sizes = list(sizes)
    n_hidden = len(sizes) - 2
    if n_hidden < 0:
        raise ConfigError(f"sizes needs at least an input and an output width, got {sizes!r}")
    if isinstance(activation, (list, tuple)):
        if len(activation) != n_hidden:
            raise ConfigError(f"{n_hidden} hidden layers need {n_hidden} activations, got {len(activation)}")
        hidden_specs = list(activation)
        if output_activation is None:
            raise ConfigError("output_activation is required when activation is a per-layer list")
    else:
        hidden_specs = [activation] * n_hidden
    output_spec = activation if output_activation is None else output_activation
    # A fresh instance per layer, so a stateful activation is never shared between layers.
    activations = [registry.resolve("activation", spec) for spec in hidden_specs + [output_spec]]
    init = registry.resolve("initializer", initializer)
    return Network(sizes, activations, init, rng=seed, dtype=dtype)


def build_trainer(
    network: Network,
    loss: Any = "bce",
    optimizer: Any = "sgd",
    *,
    schedule: Any = None,
    callbacks: Sequence[Any] = (),
    registry: Registry | None = None,
    **trainer_options: Any,
) -> Trainer:
    """A ``Trainer`` with its loss, optimizer, schedule and callbacks resolved from specs; options
    go to ``Trainer``. ``schedule`` (None: the optimizer's rate throughout, as ``"constant"``)
    is stepped once per epoch, e.g. ``{"name": "step", "step_size": 2, "gamma": 0.5}``;
    ``callbacks`` is a list of specs, e.g. ``[{"name": "early_stopping", "patience": 3}]``.

    A loss that does not fit the network's output activation (e.g. ``cross_entropy`` after a
    sigmoid) is refused here with a ConfigError naming what would fit."""
    registry = registry or get_registry()
    loss_obj = registry.resolve("loss", loss)
    loss_name = loss if isinstance(loss, str) else loss.get("name") if isinstance(loss, Mapping) else None
    check_output_activation(loss_obj, network.activations[-1], registry, loss_name=loss_name)
    return Trainer(
        network,
        loss_obj,
        registry.resolve("optimizer", optimizer),
        schedule=None if schedule is None else registry.resolve("schedule", schedule),
        callbacks=[registry.resolve("callback", spec) for spec in callbacks],
        **trainer_options,
    )
