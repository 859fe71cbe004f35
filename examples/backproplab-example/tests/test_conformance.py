"""The backproplab conformance kit on this package's components: one pytest test per check."""

from backproplab.testing import parametrize_with_checks

from backproplab_example import InverseTimeDecay, Lion, Mish, StopAtLoss, spirals


@parametrize_with_checks({
    "Mish": Mish,
    "Lion": Lion,
    "Lion_decayed": Lion(lr=0.01, weight_decay=0.1),
    "InverseTimeDecay": InverseTimeDecay,
    "StopAtLoss": StopAtLoss,
    "StopAtLoss_reached": StopAtLoss(target=0.65),
    "spirals": spirals,
})
def test_conformance(component, check):
    check(component)
