"""A conformance kit for component authors, modelled on scikit-learn's ``check_estimator``.

Each ``check_*`` takes a component class (built with its default hyperparameters) or an
instance, and raises AssertionError naming the component and the violated property::

    from backproplab.testing import check_activation, parametrize_with_checks

    check_activation(Mish)
    check_dataset(spirals)  # a data set's factory function

    @parametrize_with_checks([Mish, Lion])
    def test_conformance(component, check):
        check(component)

Gradients are checked with central differences in float64 (see ``_numeric`` for how round-off
and kinks are handled). docs/plugins.md lists every check and its options.
"""

from ._checks import Check, checks_for
from ._numeric import compare_gradient, rel_error
from ._pytest import parametrize_with_checks, with_options
from ._subject import detect_kind
from .activation import check_activation
from .callback import check_callback
from .dataset import check_dataset
from .initializer import check_initializer
from .loss import check_loss
from .optimizer import check_optimizer
from .schedule import check_schedule

__all__ = [
    "Check",
    "check_activation",
    "check_callback",
    "check_dataset",
    "check_initializer",
    "check_loss",
    "check_optimizer",
    "check_schedule",
    "checks_for",
    "compare_gradient",
    "detect_kind",
    "parametrize_with_checks",
    "rel_error",
    "with_options",
]
