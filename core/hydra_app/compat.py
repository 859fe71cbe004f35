"""What differs between the Hydra versions backproplab supports (1.3 and 1.4), in one place.

- ``version_base``: Hydra 1.3 warns when it is *not* given (and then behaves as 1.1), Hydra 1.4
  deprecates the parameter and warns when it *is* given. So it is passed on 1.3 only.
- Hydra 1.4 asks the code that calls ``hydra.main`` for an execution whitelist: the ``_target_``s
  that config may instantiate (here the sweep callbacks, and the samplers of the Optuna sweeper's
  config). Without one it warns on every instantiation and will refuse in 1.5. Hydra 1.3 has no
  such parameter.
- Hydra 1.4 warns when a ConfigStore node is stored twice unless ``replace`` says what is meant.

Both are read from Hydra's public surface (its version string, ``hydra.main``'s signature),
never from ``hydra._internal``.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

# Everything backproplab's own config instantiates, plus the Optuna sweeper's samplers
# (hydra/sweeper/sampler=tpe|random|grid|cmaes|nsgaii|motpe). Patterns are Hydra 1.4's: a
# target, or a package followed by ``.*``.
EXECUTION_WHITELIST = ("backproplab.hydra_app.*", "optuna.samplers.*")


def hydra_version() -> tuple[int, int]:
    import hydra  # here, not at import: the CLI's own commands need no Hydra

    found = re.match(r"(\d+)\.(\d+)", hydra.__version__)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def version_base() -> dict[str, Any]:
    """Keyword arguments for ``hydra.main`` / ``initialize_config_module``: ``version_base="1.3"``
    on Hydra 1.3, nothing on 1.4 and later (its default is its own behaviour)."""
    return {"version_base": "1.3"} if hydra_version() < (1, 4) else {}


def store_options() -> dict[str, Any]:
    """Keyword arguments for ``ConfigStore.store``: storing a node again (``register_configs``
    with another registry) replaces it, as Hydra 1.3 always did; Hydra 1.4 asks for that to be
    said (``replace=True``) and warns otherwise."""
    from hydra.core.config_store import ConfigStore

    return {"replace": True} if "replace" in inspect.signature(ConfigStore.store).parameters else {}


def main_options() -> dict[str, Any]:
    """Keyword arguments for ``hydra.main``: the version base, and the execution whitelist where
    this Hydra takes one."""
    import hydra

    options = version_base()
    if "execution_whitelist" in inspect.signature(hydra.main).parameters:
        options["execution_whitelist"] = list(EXECUTION_WHITELIST)
    return options


def info_choices() -> list[str]:
    """What ``--info`` takes: Hydra 1.4 adds ``aliases``."""
    choices = ["all", "config", "defaults", "defaults-tree", "plugins", "searchpath"]
    return choices if hydra_version() < (1, 4) else [*choices[:1], "aliases", *choices[1:]]
