"""An example backproplab plugin: the Mish activation, the Lion optimizer, an inverse-time
learning-rate schedule, a callback that stops at a target loss and the spirals data set.

backproplab finds this module through the ``backproplab`` entry point in pyproject.toml and
calls the hook implementations below once, at start-up.
"""

import backproplab

from .activations import Mish
from .callbacks import StopAtLoss
from .datasets import spirals
from .optimizers import Lion
from .schedules import InverseTimeDecay

__all__ = [
    "InverseTimeDecay", "Lion", "Mish", "StopAtLoss",
    "register_activations", "register_callbacks", "register_datasets", "register_optimizers", "register_schedules",
    "spirals",
]


@backproplab.hookimpl
def register_activations(register):
    register("mish", Mish)


@backproplab.hookimpl
def register_optimizers(register):
    register("lion", Lion)


@backproplab.hookimpl
def register_datasets(register):
    register("spirals", spirals)


@backproplab.hookimpl
def register_schedules(register):
    register("inverse_time", InverseTimeDecay)


@backproplab.hookimpl
def register_callbacks(register):
    register("stop_at_loss", StopAtLoss)
