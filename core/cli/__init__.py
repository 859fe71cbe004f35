"""The ``backproplab`` command: the Hydra app plus the ``explain`` and ``plugins`` sub-commands."""

from .main import main

__all__ = ["main"]
