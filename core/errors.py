"""Exception types. Every user-facing error is one actionable line."""

from __future__ import annotations


class BackproplabError(Exception):
    """Base class for errors that the CLI reports as one line, without a traceback."""


class ConfigError(BackproplabError, ValueError):
    """Bad input or configuration, detected before any computation starts."""


class UnknownComponentError(ConfigError):
    """A component name that no plugin registered."""


class PluginError(BackproplabError, RuntimeError):
    """A plugin that cannot be loaded or that breaks the plugin contract."""


class NonFiniteLossError(BackproplabError, FloatingPointError):
    """Training produced a NaN or infinite loss; the loop stops at the first one.

    ``epoch`` and ``iteration`` are 0-based indices, like ``Step`` and MLflow's step (the global
    iteration); the message counts from 1, as the progress lines do ("iteration 41/70")."""

    def __init__(self, loss: float, epoch: int, iteration: int):
        self.loss, self.epoch, self.iteration = loss, epoch, iteration
        super().__init__(
            f"non-finite loss {loss!r} at epoch {epoch + 1}, iteration {iteration + 1}; "
            "try a smaller optimizer.lr or standardised inputs (data.standardize=true)"
        )
