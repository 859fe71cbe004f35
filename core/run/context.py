"""What one configured run is made of, handed from the app to tracking and progress display.

Built by the Hydra app after validation and before training, so every consumer sees resolved
objects and never has to look a name up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backproplab.numerics.network import Network
from backproplab.components.registry import Source
from .data import Dataset


@dataclass(frozen=True)
class ComponentInfo:
    """A component as the user named it, with the plugin distribution that provided it."""

    kind: str  # activation | loss | initializer | optimizer
    role: str  # activation, output_activation, loss, initializer, optimizer
    name: str
    source: Source


@dataclass
class RunContext:
    config: dict[str, Any]  # the resolved config as plain containers (OmegaConf.to_container)
    network: Network
    components: list[ComponentInfo]
    overrides: list[str] = field(default_factory=list)
    task: str = "binary"  # binary | multiclass | regression
    n_train: int = 0
    n_val: int = 0
    iterations_per_epoch: int = 0
    epochs: int = 0
    # data.standardize's statistics {"mean": ..., "scale": ...}, or None when inputs are raw.
    input_scaling: dict[str, Any] | None = None
    # Set by whoever launches the run (the Hydra app), so that tracking never asks the launcher:
    # the job's number in its multirun (None for a single run), and the directory the command
    # was started in (the user's project, for the git commit tag).
    job_num: int | None = None
    launch_dir: str | None = None
    # Class names in label order when the data's targets were text (output k means classes[k]).
    classes: list[str] | None = None
    # The run's data set: feature names, the training and validation splits the network trains
    # and validates on; for the run's dataset inputs, the logged model's signature and input
    # example, and the decision-boundary pictures.
    dataset: Dataset | None = None
    # The checkpoint this run continues (``backproplab.run.checkpoint.Checkpoint``): its MLflow
    # run is reopened rather than a new one created. None for a run that starts afresh.
    resume: Any = None

    @property
    def resumed_from(self) -> list[int]:
        """The iteration every resume of this run started at, this one last; empty when fresh."""
        if self.resume is None:
            return []
        return [*self.resume.resumed_from, self.resume.iteration]
