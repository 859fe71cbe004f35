"""Every Hydra API backproplab uses that Hydra does not promise to keep, behind one door.

Hydra's public API is ``hydra.main``, ``hydra.compose`` and ``initialize*``, ``hydra.core``
(``GlobalHydra``, ``HydraConfig``, ``ConfigStore``, the ``ConfigLoader`` interface, the override
parser), ``hydra.types`` and the plugin base classes. What backproplab needs beyond it is here and
nowhere else: the ``Hydra`` object behind ``GlobalHydra.instance().hydra`` (a class of
``hydra._internal``) and its ``config_loader`` attribute. Hydra builds the ``HydraContext`` that
a multirun's sweeper and launcher compose their jobs with from that attribute, after the
callbacks' ``on_multirun_start``; no public API hands a loader to them. A release that changes
this breaks ``tests/test_hydra_private.py``, which names what changed.

Hydra code that backproplab copies instead, where Hydra has no public API for it, says so where
it is copied (``preflight``: the flag parser and the run-or-multirun choice).
"""

from __future__ import annotations

from typing import Callable, TypeVar

from hydra.core.config_loader import ConfigLoader

Loader = TypeVar("Loader", bound=ConfigLoader)


def replace_config_loader(wrap: Callable[[ConfigLoader], Loader]) -> Loader | None:
    """The running app's config loader replaced by ``wrap(loader)``, for everything Hydra
    composes from now on; called in ``on_multirun_start``, it is the loader the sweeper and the
    launcher get. None, and nothing replaced, where this Hydra keeps no such attribute: the
    sweep then composes as Hydra alone would, only more often."""
    from hydra.core.global_hydra import GlobalHydra

    hydra = GlobalHydra.instance().hydra
    loader = getattr(hydra, "config_loader", None)
    if not isinstance(loader, ConfigLoader):
        return None
    wrapped = wrap(loader)
    hydra.config_loader = wrapped  # type: ignore[union-attr]
    return wrapped
