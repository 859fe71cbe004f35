"""Data files shipped inside the package (see README.md here), so that a clone or a wheel
install needs nothing beside it.

``path(name)`` is the way to reach them: the files' location differs between an editable
install, a wheel in site-packages and a zip import, and importlib.resources knows each.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

FILES = ("marks.csv", "marks.LICENSE", "seed_example.json")

# Only needed when the package is imported from a zip: as_file then extracts to a temporary
# file that must outlive the call, so its cleanup waits for interpreter exit.
_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def path(name: str) -> Path:
    """The filesystem path of a shipped data file, e.g. ``path("marks.csv")``."""
    if name not in FILES:
        raise ValueError(f"{name!r} is not a data file of backproplab.datasets; available: {', '.join(FILES)}")
    resource = resources.files(__name__).joinpath(name)
    if isinstance(resource, Path):
        return resource
    return _extracted.enter_context(resources.as_file(resource))
