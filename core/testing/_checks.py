"""The catalogue of checks, per kind, and the callable objects the pytest helper hands out."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from ._subject import KINDS, detect_kind

CATALOGUE: dict[str, list[Callable[..., None]]] = {kind: [] for kind in KINDS}


def register_check(kind: str):
    """Add a check to ``kind``'s catalogue; the order of definition is the order they run in."""

    def deco(func):
        CATALOGUE[kind].append(func)
        return func

    return deco


def option_names(kind: str) -> set[str]:
    names: set[str] = set()
    for func in CATALOGUE[kind]:
        names |= {p.name for p in inspect.signature(func).parameters.values() if p.kind is p.KEYWORD_ONLY}
    return names


@dataclass(frozen=True)
class Check:
    """One check bound to its options; call it with the component. ``str()`` is its name."""

    func: Callable[..., None]
    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.func.__name__

    def __call__(self, component: Any) -> None:
        __tracebackhide__ = True
        accepted = {p.name for p in inspect.signature(self.func).parameters.values()}
        self.func(component, **{k: v for k, v in self.options.items() if k in accepted})

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__


def checks_for(component: Any, kind: str | None = None, **options: Any) -> list[Check]:
    """Every check that applies to ``component`` (its kind detected from its methods unless
    given), with ``options`` (e.g. ``targets=`` for a loss) bound to the checks that take them."""
    if kind is None:
        kind = detect_kind(component)
    elif kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; valid: {', '.join(KINDS)}")
    unknown = sorted(set(options) - option_names(kind))
    if unknown:
        raise TypeError(
            f"{unknown[0]!r} is not an option of the {kind} checks; valid: {', '.join(sorted(option_names(kind))) or '(none)'}"
        )
    return [Check(func, kind, dict(options)) for func in CATALOGUE[kind]]


def run_checks(component: Any, kind: str, options: dict[str, Any]) -> None:
    __tracebackhide__ = True
    for check in checks_for(component, kind, **options):
        check(component)
