"""The contract every destination implements, and the journal it reports remote resources to."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ingestd.errors import SourceChanged, SourceVanished

if TYPE_CHECKING:
    from ingestd.catalog.rows import PartRecord


@dataclass(frozen=True)
class RemoteObject:
    """What a destination knows about an object already stored under a key."""

    key: str
    size: int
    sha256: str | None  # from object metadata; None when the object was not written by us
    etag: str | None = None
    # False: the object lacks the encryption the destination asks for (or cannot be read with
    # its SSE-C key), so it never counts as this file's upload.
    as_configured: bool = True


@dataclass(frozen=True)
class PutResult:
    """The outcome of a successful put."""

    key: str
    size: int
    etag: str | None
    parts: int  # 0 for a single PUT
    bytes_sent: int  # bytes sent by this call (resume sends fewer than size)
    reused: bool = False  # True when an identical object was already there


@dataclass(frozen=True)
class SourceFile:
    """A file on local disk as it was when hashed; every read re-checks it has not changed."""

    path: Path
    size: int
    mtime_ns: int
    # None: not hashed yet; a multipart upload hashes it while sending its parts and gives
    # the journal the digest before Complete (UploadJournal.content_hashed).
    sha256: str | None
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)
    md5: str | None = None  # hex, taken in the same read as ``sha256`` (small files only)
    ctime_ns: int | None = None  # when hashed; None: not known (rows older than migration 0009)
    tags: dict[str, str] = field(default_factory=dict)  # object tags, rendered (tags.py)

    def open(self) -> int:
        """Open the source read-only and return the fd; raise if it vanished or changed."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError as exc:
            raise SourceVanished(f"{self.path} vanished") from exc
        except OSError as exc:
            raise SourceVanished(f"{self.path} cannot be opened: {exc.strerror}") from exc
        try:
            self.check_unchanged(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def check_unchanged(self, fd: int | None = None) -> None:
        """Raise SourceChanged when size, mtime or ctime differ from what was hashed. The
        ctime catches a rewrite that put size and mtime back, which would otherwise go up
        under the old content's SHA-256."""
        try:
            st = os.fstat(fd) if fd is not None else os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise SourceVanished(f"{self.path} vanished") from exc
        if st.st_size != self.size or st.st_mtime_ns != self.mtime_ns:
            raise SourceChanged(
                f"{self.path} changed since it was hashed "
                f"(size {self.size} -> {st.st_size}, mtime {self.mtime_ns} -> {st.st_mtime_ns})"
            )
        if self.ctime_ns is not None and st.st_ctime_ns != self.ctime_ns:
            raise SourceChanged(
                f"{self.path} changed since it was hashed (same size and mtime, "
                f"ctime {self.ctime_ns} -> {st.st_ctime_ns}: written to, or its mode or owner "
                "changed)"
            )


class UploadJournal(Protocol):
    """Durable record of remote resources, written the moment they exist.

    See docs/ARCHITECTURE.md, "Crash recovery"."""

    def known_upload(self) -> tuple[str, int] | None:
        """The recorded (upload_id, part_size) for this file's key, if any."""

    def known_parts(self) -> dict[int, PartRecord]:
        """Parts recorded for the known upload, by part number."""

    def upload_creating(self) -> None:
        """Persist that a multipart upload is about to be created (before the request: a crash
        before its UploadId is recorded must not leave an upload nobody knows of)."""

    def creation_unrecorded(self) -> bool:
        """True when a creation was begun whose UploadId was never recorded (a crash in
        between)."""

    def upload_started(self, *, key: str, upload_id: str, part_size: int) -> None:
        """Persist a new multipart UploadId before the first part is sent."""

    def part_done(self, part: PartRecord) -> None:
        """Persist one acknowledged part."""

    def upload_forgotten(self) -> None:
        """The recorded upload is gone (completed, aborted or unknown to the server)."""

    def content_hashed(self, sha256: str) -> None:
        """Persist the SHA-256 of a source the upload hashed while sending it, before the
        upload completes, and decide de-duplication with it. Raises DuplicateContent, after
        recording the file as a duplicate, when another file already holds that content:
        the caller then aborts the upload instead of completing it."""


@dataclass(frozen=True)
class StaleUpload:
    """A multipart upload found on the destination."""

    key: str
    upload_id: str
    initiated: datetime


Progress = Callable[[int], None]


class Destination(Protocol):
    """A place objects are written to. Implementations raise only the classes in errors.py."""

    name: str

    def probe(self) -> None:
        """Return when the destination is reachable and usable, else raise DestinationDown or
        DestinationMisconfigured with a message naming the bucket/path and the error."""

    def lookup(self, key: str) -> RemoteObject | None:
        """What is stored under ``key`` now, or None."""

    def refuses_overwrite(self, size: int) -> bool:
        """True when ``put`` of a file of ``size`` bytes itself refuses a key that is taken
        (raising FileExistsError, having written nothing), so the caller need not ``lookup``
        the key first: one request per file instead of two."""

    def hashes_while_sending(self, size: int) -> bool:
        """True when ``put`` of a file of ``size`` bytes whose ``sha256`` is not known yet
        hashes it while sending and reports it through ``journal.content_hashed`` before
        the object is complete (S3 multipart with ``hash_while_uploading``)."""

    def put(
        self,
        src: SourceFile,
        key: str,
        *,
        journal: UploadJournal,
        progress: Progress,
        cancel: threading.Event,
    ) -> PutResult:
        """Store ``src`` under ``key``, resuming a journalled upload where possible.

        Never overwrites: the caller has checked ``lookup`` first, unless ``refuses_overwrite``
        (then FileExistsError says the key is taken). Calls ``progress(n)`` as bytes
        are acknowledged. Raises Cancelled when ``cancel`` is set between parts, SourceChanged if
        the source changed before the object was completed (the upload is then aborted).
        """

    def content_sha256(self, key: str) -> str | None:
        """SHA-256 of the stored bytes (reads the object back); None when it is gone. Only
        used when ``lookup`` found no sha256 in the metadata but the size matches."""

    def abort(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload; an unknown upload is not an error."""

    def list_uploads(self) -> Iterator[StaleUpload]:
        """Multipart uploads in progress under this destination's prefix."""
