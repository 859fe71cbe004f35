"""Upper bounds on what a configured run may ask of the machine, checked before allocating.

numpy reports an impossible request as ``MemoryError: Unable to allocate 74.5 GiB ...`` (or
``ValueError: Maximum allowed dimension exceeded``) from deep inside a constructor, naming no
key. Here the arrays a run will hold are sized from the config first, and a run that cannot fit
into the machine's memory is refused with one line naming the key and the sizes.
"""

from __future__ import annotations

from typing import Sequence

from backproplab.errors import ConfigError
# The machine's memory and the data set's share of it are foundation: data-set plugins size their
# generated arrays with them too.
from backproplab.validation import DATA_COPIES, FLOAT_BYTES, format_bytes, machine_memory  # noqa: F401 - re-exported

# Arrays per parameter while training: the parameter, its gradient, and up to two optimizer
# slots (Adam's first and second moments; SGD with momentum has one, plain SGD none). Rough on
# purpose: it only has to tell "fits" from "can never fit".
COPIES_PER_PARAMETER = 4


def parameter_count(sizes: Sequence[int]) -> int:
    """Weights and biases of a dense network of widths ``sizes``."""
    return sum(sizes[i] * sizes[i - 1] + sizes[i] for i in range(1, len(sizes)))


def network_bytes(sizes: Sequence[int], batch_rows: int, itemsize: int) -> tuple[int, int]:
    """(bytes of the weights and biases, bytes of everything training holds) for a network of
    widths ``sizes``: the parameters times ``COPIES_PER_PARAMETER``, plus one batch's z and
    activation arrays per layer. Python integers: no overflow for any width."""
    parameters = parameter_count(sizes)
    activations = 2 * batch_rows * sum(sizes)
    weights = parameters * itemsize
    return weights, weights * COPIES_PER_PARAMETER + activations * itemsize


def check_network_memory(
    sizes: Sequence[int], batch_rows: int, itemsize: int, *, key: str, value: object, memory: int | None = None
) -> None:
    """Refuse a network whose training arrays cannot fit into the machine's memory."""
    memory = machine_memory() if memory is None else memory
    if memory is None:
        return
    weights, total = network_bytes(sizes, batch_rows, itemsize)
    if total <= memory:
        return
    widths = " -> ".join(str(s) if s < 10**12 else f"{float(s):.1e}" for s in sizes)
    raise ConfigError(
        key=key,
        value=value,
        problem=(
            f"needs {format_bytes(weights)} for the weights of the layers {widths}, about {format_bytes(total)} "
            f"with gradients, optimizer state and a batch of {batch_rows} row{'s' if batch_rows != 1 else ''}, but this machine has "
            f"{format_bytes(memory)} of memory"
        ),
        valid="narrower or fewer hidden layers",
    )


def max_rows(n_features: int, memory: int | None = None) -> int | None:
    """The most rows of ``n_features`` float64 features a data set may have on this machine
    (None: unknown memory, no bound)."""
    memory = machine_memory() if memory is None else memory
    if memory is None:
        return None
    return memory // (max(n_features, 1) * FLOAT_BYTES * DATA_COPIES)


# What a trace (``logger.trace=true``) holds per iteration: the iteration, the epoch and the loss,
# then every parameter and its gradient, all as 8-byte numbers, for the whole run at once. The
# rest of a run's memory does not grow with its length (its History is bounded).
TRACE_FIELDS = 3


def check_trace_memory(sizes: Sequence[int], iterations: int, *, memory: int | None = None) -> None:
    """Refuse a per-iteration trace of every parameter and gradient that cannot fit into memory."""
    memory = machine_memory() if memory is None else memory
    if memory is None:
        return
    n = parameter_count(sizes)
    total = iterations * (TRACE_FIELDS + 2 * n) * FLOAT_BYTES
    if total <= memory:
        return
    raise ConfigError(
        subject="logger.trace=true",
        problem=(
            f"keeps every parameter and gradient of every iteration: {iterations} iterations of {n} parameters need "
            f"about {format_bytes(total)}, but this machine has {format_bytes(memory)} of memory"
        ),
        valid="false, or fewer trainer.epochs, or a larger data.batch_size",
    )
