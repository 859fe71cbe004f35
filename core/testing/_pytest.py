"""``parametrize_with_checks``: one pytest test per (component, check), after scikit-learn's helper
of the same name. pytest is imported only when the helper is used, so it is not a runtime
dependency of backproplab."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ._checks import checks_for
from ._subject import label


@dataclass(frozen=True)
class WithOptions:
    """A component together with its kind and check options, for ``parametrize_with_checks``."""

    component: Any
    kind: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def with_options(component: Any, *, kind: str | None = None, **options: Any) -> WithOptions:
    """Attach check options to a component, e.g. ``with_options(MyLoss, targets=make_targets)``."""
    checks_for(component, kind, **options)  # validate the kind and the option names now
    return WithOptions(component, kind, options)


def parametrize_with_checks(
    components: Iterable[Any] | Mapping[str, Any],
    *,
    expected_failures: Mapping[str, str] | None = None,
):
    """A ``pytest.mark.parametrize`` over ``component, check`` for every check of every component.

    ``components`` is a list of classes or instances (or ``with_options(...)``), or a mapping
    from a test-id label to one of those. Test ids read ``<label>-<check name>``, the label
    being the class name unless given. ``expected_failures`` maps such ids to a reason; those
    cases are marked ``xfail(strict=True)``, so a fixed component turns the test red until the
    entry is removed. Use it as::

        @parametrize_with_checks([Mish, Lion])
        def test_conformance(component, check):
            check(component)
    """
    import pytest

    items = components.items() if isinstance(components, Mapping) else [(None, c) for c in components]
    expected = dict(expected_failures or {})
    params, ids = [], []
    labels: set[str] = set()
    for name, entry in items:
        case = entry if isinstance(entry, WithOptions) else WithOptions(entry)
        prefix = name or label(case.component)
        if prefix in labels:
            # pytest would number the clashing ids itself ("...0", "...1"), so an id, and an
            # expected_failures entry, would depend on list order.
            raise ValueError(
                f"two components share the test-id label {prefix!r}; pass a mapping such as "
                f"{{{prefix!r}: ..., {prefix + '_tuned'!r}: ...}} to name them"
            )
        labels.add(prefix)
        for check in checks_for(case.component, case.kind, **case.options):
            test_id = f"{prefix}-{check.name}"
            marks = ()
            if test_id in expected:
                marks = (pytest.mark.xfail(strict=True, raises=AssertionError, reason=expected[test_id]),)
            params.append(pytest.param(case.component, check, id=test_id, marks=marks))
            ids.append(test_id)
    stale = sorted(set(expected) - set(ids))
    if stale:
        raise ValueError(f"expected_failures names no generated test: {stale[0]!r}; ids look like {ids[0]!r}")
    return pytest.mark.parametrize("component, check", params)
