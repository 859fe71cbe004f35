"""An example backproplab plugin: the Mish activation, the Lion optimizer and the spirals data set.

backproplab finds this module through the ``backproplab`` entry point in pyproject.toml and
calls the two hook implementations below once, at start-up.
"""

import backproplab

from .activations import Mish
from .datasets import spirals
from .optimizers import Lion

__all__ = ["Lion", "Mish", "register_activations", "register_datasets", "register_optimizers", "spirals"]


@backproplab.hookimpl
def register_activations(register):
    register("mish", Mish)


@backproplab.hookimpl
def register_optimizers(register):
    register("lion", Lion)


@backproplab.hookimpl
def register_datasets(register):
    register("spirals", spirals)
