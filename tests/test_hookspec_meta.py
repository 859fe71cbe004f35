"""Meta-tests in the style of datasette's tests/test_plugins.py: every hookspec is documented in
docs/plugins.md (with its docstring, so the two cannot drift) and has a test named
``test_hook_<hookname>``; each hook's test is here too.

The scanners take the hookspec module, the docs text and the tests folder as arguments, and
the last meta-test feeds them a hookspec module with a hook that has neither docs nor tests, to
show that adding a hook without both makes this file fail.
"""

from __future__ import annotations

import ast
import inspect
import re
import types
from pathlib import Path

import numpy as np
import pytest

import backproplab
from backproplab.components import hookspecs
from backproplab.components.registry import Source
from backproplab.testing import (
    check_activation,
    check_callback,
    check_dataset,
    check_initializer,
    check_loss,
    check_optimizer,
    check_schedule,
)
from backproplab.testing._checks import CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "plugins.md"
TESTS = ROOT / "tests"


def hookspec_names(module) -> list[str]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return sorted(name for name, obj in vars(module).items() if callable(obj) and hasattr(obj, marker))


def documented_hooks(markdown: str) -> dict[str, str]:
    """Hook name -> its section text, from the ``### name(...)`` headings of the Hook reference."""
    match = re.search(r"^## Hook reference\n(.*?)(?=^## )", markdown, flags=re.S | re.M)
    if not match:
        return {}
    parts = re.split(r"^### (\w+)\(.*\)\s*$", match.group(1), flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def hooks_with_tests(tests_dir: Path) -> set[str]:
    """Names of test functions starting ``test_hook_`` anywhere under tests/."""
    names = set()
    for path in tests_dir.glob("**/test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_hook_"):
                names.add(node.name[len("test_hook_"):])
    return names


def squash(text: str) -> str:
    return " ".join(text.split())


def missing_docs(module, markdown: str) -> list[str]:
    docs = documented_hooks(markdown)
    return [h for h in hookspec_names(module) if h not in docs]


def stale_docs(module, markdown: str) -> list[str]:
    docs = documented_hooks(markdown)
    return [h for h in hookspec_names(module) if h in docs
            and squash(inspect.getdoc(getattr(module, h)) or "") not in squash(docs[h])]


def missing_tests(module, tests_dir: Path) -> list[str]:
    tested = hooks_with_tests(tests_dir)
    return [h for h in hookspec_names(module) if not any(t == h or t.startswith(h + "_") for t in tested)]


# --- the meta-tests ----------------------------------------------------------------------


def test_the_registration_hooks_exist():
    assert hookspec_names(hookspecs) == [
        "register_activations", "register_callbacks", "register_datasets", "register_initializers", "register_losses",
        "register_optimizers", "register_schedules"]


def test_every_hookspec_is_documented():
    assert missing_docs(hookspecs, DOCS.read_text()) == []


def test_no_documented_hook_is_unknown():
    unknown = sorted(set(documented_hooks(DOCS.read_text())) - set(hookspec_names(hookspecs)))
    assert unknown == [], f"docs/plugins.md documents hooks that do not exist: {unknown}"


def test_hook_docs_repeat_the_hookspec_docstrings():
    assert stale_docs(hookspecs, DOCS.read_text()) == []


def test_every_hookspec_has_a_test():
    assert missing_tests(hookspecs, TESTS) == []


@pytest.mark.parametrize("hook", hookspec_names(hookspecs))
def test_hookspec_docstring_says_when_it_is_called_and_what_it_returns(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert "Called" in doc and "Return" in doc, f"{hook}'s docstring must say when it is called and what it returns"
    assert list(inspect.signature(getattr(hookspecs, hook)).parameters) == ["register"]


def test_every_kit_check_is_documented():
    text = DOCS.read_text()
    undocumented = [f.__name__ for funcs in CATALOGUE.values() for f in funcs if f"`{f.__name__}`" not in text]
    assert undocumented == []


def test_meta_tests_fail_for_a_hook_without_docs_or_tests(tmp_path):
    """A hook added to the spec without docs and tests is caught; documenting it with the wrong
    text is caught too."""
    spec = types.ModuleType("future_hookspecs")
    for name in hookspec_names(hookspecs):
        setattr(spec, name, getattr(hookspecs, name))

    @hookspecs.hookspec
    def register_schedulers(register):
        """Called once at start-up. Call ``register(name, factory)`` for each schedule. Return nothing."""

    spec.register_schedulers = register_schedulers
    docs = DOCS.read_text()
    assert missing_docs(spec, docs) == ["register_schedulers"]
    assert missing_tests(spec, TESTS) == ["register_schedulers"]

    end = docs.index("\n## ", docs.index("## Hook reference"))  # the end of the Hook reference
    documented = docs[:end] + "\n\n### register_schedulers(register)\n\nSomething else entirely.\n" + docs[end:]
    assert missing_docs(spec, documented) == []
    assert stale_docs(spec, documented) == ["register_schedulers"]

    (tmp_path / "test_sched.py").write_text("def test_hook_register_schedulers():\n    pass\n")
    assert missing_tests(spec, tmp_path) == [h for h in hookspec_names(hookspecs)]  # only the new one is tested there


# --- one test per hook -------------------------------------------------------------------


class Cube:
    def forward(self, z):
        return z**3

    def backward(self, z, a, grad_a):
        return grad_a * 3 * z * z


class LogCosh:
    """L = mean_k log(cosh(y_hat - y)), computed without overflow."""

    def value(self, y_hat, y):
        d = np.abs(y_hat - y)
        return float(np.mean(d + np.log1p(np.exp(-2 * d)) - np.log(2.0)))

    def grad(self, y_hat, y):
        return np.tanh(y_hat - y) / y_hat.size


class ScaledUniform:
    def __init__(self, scale: float = 0.1):
        self.scale = scale

    def __call__(self, shape, rng, dtype=np.float64):
        return rng.uniform(-self.scale, self.scale, size=shape).astype(dtype)


class SignSGD:
    def __init__(self, lr: float = 0.01):
        self.lr = lr

    def step(self, params, grads):
        for name, g in grads.items():
            params[name] -= self.lr * np.sign(g)


class HalveEachEpoch:
    """The rate halves after every epoch."""

    def initial_lr(self, base_lr):
        return base_lr

    def next_lr(self, epoch, lr, metrics):
        return lr / 2


class StopAfter:
    """Ends training after ``epochs`` epochs."""

    def __init__(self, epochs: int = 2):
        self.epochs = epochs

    def on_train_begin(self, trainer):
        self.trainer = trainer

    def on_epoch_end(self, summary):
        if summary.epoch + 1 >= self.epochs:
            self.trainer.stop_training = True
            self.trainer.stop_reason = f"stopped after {self.epochs} epochs"


def _load_one(hook_name, name, factory):
    calls = []

    def impl(register):
        calls.append(register)
        register(name, factory)
        return "ignored"  # hooks return nothing; a return value must not matter

    impl.__name__ = hook_name
    plugin = types.ModuleType(f"plug_{name}")
    setattr(plugin, hook_name, backproplab.hookimpl(impl))
    source = Source(f"plug_{name}", f"backproplab-{name}", "9.9")
    plugin_set = backproplab.load_plugins(extra=[(plugin, source)])
    (info,) = [p for p in plugin_set.plugins if p.distribution == source.distribution]
    assert info.error is None and info.hooks == [hook_name]
    assert len(calls) == 1, "a registration hook is called once per load"
    return plugin_set, info, source


def test_hook_register_activations():
    plugin_set = _exercise("register_activations", "activation", "cube", Cube, check_activation)
    network = backproplab.build_network([2, 3, 1], activation="cube", output_activation="sigmoid",
                                        registry=plugin_set.registry)
    assert isinstance(network.activations[0], Cube)


def test_hook_register_losses():
    _exercise("register_losses", "loss", "log_cosh", LogCosh, check_loss)


def test_hook_register_initializers():
    _exercise("register_initializers", "initializer", "scaled_uniform", ScaledUniform, check_initializer)


def test_hook_register_optimizers():
    plugin_set = _exercise("register_optimizers", "optimizer", "sign_sgd", SignSGD, check_optimizer)
    opt = plugin_set.registry.create("optimizer", "sign_sgd", lr=0.5)
    params = {"W1": np.array([1.0, -1.0])}
    opt.step(params, {"W1": np.array([3.0, -0.2])})
    assert params["W1"].tolist() == [0.5, -0.5]


def ring(n_points: int = 40, seed: int = 0):
    """Points inside (label 0) and outside (label 1) the unit circle."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n_points, 2))
    return X, (np.hypot(X[:, 0], X[:, 1]) > 1).astype(int)


def test_hook_register_datasets():
    from backproplab.run.data import load_dataset

    plugin_set, info, source = _load_one("register_datasets", "ring", ring)
    assert info.components["dataset"] == ["ring"]
    assert plugin_set.registry.source_of("dataset", "ring") == source
    assert {"moons", "csv", "seed_example"} <= set(plugin_set.registry.names("dataset")), "built-ins load alongside"
    ds = load_dataset({"name": "ring", "n_points": 30, "val_fraction": 0.2, "seed": 4}, plugin_set.registry)
    assert (ds.n_train, ds.n_val, ds.task, ds.feature_names) == (24, 6, "binary", ["x1", "x2"])
    check_dataset(ring)


def _exercise(hook_name, kind, name, factory, check):
    """The hook's registrations reach the registry under the plugin's source, appear in the
    plugin report, build by name, and the component conforms."""
    plugin_set, info, source = _load_one(hook_name, name, factory)
    assert info.components[kind] == [name]
    assert plugin_set.registry.source_of(kind, name) == source
    assert isinstance(plugin_set.registry.create(kind, name), factory)
    assert "sigmoid" in plugin_set.registry.names("activation"), "built-ins load alongside"
    check(factory)
    return plugin_set


def test_hook_register_schedules():
    plugin_set = _exercise("register_schedules", "schedule", "halve", HalveEachEpoch, check_schedule)
    network = backproplab.build_network([2, 3, 1], seed=0)
    trainer = backproplab.build_trainer(network, optimizer={"name": "sgd", "lr": 0.4}, schedule="halve", epochs=3,
                                        registry=plugin_set.registry)
    history = trainer.fit(np.ones((4, 2)), np.ones(4))
    assert [e.lr for e in history.epochs] == [0.4, 0.2, 0.1]


def test_hook_register_callbacks():
    plugin_set = _exercise("register_callbacks", "callback", "stop_after", StopAfter, check_callback)
    network = backproplab.build_network([2, 3, 1], seed=0)
    trainer = backproplab.build_trainer(network, callbacks=[{"name": "stop_after", "epochs": 2}], epochs=5,
                                        registry=plugin_set.registry)
    history = trainer.fit(np.ones((4, 2)), np.ones(4))
    assert len(history.epochs) == 2 and history.stop_reason == "stopped after 2 epochs"
