"""Making directory entries durable: one ``fsync_dir`` for every module that links, renames or
unlinks a file it must not lose, and ``DirSyncs`` to sync each directory once for a batch."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Flush ``path``'s entries (a link, rename or unlink in it) to disk.

    A directory that is gone has nothing left to flush; some filesystems (network mounts)
    refuse fsync on directories, and then there is nothing more this process can do.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class DirSyncs:
    """Directories changed by a batch of file operations, each flushed once by ``sync``.

    Several moves into one folder then cost one fsync of that folder instead of one each.
    """

    def __init__(self) -> None:
        self._dirs: dict[Path, None] = {}  # insertion-ordered set

    def add(self, path: Path) -> None:
        self._dirs[path] = None

    def __len__(self) -> int:
        return len(self._dirs)

    def sync(self) -> None:
        """fsync every recorded directory once, then forget them."""
        for path in self._dirs:
            fsync_dir(path)
        self._dirs.clear()
