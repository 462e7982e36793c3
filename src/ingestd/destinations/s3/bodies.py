"""Request bodies read from the open source file: block by block, never a whole part in memory.

A part is read twice and never held in memory: once in blocks to hash it (its MD5 feeds
Content-MD5, the journal and the final multipart ETag check), then again, block by block, as
the request body. The second read comes from the page cache the first one just filled, so it
costs one copy, the same copy a buffered part pays to leave the buffer, while the parts in
flight cost a block each instead of a whole part each (32 MiB less at 4 x 8 MiB). Bytes that
changed between the two reads do not match their Content-MD5 and the server refuses them.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from abc import abstractmethod
from typing import IO, TYPE_CHECKING, Any, cast

from ingestd.destinations.base import SourceFile
from ingestd.errors import (
    FileProblem,
    SourceChanged,
)
from ingestd.ratelimit import TokenBucket

if TYPE_CHECKING:
    pass


class BlockBody(io.RawIOBase):
    """A seekable request body of ``length`` bytes, handed out in the blocks http.client asks
    for; with a ``limiter``, every block is paid for in the destination's token bucket, so the
    parts in flight share ``max_bandwidth_mbps``. Subclasses say where the bytes come from."""

    def __init__(self, length: int, limiter: TokenBucket | None) -> None:
        super().__init__()
        self._length = length
        self._pos = 0
        self._limiter = limiter

    @abstractmethod
    def _read_at(self, pos: int, size: int) -> bytes:
        """``size`` bytes (at least one) of the body at ``pos``."""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        left = self._length - self._pos
        want = left if size is None or size < 0 else min(size, left)
        if want <= 0:
            return b""
        chunk = self._read_at(self._pos, want)
        self._pos += len(chunk)
        if self._limiter is not None:
            self._limiter.acquire(len(chunk))
        return chunk

    def readinto(self, buffer: Any, /) -> int:
        chunk = self.read(len(memoryview(buffer)))
        memoryview(buffer)[: len(chunk)] = chunk
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def __len__(self) -> int:
        return self._length


class PartBody(BlockBody):
    """A body over bytes already in memory, sent without copying them first.

    A ``bytes`` body goes out in one ``sendall``, and Python applies the socket timeout
    (read_timeout) to the whole call: on a 2 MiB/s uplink an 8 MiB part sent four at a time
    could never finish within 5 s. A file-like body is sent block by block, so the timeout
    only catches a stalled link.
    """

    def __init__(self, data: bytes | memoryview, limiter: TokenBucket | None = None) -> None:
        self._view = memoryview(data)
        super().__init__(len(self._view), limiter)

    def _read_at(self, pos: int, size: int) -> bytes:
        return self._view[pos : pos + size].tobytes()


class RangeBody(BlockBody):
    """A body over ``length`` bytes of an open file at ``offset``, read with ``os.pread`` block
    by block: nothing of the part is held in memory. A file that ends early raises
    SourceChanged instead of sending less than Content-Length."""

    def __init__(
        self,
        fd: int,
        src: SourceFile,
        offset: int,
        length: int,
        limiter: TokenBucket | None = None,
    ) -> None:
        super().__init__(length, limiter)
        self._fd, self._src, self._offset = fd, src, offset

    def _read_at(self, pos: int, size: int) -> bytes:
        at = self._offset + pos
        try:
            chunk = os.pread(self._fd, size, at)
        except OSError as exc:
            raise FileProblem(f"{self._src.path} cannot be read: {exc.strerror}") from exc
        if not chunk:
            raise SourceChanged(f"{self._src.path} shrank while being read (at byte {at})")
        return chunk


def as_body(body: BlockBody) -> IO[bytes]:
    """``body`` typed as the IO boto3's stubs ask for (it implements the part of it botocore
    and http.client use: read, seek, tell)."""
    return cast("IO[bytes]", body)


# Hashing reads a part in blocks of this size into one buffer per thread, reused for every
# part: 1 MiB keeps the read syscalls few and hashlib's GIL-free stretches long.
HASH_BLOCK = 1024 * 1024
_buffers = threading.local()


def block_buffer() -> memoryview:
    """This thread's reusable hashing buffer (HASH_BLOCK bytes; valid until its next call)."""
    buf: bytearray | None = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = bytearray(HASH_BLOCK)
    return memoryview(buf)


def md5_of_range(fd: int, src: SourceFile, offset: int, length: int) -> hashlib._Hash:
    """The MD5 (a hashlib object) of ``length`` bytes of the open source at ``offset``."""
    md5 = hashlib.md5(usedforsecurity=False)
    block = block_buffer()
    done = 0
    while done < length:
        view = read_range_into(block[: min(HASH_BLOCK, length - done)], fd, src, offset + done)
        md5.update(view)
        done += len(view)
    return md5


def read_range_into(view: memoryview, fd: int, src: SourceFile, offset: int) -> memoryview:
    """Fill ``view`` with the source's bytes at ``offset``; FileProblem when unreadable,
    SourceChanged when it ends early."""
    done = 0
    while done < len(view):
        try:
            n = os.preadv(fd, [view[done:]], offset + done)
        except OSError as exc:
            raise FileProblem(f"{src.path} cannot be read: {exc.strerror}") from exc
        if n == 0:
            raise SourceChanged(f"{src.path} shrank while being read (at byte {offset + done})")
        done += n
    return view


def read_range(fd: int, src: SourceFile, offset: int, length: int) -> memoryview:
    """Exactly ``length`` bytes at ``offset`` of the open source, in a buffer of their own."""
    return read_range_into(memoryview(bytearray(length)), fd, src, offset)
