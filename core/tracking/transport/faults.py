"""Store failures that have a plain name, so the user reads that name instead of the SQL.

A full disk under a sqlite store surfaces as SQLAlchemy's ``OperationalError``, whose text
holds the whole failed statement and its parameters (kilobytes of SQL), or as an
``MlflowException`` quoting it. Both become ``StoreFullError``: "no space left on device while
writing metrics to <store>", as the console line and as the run's ``failure_reason``. A spool
file that cannot be written (``spool``) becomes ``SpoolWriteError``, naming the disk and the file.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from backproplab.errors import BackproplabError

from .reachability import sqlite_path

# sqlite's wording for SQLITE_FULL (a full disk, or a max_page_count reached).
SQLITE_FULL = "database or disk is full"


class StoreFullError(BackproplabError, OSError):
    """The tracking store's disk (or database) is full; the run failed recording, not training."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        # SQLAlchemy keeps the driver's exception as .orig; Python's chaining as cause/context.
        todo.extend([getattr(current, "orig", None), current.__cause__, current.__context__])


def is_store_full(exc: BaseException) -> bool:
    for item in _chain(exc):
        if isinstance(item, OSError) and item.errno == errno.ENOSPC:
            return True
        # Only the first line: the failed statement's parameters could quote anything.
        if SQLITE_FULL in str(item).split("\n", 1)[0]:
            return True
    return False


def store_name(uri: str) -> str:
    path = sqlite_path(uri) if urlparse(uri).scheme.split("+", 1)[0] == "sqlite" else None
    return str(path.resolve()) if path is not None else uri


def store_full(exc: BaseException, uri: str, doing: str = "writing metrics") -> StoreFullError | SpoolWriteError | None:
    """The one-line error for ``exc`` if it is a full store, else None."""
    if isinstance(exc, (StoreFullError, SpoolWriteError)):
        return exc  # named already: a spool's disk is not the store's
    if not is_store_full(exc):
        return None
    return StoreFullError(f"no space left on device while {doing} to {store_name(uri)}")


class UnrecordedError(BackproplabError, OSError):
    """The run trained to the end, but its record in the store is not whole (artifacts that did
    not upload, spooled metrics whose file was deleted under the run)."""


class SpoolWriteError(BackproplabError, OSError):
    """A spool file could not be written (a full disk, most often): what it was to keep is in
    no store and in no file, so the run cannot go on as if it were kept."""


def disk_of(path: Path) -> str:
    """The file system holding ``path``, as a user finds it: its mount point, type and free space."""
    probe = Path(os.path.abspath(path))
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    mount = probe
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    kind = ""
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and fields[1] == str(mount):
                kind = fields[2]  # the last mount on that point is the one in use
    except OSError:
        pass
    try:
        stats = os.statvfs(mount)
        free = f"{stats.f_bavail * stats.f_frsize // 1024} KB free"
    except OSError:
        free = ""
    details = ", ".join(part for part in (kind, free) if part)
    return f"the disk mounted at {mount}" + (f" ({details})" if details else "")


def spool_write_error(exc: OSError, path: Path, doing: str) -> SpoolWriteError:
    """The one line for a spool write that failed: what failed, on which disk, for which file."""
    if exc.errno == errno.ENOSPC:
        what = "no space left on device"
    elif exc.errno == errno.EDQUOT:
        what = "disk quota exceeded"
    else:
        what = (exc.strerror or str(exc)).lower()
    return SpoolWriteError(f"{what} on {disk_of(path)} while {doing} to {path}")
