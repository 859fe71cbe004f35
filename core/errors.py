"""Exception types. Every user-facing error is one actionable line."""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Sequence


class BackproplabError(Exception):
    """Base class for errors that the CLI reports as one line, without a traceback."""


_UNSET: Any = object()


def closest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice a typo most likely meant, or None: the one "did you mean" of every message."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=cutoff)
    return matches[0] if matches else None


def one_line(text: Any) -> str:
    """Any message as one line: its non-blank lines joined with "; ", inner runs of white space
    folded. The one way a multi-line text (Hydra's, SQLAlchemy's) becomes a console line."""
    lines = [" ".join(line.split()) for line in str(text).splitlines()]
    return "; ".join(line for line in lines if line)


def exception_line(exc: BaseException, *, with_type: bool | None = None) -> str:
    """An exception as one line. backproplab's own errors are written for users and read as
    they are; anything else keeps its type name, often the only clue (``with_type`` forces
    either). The one wording shared by the console, ``failure_reason`` and the plugin report."""
    text = one_line(exc)
    if with_type is None:
        with_type = not isinstance(exc, BackproplabError)
    if not with_type:
        return text or "(no message)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ConfigError(BackproplabError, ValueError):
    """Bad input or configuration, detected before any computation starts.

    Raised either with a ready message, or with its parts, which stay on the exception for
    callers and tests and which ``format_problem`` words the one way every such message reads::

        ConfigError(key="optimizer.lr", value="abc", problem="is invalid for optimizer=sgd",
                    valid="a number (default 0.5)")
        # optimizer.lr='abc' is invalid for optimizer=sgd; valid: a number (default 0.5)

    ``key`` is the key as the user types it, ``value`` the value given (left out when there is
    none), ``valid`` a description or the list of valid choices, ``valid_label`` what to call
    them ("valid", "valid keys", "available") and ``hint`` the closest valid choice.
    ``subject`` words the opening where ``key=value`` does not read well.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        key: str | None = None,
        value: Any = _UNSET,
        problem: str = "is invalid",
        valid: str | Sequence[Any] | None = None,
        valid_label: str = "valid",
        hint: str | None = None,
        subject: str | None = None,
    ) -> None:
        self.key = key
        self.value = None if value is _UNSET else value
        self.has_value = value is not _UNSET
        self.valid = valid
        self.hint = hint
        if message is None:
            message = format_problem(key, value, problem, valid, valid_label, hint, subject)
        super().__init__(message)


def format_problem(
    key: str | None,
    value: Any = _UNSET,
    problem: str = "is invalid",
    valid: str | Sequence[Any] | None = None,
    valid_label: str = "valid",
    hint: str | None = None,
    subject: str | None = None,
) -> str:
    """``key=value problem; valid: ...; did you mean 'hint'?``, the form of every config error.
    ``subject`` replaces the ``key=value`` opening where a message names its subject otherwise
    ("unknown optimizer 'adamm'")."""
    if subject is None:
        subject = "" if key is None else str(key) if value is _UNSET else f"{key}={_show(value)}"
    text = " ".join(part for part in (subject, problem) if part)
    if valid is not None:
        choices = valid if isinstance(valid, str) else ", ".join(str(v) for v in valid) or "(none)"
        text += f"; {valid_label}: {choices}"
    if hint:
        text += f"; did you mean {hint!r}?"
    return text


def _show(value: Any) -> str:
    # Values as the user would type them back, never a numpy repr; long ones cut, so that a
    # 1000-digit number or a pasted file stays one readable line.
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...({len(text)} characters)"


class UnknownComponentError(ConfigError):
    """A component name that no plugin registered."""


class PluginError(BackproplabError, RuntimeError):
    """A plugin that cannot be loaded or that breaks the plugin contract."""


class ComponentError(ConfigError):
    """A plugin's component that breaks its interface when it is built or first called (a
    missing method, a constructor that raises, an array of the wrong shape, non-finite values
    from finite inputs), found before anything is written. The message names the component and
    the plugin distribution behind it; a config error, since choosing another component (or
    fixing the plugin) is the remedy, not a smaller learning rate."""


class NonFiniteLossError(BackproplabError, FloatingPointError):
    """Training produced a NaN or infinite loss; the loop stops at the first one.

    ``epoch`` and ``iteration`` are 0-based indices, like ``Step`` and MLflow's step (the global
    iteration); the message counts from 1, as the progress lines do ("iteration 41/70").

    ``at_fault`` is the part that turned finite inputs into NaN, a bug of its own rather than a
    learning rate too large: ``("activation", layer)`` (0-based) or ``("loss", None)``; None when
    no part did. ``culprit`` names it as the user chose it (``model.activation=...``)."""

    def __init__(self, loss: float, epoch: int, iteration: int, at_fault: tuple[str, int | None] | None = None, culprit: str | None = None):
        self.loss, self.epoch, self.iteration, self.at_fault = loss, epoch, iteration, at_fault
        where = f"non-finite loss {loss!r} at epoch {epoch + 1}, iteration {iteration + 1}"
        if at_fault is None:
            super().__init__(f"{where}; try a smaller optimizer.lr or standardised inputs (data.standardize=true)")
            return
        kind, layer = at_fault
        part = culprit or (f"the {kind}" if layer is None else f"the activation of layer {layer + 1}")
        super().__init__(
            f"{where}; {part} returned NaN for finite inputs: the component is at fault, not the learning rate; "
            "fix the plugin or choose another component"
        )


class NonFiniteParametersError(BackproplabError, FloatingPointError):
    """An optimizer update left a parameter NaN or infinite (e.g. ``optimizer.lr=1e308``).

    Outputs can hide it (a sigmoid of inf is 1, so the loss stays finite), so the trainer checks
    the parameters themselves; the run fails as for a non-finite loss. ``epoch`` and
    ``iteration`` are 0-based, the iteration whose update did it; the message counts from 1."""

    def __init__(self, name: str, epoch: int, iteration: int):
        self.name, self.epoch, self.iteration = name, epoch, iteration
        super().__init__(
            f"non-finite parameter {name} after the update of epoch {epoch + 1}, iteration {iteration + 1}; "
            "try a smaller optimizer.lr or standardised inputs (data.standardize=true)"
        )

