"""The founding case: the article's 3-4-1 worked example, reproduced number for number.

Everything is built through the public API and the registry (component names), exactly as a
user would, so a regression anywhere on that path shows up here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import backproplab as bp

TOL = 1e-6


@pytest.fixture(scope="module")
def example(shipped_data) -> dict:
    """The shipped ``seed_example.json``, located by the ``shipped_data`` fixture (conftest)."""
    return json.loads((shipped_data / "seed_example.json").read_text())


def build(example: dict) -> tuple[bp.Network, bp.Trainer]:
    net = bp.build_network(
        [3, 4, 1],
        activation="sigmoid",
        initializer={"name": "legacy_randn", "scale": 0.1, "seed": 3},
    )
    trainer = bp.build_trainer(
        net, loss="bce", optimizer={"name": "sgd", "lr": example["lr"]}, batch_size=1, epochs=1, shuffle=False
    )
    return net, trainer


class Recorder(bp.Callback):
    def __init__(self) -> None:
        self.steps: list[dict] = []

    def on_iteration(self, step: bp.Step) -> None:
        self.steps.append(
            {
                "loss": step.loss,
                "outputs": step.outputs.copy(),
                "params": {k: v.copy() for k, v in step.params.items()},
                "grads": {k: v.copy() for k, v in step.grads.items()},
            }
        )


def test_initial_weights_are_the_articles_exactly(example):
    net, _ = build(example)
    for name, expected in example["initial"].items():
        # Exact: the legacy RandomState stream is deterministic and the scale is applied once.
        np.testing.assert_array_equal(net.params[name], np.array(expected), err_msg=name)
    assert net.n_parameters == example["trainable_parameters"]


def test_seven_predictions(example):
    net, trainer = build(example)
    trainer.epochs = len(example["yhat_by_iteration"])
    recorder = Recorder()
    trainer.callbacks = [recorder]
    history = trainer.fit([example["x"]], [example["y"]])
    predictions = [float(s["outputs"][0, 0]) for s in recorder.steps]
    np.testing.assert_allclose(predictions, example["yhat_by_iteration"], rtol=0, atol=TOL)
    assert history.iterations == 7
    # The published 3-decimal values follow from the same numbers.
    np.testing.assert_allclose(predictions, example["yhat_by_iteration_as_published"], rtol=0, atol=5e-4)


def test_first_iteration_forward_pass(example):
    net, _ = build(example)
    X = net.check_input([example["x"]])
    y_hat = net.forward(X)
    zs, activations = net.cache
    first = example["iteration_0"]
    np.testing.assert_allclose(zs[0][0], first["z1"], rtol=0, atol=TOL)
    np.testing.assert_allclose(activations[1][0], first["f1"], rtol=0, atol=TOL)
    np.testing.assert_allclose(y_hat[0, 0], first["yhat"], rtol=0, atol=TOL)
    loss = bp.get_registry().create("loss", "bce")
    assert loss.value(y_hat, np.array([[example["y"]]], dtype=float)) == pytest.approx(first["loss"], abs=TOL)


def test_first_iteration_gradients_and_update(example):
    net, trainer = build(example)
    recorder = Recorder()
    trainer.callbacks = [recorder]
    trainer.fit([example["x"]], [example["y"]])
    first = example["iteration_0"]
    (step,) = recorder.steps
    assert step["loss"] == pytest.approx(first["loss"], abs=TOL)
    assert list(step["grads"]) == ["W1", "b1", "W2", "b2"]
    for name, expected in first["grad"].items():
        np.testing.assert_allclose(step["grads"][name], np.array(expected), rtol=0, atol=TOL, err_msg=name)
    # The Step saw the pre-update parameters: the article's initial weights.
    for name, expected in example["initial"].items():
        np.testing.assert_array_equal(step["params"][name], np.array(expected), err_msg=name)
    for name, expected in first["after_update"].items():
        np.testing.assert_allclose(net.params[name], np.array(expected), rtol=0, atol=TOL, err_msg=name)


def test_update_is_the_articles_rule(example):
    """θ ← θ − ε ∂E/∂θ, checked against the gradients the trainer reported, to full precision."""
    net, trainer = build(example)
    recorder = Recorder()
    trainer.callbacks = [recorder]
    trainer.fit([example["x"]], [example["y"]])
    (step,) = recorder.steps
    for name in net.params:
        np.testing.assert_allclose(
            net.params[name], step["params"][name] - example["lr"] * step["grads"][name], rtol=1e-15, atol=1e-15
        )


def test_manual_forward_backward_matches_trainer(example):
    """The Python API's forward/backward on arrays gives the trainer's first-iteration gradients."""
    net, _ = build(example)
    loss = bp.get_registry().create("loss", "bce")
    X = net.check_input([example["x"]])
    y = np.array([[float(example["y"])]])
    grads = net.backward(loss.grad(net.forward(X), y))
    for name, expected in example["iteration_0"]["grad"].items():
        np.testing.assert_allclose(grads[name], np.array(expected), rtol=0, atol=TOL, err_msg=name)
