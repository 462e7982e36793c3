"""Streaming SHA-256 (and, for files sent in one request, MD5) with bounded memory."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Fingerprint:
    """A file's content hash together with the stat it was taken under."""

    sha256: str | None  # None: not read here, hashed during the upload (hash_policy.py)
    size: int
    mtime_ns: int
    md5: str | None = None  # only for files below ``md5_below``
    # The inode's change time after the read: any later write moves it, even one that puts the
    # size and mtime back, and no program can set it back (see ingestd.settle).
    ctime_ns: int | None = None


def fingerprint(
    path: Path,
    *,
    chunk: int = CHUNK,
    md5_below: int = 0,
    content: bool = True,
    cancel: threading.Event | None = None,
) -> Fingerprint:
    """Hash ``path`` and return the hash with the size/mtime seen before and after reading.

    ``content=False`` reads nothing: the same checks and stat, with ``sha256`` None, for a
    file whose upload hashes it while sending (hash_policy.py). ``cancel``, set, stops the
    read between two chunks with InterruptedError (a lane being paused or stopped).

    A file smaller than ``md5_below`` bytes also gets its MD5 from the same read: the upload
    sends it as Content-MD5, so the server refuses any byte that differs from the bytes behind
    the SHA-256, and the upload itself hashes nothing.

    Raises ``ValueError`` if the file changed while it was being read (the caller re-settles it)
    and ``OSError`` if it cannot be opened or read, is a symlink, or is not a regular file.
    Memory stays at one ``chunk``.
    """
    # O_NONBLOCK: a FIFO swapped in for the file after it was scanned must not block us forever
    # in open(); it is refused below. Regular files ignore the flag.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        digest = hashlib.sha256() if content else None
        wants_md5 = content and before.st_size < md5_below
        md5 = hashlib.md5(usedforsecurity=False) if wants_md5 else None
        if digest is not None:
            buf = bytearray(chunk)
            view = memoryview(buf)
            with os.fdopen(os.dup(fd), "rb", buffering=0) as fh:
                while n := fh.readinto(buf):
                    if cancel is not None and cancel.is_set():
                        raise InterruptedError(errno.EINTR, "hashing cancelled", str(path))
                    digest.update(view[:n])
                    if md5 is not None:
                        md5.update(view[:n])
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise ValueError(f"{path} changed while it was being hashed")
    return Fingerprint(
        digest.hexdigest() if digest is not None else None,
        after.st_size,
        after.st_mtime_ns,
        md5.hexdigest() if md5 else None,
        after.st_ctime_ns,
    )
