"""The SHA-256 of a source taken beside its multipart upload (``hash_while_uploading``).

One thread reads the open file from its first byte to its last while the part threads send
it, so the digest costs no time before the first part goes out and is ready, on a link
slower than the disk, before the last part is acknowledged. Reading the file once more (from
the page cache, usually) keeps the parts free to go up in any order and on a resume; the
digest must be taken in order, which parts sent ``part_concurrency`` at a time are not.
hashlib and ``os.preadv`` release the GIL, so this thread and the senders run side by side.
"""

from __future__ import annotations

import hashlib
import threading

from ingestd.destinations.base import SourceFile
from ingestd.destinations.s3.bodies import HASH_BLOCK, block_buffer, read_range_into
from ingestd.errors import Cancelled

WAIT_STEP_SECONDS = 0.5


class ContentHasher:
    """Hashes ``src`` (open as ``fd``) in a thread of its own, started at construction."""

    def __init__(self, fd: int, src: SourceFile, *, name: str) -> None:
        self._fd = fd
        self._src = src
        self._stop = threading.Event()
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            digest = hashlib.sha256()
            block = block_buffer()
            done = 0
            while done < self._src.size:
                if self._stop.is_set():
                    return
                want = min(HASH_BLOCK, self._src.size - done)
                digest.update(read_range_into(block[:want], self._fd, self._src, done))
                done += want
            self._digest = digest.hexdigest()
        except BaseException as exc:  # handed to the uploading thread by result()
            self._error = exc

    def result(self, cancel: threading.Event) -> str:
        """The hex digest, once the whole file is read; raises what reading raised
        (SourceChanged when it shrank, FileProblem when unreadable) and Cancelled when
        ``cancel`` is set first."""
        while self._thread.is_alive():
            if cancel.is_set():
                raise Cancelled(f"{self._src.path}: cancelled while hashing")
            self._thread.join(WAIT_STEP_SECONDS)
        if self._error is not None:
            raise self._error
        if self._digest is None:
            raise Cancelled(f"{self._src.path}: hashing was stopped")
        return self._digest

    def close(self) -> None:
        """Stop reading and wait for the thread (the file descriptor is closed after this)."""
        self._stop.set()
        self._thread.join()
