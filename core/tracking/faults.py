"""Store failures that have a plain name, so the user reads that name instead of the SQL.

A full disk under a sqlite store surfaces as SQLAlchemy's ``OperationalError``, whose text
holds the whole failed statement and its parameters (kilobytes of SQL), or as an
``MlflowException`` quoting it. Both become ``StoreFullError``: "no space left on device while
writing metrics to <store>", as the console line and as the run's ``failure_reason``.
"""

from __future__ import annotations

import errno
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


def store_full(exc: BaseException, uri: str, doing: str = "writing metrics") -> StoreFullError | None:
    """The one-line error for ``exc`` if it is a full store, else None."""
    if isinstance(exc, StoreFullError):
        return exc
    if not is_store_full(exc):
        return None
    return StoreFullError(f"no space left on device while {doing} to {store_name(uri)}")
