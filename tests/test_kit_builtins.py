"""Every built-in component goes through the same conformance kit that third-party authors run.

The components are enumerated from the real registry (the built-in distribution's entry points),
so a built-in added later is checked without touching this file. Every registered name is checked,
aliases included (logistic and sigmoid, gd and sgd, ...): each is a name a user can type.

A built-in that fails a check is a bug in that component: it is listed in KNOWN_FAILURES with
the evidence, as a strict xfail, until plugins/ is fixed; the check itself is never loosened.
"""

from __future__ import annotations

import backproplab
from backproplab.components.loading import BUILTIN_DISTRIBUTION
from backproplab.testing import parametrize_with_checks, with_options

KNOWN_FAILURES: dict[str, str] = {}


def builtin_components() -> dict[str, object]:
    from backproplab.datasets import path

    # csv has no default file: the kit reads the shipped marks.csv through it.
    options = {"dataset:csv": {"params": {"path": str(path("marks.csv"))}}}
    return {
        f"{r.kind}:{r.name}": with_options(r.factory, **options[f"{r.kind}:{r.name}"]) if f"{r.kind}:{r.name}" in options else r.factory
        for r in backproplab.get_registry()
        if r.source.distribution == BUILTIN_DISTRIBUTION
    }


BUILTINS = builtin_components()


@parametrize_with_checks(BUILTINS, expected_failures=KNOWN_FAILURES)
def test_builtin_conforms(component, check):
    check(component)


def test_every_builtin_kind_and_name_is_enumerated():
    """The enumeration really covers every kind and the names the project promises."""
    assert {label.split(":")[0] for label in BUILTINS} == {
        "activation", "loss", "initializer", "optimizer", "schedule", "callback", "dataset"}
    for required in ("activation:sigmoid", "activation:softmax", "loss:cross_entropy",
                     "initializer:legacy_randn", "optimizer:adamw", "schedule:constant", "schedule:plateau",
                     "callback:early_stopping", "dataset:csv", "dataset:moons"):
        assert required in BUILTINS
