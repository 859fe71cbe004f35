"""Output folders that are never shared by two commands at once.

Two commands started in the same second in one directory would otherwise get the same
timestamped folder (``outputs/DATE/TIME``, ``multirun/DATE/TIME``) and overwrite each other's
``result.json`` and ``.hydra/``. Two rules keep every folder to one command:

- A folder named by the clock is *claimed*: created with one ``mkdir``, which the filesystem
  does atomically, and when that name is taken the next free one with a suffix (``TIME_1``,
  ``TIME_2``, ...) is claimed instead (``claim_unique``).
- A folder the user names is *locked* for the command's life (``lock_folder``): an exclusive
  ``flock`` on a lock file inside it. A second live command on that folder is refused; once the
  first has ended (normally, by a signal or by ``kill -9``: the kernel drops the lock with the
  process) the folder may be used again, so that a sweep can be resumed, or a requeued cluster
  job run again, in its own folder.

Free of Hydra: the Hydra app decides which rule applies to which folder
(``backproplab.hydra_app.output_folder``).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from backproplab.errors import ConfigError

LOCK_FILE = ".backproplab.lock"
# More same-second commands than this in one folder are not a race any more but a loop gone
# wrong; the error then says so rather than trying forever.
MAX_SUFFIX = 10_000


class FolderInUseError(ConfigError):
    """The folder is locked by another live command."""


def claim_unique(path: Path) -> Path:
    """Create ``path``, or when it exists the first free ``path_1``, ``path_2``, ...; the folder
    created. Each candidate is taken by a single ``mkdir``, so two commands racing for one name
    never both get it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(MAX_SUFFIX):
        candidate = path if n == 0 else path.with_name(f"{path.name}_{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise ConfigError(f"{path}: {MAX_SUFFIX} folders of that name exist already; clean up {path.parent}")


class FolderLock:
    """An exclusive lock on a folder, held until ``release`` (or the process ends)."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self._fd: int | None = fd

    def __getstate__(self) -> dict:
        # A copy in another process (a launcher pickles the command's callback into its
        # workers) holds nothing: the descriptor number means another file there.
        return {"folder": self.folder, "_fd": None}

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock


def lock_folder(folder: Path, *, key: str) -> FolderLock:
    """Lock ``folder`` (created if missing) for this process; ``FolderInUseError`` naming ``key``
    and the holder's pid when another live process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        holder = _holder(path)
        raise FolderInUseError(
            f"{key}={folder} is in use by another running backproplab command{holder}, and a folder is never shared "
            f"by two commands at once: wait for that command to end, or name another {key}",
            key=key,
            value=str(folder),
        ) from None
    # The holder's pid, for the message a second command gets; written after the lock is ours.
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    return FolderLock(folder, fd)


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="ascii").strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
