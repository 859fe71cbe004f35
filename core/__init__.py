"""backproplab: hand-written back-propagation in numpy, with pluggy components, Hydra configs
and MLflow tracking."""

from importlib.metadata import PackageNotFoundError, version as _version

from backproplab.components.hookspecs import hookimpl, hookspec
from .errors import BackproplabError, ConfigError, NonFiniteLossError, NonFiniteParametersError, PluginError, UnknownComponentError
from backproplab.numerics.network import Network
from backproplab.numerics.trainer import HISTORY_POINTS, Callback, EpochSummary, History, Step, Trainer
from backproplab.components.loading import get_plugins, get_registry, load_plugins
from backproplab.components.build import build_network, build_trainer
from backproplab.components.datasets import Examples, data_defaults

try:
    __version__ = _version("backproplab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "hookimpl",
    "hookspec",
    "BackproplabError",
    "ConfigError",
    "NonFiniteLossError",
    "NonFiniteParametersError",
    "PluginError",
    "UnknownComponentError",
    "Network",
    "Trainer",
    "Callback",
    "Step",
    "EpochSummary",
    "History",
    "HISTORY_POINTS",
    "get_plugins",
    "get_registry",
    "load_plugins",
    "build_network",
    "build_trainer",
    "Examples",
    "data_defaults",
    "__version__",
]
