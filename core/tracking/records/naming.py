"""Run names a reviewer can read in MLflow's runs table and chart legends.

- A single run: its data set and its network, ``moons mlp 2-8-1`` (input, hidden and output
  widths).
- A sweep's child: only what differs between the children, short: ``lr=0.5 bs=8 hidden=[4]``.
  A key is shown by its last part (``optimizer.lr`` -> ``lr``; ``batch_size`` -> ``bs``), or by
  more parts where two swept keys would otherwise read the same. A search sweeper's sampled
  values are shown to 4 significant digits, after the trial number (``#3 lr=0.01235``), which
  keeps names of near-identical samples apart.
- A sweep's parent: what was swept and on which data, ``sweep lr, bs, hidden on moons``
  (``search ...`` for a search sweeper).

No name is longer than ``MAX_NAME`` characters (MLflow keeps 250; the UI shows far fewer), and
each value is cut at ``MAX_VALUE`` characters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from backproplab.run.sweep import typed_overrides, typed_swept

MAX_NAME = 120
MAX_VALUE = 32
# Well-known spellings that keep a child's name short; anything else is its key's last part.
ABBREVIATIONS = {"batch_size": "bs", "learning_rate": "lr", "weight_decay": "wd"}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tail(key: str, n: int) -> str:
    parts = key.split(".")[-n:]
    return ".".join(parts[:-1] + [ABBREVIATIONS.get(parts[-1], parts[-1])])


def short_keys(keys: Iterable[str]) -> dict[str, str]:
    """Each key -> its fewest trailing parts that no other key shares (``optimizer.lr`` -> ``lr``,
    but ``model.activation`` and ``model.output_activation.alpha`` keep apart by themselves)."""
    bare = list(dict.fromkeys(k.lstrip("+~") for k in keys))
    out: dict[str, str] = {}
    for key in bare:
        others = [o for o in bare if o != key]
        short = key
        for n in range(1, key.count(".") + 2):
            candidate = _tail(key, n)
            if all(_tail(o, n) != candidate for o in others):
                short = candidate
                break
        out[key] = short
    return out


# Overrides and swept keys that carry a component node (``{name:swish,beta:0.5}``) are named as
# the user typed them, by the sweep's own rules (``run.sweep``).
__all__ = ["child_name", "parent_name", "single_name", "short_keys", "data_name", "typed_overrides", "typed_swept"]


def _sampled(value: str) -> str:
    """A sampled number to 4 significant digits; anything else as it is."""
    try:
        number = float(value)
    except ValueError:
        return value
    if value.lstrip("+-").isdigit():
        return value
    return f"{number:.4g}"


def child_name(overrides: Sequence[str], swept_keys: Iterable[str], *, sampled: bool = False, job: int | None = None) -> str | None:
    """``lr=0.5 bs=8`` from a child's overrides: only the swept keys' values; None when the
    sweep varies nothing the child's overrides show."""
    keys = [k.lstrip("+~") for k in swept_keys]
    shorts = short_keys(keys)
    items = []
    for override in typed_overrides(overrides):
        key, sep, value = override.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in shorts:
            continue
        items.append(f"{shorts[key]}={_cut(_sampled(value) if sampled else value, MAX_VALUE)}")
    if not items:
        return None
    if sampled and job is not None:
        items.insert(0, f"#{job}")
    return _cut(" ".join(items), MAX_NAME)


def data_name(data: Mapping[str, Any] | None) -> str | None:
    """The data set as a reader knows it: its name, or a CSV file's stem."""
    if not isinstance(data, Mapping):
        return None
    name = data.get("name")
    if name == "csv" and data.get("path"):
        return Path(str(data["path"])).stem or "csv"
    return None if name is None else str(name)


def single_name(config: Mapping[str, Any], sizes: Sequence[int]) -> str:
    """``moons mlp 2-8-1``: the data set, then the dense network by its layer widths."""
    parts = [data_name(config.get("data")) or "data", "mlp", "-".join(str(s) for s in sizes)]
    return _cut(" ".join(parts), MAX_NAME)


def parent_name(swept: Mapping[str, str], data: str | None, *, search: bool = False) -> str:
    """``sweep lr, bs, hidden on moons``; with the data itself swept, ``on moons,circles``."""
    keys = [k.lstrip("+~") for k in swept]
    shorts = short_keys(keys)
    shown = [shorts[k] for k in keys if k != "data"]
    if "data" in keys:
        data = swept.get("data", swept.get("+data", data))
    verb = "search" if search else "sweep"
    head = f"{verb} {', '.join(shown)}" if shown else verb
    return _cut(f"{head} on {data}" if data else head, MAX_NAME)
