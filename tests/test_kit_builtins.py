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
from backproplab.testing import parametrize_with_checks

KNOWN_FAILURES: dict[str, str] = {}


def builtin_components() -> dict[str, object]:
    return {
        f"{r.kind}:{r.name}": r.factory
        for r in backproplab.get_registry()
        if r.source.distribution == BUILTIN_DISTRIBUTION
    }


BUILTINS = builtin_components()


@parametrize_with_checks(BUILTINS, expected_failures=KNOWN_FAILURES)
def test_builtin_conforms(component, check):
    check(component)


def test_every_builtin_kind_and_name_is_enumerated():
    """The enumeration really covers every kind and the names the project promises."""
    assert {label.split(":")[0] for label in BUILTINS} == {"activation", "loss", "initializer", "optimizer", "schedule", "callback"}
    for required in ("activation:sigmoid", "activation:softmax", "loss:cross_entropy",
                     "initializer:legacy_randn", "optimizer:adamw", "schedule:constant", "schedule:plateau",
                     "callback:early_stopping"):
        assert required in BUILTINS
