"""A config loader that composes each job of a multirun once per process.

Three parts of one ``backproplab -m`` command ask Hydra's config loader for the same job's
config, each by ``load_sweep_config(master, overrides)``:

- the command's check of every job, before anything is written (``preflight.check_sweep``);
- the sweeper's check of each batch (``Sweeper.validate_batch_is_legal``; Hydra's docstring says
  it repeats the launcher's work);
- the basic launcher, which runs the jobs in the command's own process.

A copy of a composed config costs a small part of composing it (the defaults list, every config
file read and merged), so the first request composes and every later one gets a copy. Each
needs its own copy: the sweeper's and launcher's callers change theirs (job number, output
folder). Each copy takes the master config's resolver cache as
it is at the time of the request, as a fresh composition would. This keeps, for example, the
``${now:...}`` that the sweep's folder resolved once the check was over.

The master config's ``hydra.overrides.hydra`` are part of every job's composition. The command
adds one after the check (the sweep's folder, claimed under a name of its own:
``output_folder``); an added override that sets a value under ``hydra`` is applied to what is kept
as composing would apply it, and anything else added makes the next request compose afresh.

A job that a launcher runs in another process (joblib, Ray, submitit) is composed there once
more. Hydra's launchers send a job its overrides, not its config, and a config built from
backproplab's generated schema classes does not pickle.
"""

from __future__ import annotations

import copy
from typing import Any

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

# At about 0.5 MB a composed config, a sweep of thousands of jobs would hold gigabytes. Beyond
# this many, a job is composed at each request, as Hydra alone composes it.
MAX_KEPT = 256


class ComposedOnce(ConfigLoader):
    """Hydra's config loader ``loader``, with each job's ``load_sweep_config`` kept for the later
    requests of the same multirun (the same master config object). Everything else is the
    loader's own. Pickled (into a joblib or Ray worker with Hydra's context) without what it
    keeps."""

    def __init__(self, loader: ConfigLoader, max_kept: int = MAX_KEPT) -> None:
        self.loader = loader
        self.max_kept = max_kept
        self._master: DictConfig | None = None
        self._hydra_overrides: tuple[str, ...] = ()  # the master's, as the kept configs were composed with
        self._kept: dict[tuple[str, ...], DictConfig] = {}
        self.compositions = 0  # what it composed and what it copied, counted for the tests
        self.copies = 0

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        if master_config is not self._master:  # another multirun: nothing kept applies to it
            self._master, self._kept = master_config, {}
            self._hydra_overrides = _hydra_overrides(master_config)
        else:
            self._follow(master_config)
        key = tuple(sweep_overrides)
        composed = self._kept.get(key)
        if composed is None:
            composed = self.loader.load_sweep_config(master_config, list(sweep_overrides))
            self.compositions += 1
            if len(self._kept) >= self.max_kept:
                return composed
            self._kept[key] = composed
        self.copies += 1
        handed = copy.deepcopy(composed)
        OmegaConf.copy_cache(from_config=master_config, to_config=handed)
        return handed

    def _follow(self, master: DictConfig) -> None:
        """What is kept, brought up to the master's current hydra overrides (module docstring)."""
        current = _hydra_overrides(master)
        known, self._hydra_overrides = self._hydra_overrides, current
        if current == known:
            return
        added = current[len(known):] if current[: len(known)] == known else ()
        values = _hydra_values(added)
        if values is None:
            self._kept = {}
            return
        for key, composed in list(self._kept.items()):
            if any(text.lstrip("+~").startswith("hydra.") for text in key):
                del self._kept[key]  # a job's own hydra override is applied after the master's
                continue
            with read_write(composed.hydra), open_dict(composed.hydra):
                for name, value in values:
                    OmegaConf.update(composed, name, value, merge=True)
                listed = composed.hydra.overrides.hydra
                for offset, text in enumerate(added):
                    listed.insert(len(known) + offset, text)

    def forget(self) -> None:
        """Drops what is kept: the multirun has launched its jobs."""
        self._master, self._kept = None, {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_master": None, "_hydra_overrides": (), "_kept": {}}

    # The rest of Hydra's ConfigLoader interface, and whatever a Hydra release adds to its own
    # loader, is the wrapped loader's.
    def load_configuration(self, *args: Any, **kwargs: Any) -> DictConfig:
        return self.loader.load_configuration(*args, **kwargs)

    def get_search_path(self) -> Any:
        return self.loader.get_search_path()

    def get_sources(self) -> Any:
        return self.loader.get_sources()

    def list_groups(self, *args: Any, **kwargs: Any) -> Any:
        return self.loader.list_groups(*args, **kwargs)

    def get_group_options(self, *args: Any, **kwargs: Any) -> Any:
        return self.loader.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, *args: Any, **kwargs: Any) -> Any:
        return self.loader.compute_defaults_list(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "loader" or name.startswith("__"):  # unpickling asks before __dict__ is set
            raise AttributeError(name)
        return getattr(self.loader, name)


def _hydra_overrides(master: DictConfig) -> tuple[str, ...]:
    return tuple(str(text) for text in master.hydra.overrides.hydra)


def _hydra_values(overrides: tuple[str, ...]) -> list[tuple[str, Any]] | None:
    """(key, value) of each override, when every one sets a single value under ``hydra`` (as
    ``key=value``, the way composing applies it); None otherwise."""
    if not overrides:
        return None
    values = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if (
            override.type != OverrideType.CHANGE or override.package is not None
            or override.is_sweep_override() or not key.startswith("hydra.")
        ):
            return None
        values.append((key, override.value()))
    return values
