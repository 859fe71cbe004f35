"""The rules behind a reviewer's view, without a store: a sweep child's default cap on stored
points, the verdict on whether a run learned, and the names of logged models."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import backproplab as bp
from backproplab.numerics.trainer import EpochSummary
from backproplab.run import verdict
from backproplab.run.context import RunContext
from backproplab.run.data import Dataset
from backproplab.tracking.records.model import model_name
from backproplab.tracking.lifecycle.settings import SWEEP_CHILD_MAX_POINTS, TrackingSettings


@pytest.mark.parametrize(
    "settings, sweep_child, strides",
    [
        ({}, False, (1, 1)),  # auto: a single run keeps every point
        ({}, True, (2000, 20)),  # auto: a sweep's child at most 50 points per metric
        ({"max_points_per_metric": "auto"}, True, (2000, 20)),
        ({"max_points_per_metric": None}, True, (1, 1)),  # null: every point, also in a sweep
        ({"max_points_per_metric": 1000}, False, (100, 1)),
    ],
)
def test_auto_caps_a_sweep_child_only(settings, sweep_child, strides):
    s = TrackingSettings.from_mapping({"name": "mlflow", **settings})
    assert s.strides(1000, 100, sweep_child=sweep_child) == strides
    if sweep_child and settings.get("max_points_per_metric", "auto") == "auto":
        assert len(range(0, 1000 * 100, strides[0])) <= SWEEP_CHILD_MAX_POINTS


def _epochs(losses, accuracy=None, val_accuracy=None):
    return [
        EpochSummary(k, 5 * (k + 1), loss, train_accuracy=accuracy, val_accuracy=val_accuracy if k == len(losses) - 1 else None)
        for k, loss in enumerate(losses)
    ]


def _dataset(y_val, task="binary"):
    y = np.asarray(y_val)
    return Dataset("moons", task, np.zeros((len(y), 2)), y, np.zeros((len(y), 2)), y)


MOONS_DEFAULTS = {"data": {"name": "moons"}, "model": {"hidden": [4], "activation": "sigmoid"},
                  "optimizer": {"name": "sgd", "lr": 0.5}, "initializer": {"name": "legacy_randn"}}


def test_a_run_that_learned_is_not_flagged():
    epochs = _epochs([0.6, 0.3, 0.1], accuracy=0.9, val_accuracy=0.95)
    assert verdict.judge(0.69, epochs, _dataset([0, 1] * 20), MOONS_DEFAULTS) is None


def test_chance_accuracy_and_a_flat_loss_are_both_named_with_a_preset():
    epochs = _epochs([0.6932, 0.6931], accuracy=0.5, val_accuracy=0.52)
    found = verdict.judge(0.6933, epochs, _dataset([0] * 20 + [1] * 20), MOONS_DEFAULTS)
    assert found is not None
    assert found.signs == (
        "val accuracy 0.52 is chance level (always answering the most frequent class scores 0.5)",
        "the loss did not fall (0.6933 at the start, 0.6931 in the last epoch)",
    )
    assert "A data= choice alone keeps the worked example's" in found.hint and "experiment=moons" in found.hint


def test_chance_is_the_most_frequent_class_not_one_half():
    # 80 % of one class: 0.8 accuracy is what answering that class alone scores.
    epochs = _epochs([0.9, 0.2], accuracy=0.8, val_accuracy=0.8)
    found = verdict.judge(0.9, epochs, _dataset([0] * 32 + [1] * 8), MOONS_DEFAULTS)
    assert found is not None and found.signs == ("val accuracy 0.8 is chance level (always answering the most frequent class scores 0.8)",)


def test_a_single_iteration_is_not_judged_and_one_epoch_starts_at_the_first_iteration():
    one = [EpochSummary(0, 1, 0.652, train_accuracy=1.0)]
    assert verdict.loss_sign(0.652, one) is None  # `backproplab trainer.epochs=1`: nothing to compare
    epoch = [EpochSummary(0, 5, 0.69)]
    assert verdict.loss_sign(0.7, epoch) == "the loss fell only 1% (0.7 at the start, 0.69 in the last epoch)"
    assert verdict.loss_sign(0.9, epoch) is None


def test_one_class_or_regression_has_no_chance_level():
    # The worked example: one row, always "right"; its loss fell, so nothing is flagged.
    assert verdict.judge(0.652, _epochs([0.652, 0.078], accuracy=1.0), _dataset([1]), MOONS_DEFAULTS) is None
    assert verdict.chance_sign(_epochs([1.0], val_accuracy=0.5)[-1], _dataset([0.0, 1.0], task="regression")) is None


@given(start=st.floats(0.01, 100), fall=st.floats(-1, 0.99))
def test_the_loss_sign_is_raised_exactly_below_the_threshold(start, fall):
    end = start * (1 - fall)
    sign = verdict.loss_sign(start, _epochs([start, end]))
    assert (sign is None) == ((start - end) / start >= verdict.MIN_LOSS_FALL)
    if sign is not None:
        assert sign.startswith("the loss rose" if end > start else "the loss ")


def test_model_names_say_what_the_model_is_and_hold_no_forbidden_character():
    network = bp.build_network([2, 8, 1], "tanh", "sigmoid")
    config = {"data": {"name": "csv", "path": "data/iris.v2.csv"}, "model": {"activation": "tanh", "output_activation": "sigmoid"}}
    context = RunContext(config=config, network=network, components=[])
    assert model_name(context) == "iris_v2-mlp-2-8-1-tanh"
    name = model_name(context, "lr=0.05 bs=8 act=a/b:c'd")
    assert name == "iris_v2-mlp-2-8-1-tanh lr=0p05 bs=8 act=a-b-c-d"
    assert not set(name) & set("/:.%\"'")
