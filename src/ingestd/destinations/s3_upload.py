"""How bytes go up to S3: range reads, checksum parameters and the resumable multipart job.

A part is read twice and never held in memory: once in blocks to hash it (its MD5 feeds
Content-MD5, the journal and the final multipart ETag check), then again, block by block, as
the request body. The second read comes from the page cache the first one just filled, so it
costs one copy, the same copy a buffered part pays to leave the buffer, while the parts in
flight cost a block each instead of a whole part each (32 MiB less at 4 x 8 MiB). Bytes that
changed between the two reads do not match their Content-MD5 and the server refuses them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import threading
from abc import abstractmethod
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, NoReturn, cast

from ingestd.destinations.base import PartRecord, Progress, PutResult, SourceFile, UploadJournal
from ingestd.destinations.s3_errors import (
    REMOTE_ERRORS,
    classify,
    is_not_found,
    raise_classified,
)
from ingestd.errors import (
    Cancelled,
    FileProblem,
    ObjectRejected,
    SourceChanged,
    UploadGone,
)
from ingestd.parts import (
    ServerPart,
    missing_parts,
    multipart_etag_verdict,
    part_count,
    part_range,
    plan_parts,
    reconcile,
    same_etag,
)
from ingestd.ratelimit import TokenBucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# checksum setting -> (ChecksumAlgorithm value, field carrying it in answers and Complete)
FLEXIBLE = {"crc32c": ("CRC32C", "ChecksumCRC32C"), "sha256": ("SHA256", "ChecksumSHA256")}


def checksum_params(checksum: str, md5_digest: bytes) -> dict[str, Any]:
    """Request parameters that make the server verify a body: Content-MD5 for ``md5``, a
    flexible checksum botocore computes for ``crc32c``/``sha256``, nothing for ``none``."""
    if checksum == "md5":
        return {"ContentMD5": base64.b64encode(md5_digest).decode("ascii")}
    if checksum in FLEXIBLE:
        return {"ChecksumAlgorithm": FLEXIBLE[checksum][0]}
    return {}


def flexible_value(checksum: str, answer: Mapping[str, Any]) -> str | None:
    """The part checksum an UploadPart/ListParts answer carries for ``checksum``, if any."""
    if checksum not in FLEXIBLE:
        return None
    value = answer.get(FLEXIBLE[checksum][1])
    return str(value) if value else None


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


@dataclass(frozen=True)
class UploadSettings:
    """The destination settings a multipart job needs."""

    bucket: str
    checksum: str
    part_size: int
    part_concurrency: int
    verify_etag: bool
    thread_name: str
    limiter: TokenBucket | None = None


@dataclass(frozen=True)
class _Sent:
    record: PartRecord
    checksum: str | None


@dataclass
class MultipartPut:
    """One multipart upload of one open source file, from create/resume to verified object."""

    client: S3Client
    settings: UploadSettings
    src: SourceFile
    fd: int
    key: str
    journal: UploadJournal
    upload_id: str = ""
    part_size: int = 0
    parts: dict[int, PartRecord] = field(default_factory=dict)
    checksums: dict[int, str] = field(default_factory=dict)  # flexible checksums, by part

    def run(
        self, create_params: dict[str, Any], progress: Progress, cancel: threading.Event
    ) -> PutResult:
        """Resume the journalled upload or create one (with ``create_params``: content type,
        metadata), send the missing parts, complete, verify, and forget the upload.

        A source that changes on the way aborts the upload (SourceChanged); one the server
        lost mid-way is forgotten (UploadGone). Other errors keep it, to resume.
        """
        try:
            if not self._resume():
                self._create(create_params)
            sent = self._send_parts(progress, cancel)
            etag = self._complete()
        except SourceChanged:
            if self.upload_id:
                self._abandon()
            raise
        except UploadGone:
            self.journal.upload_forgotten()
            raise
        self.journal.upload_forgotten()
        return PutResult(self.key, self.src.size, etag, parts=self.total, bytes_sent=sent)

    @property
    def total(self) -> int:
        """Number of parts the object is made of."""
        return part_count(self.src.size, self.part_size)

    def _fail(self, exc: BaseException) -> NoReturn:
        raise_classified(exc, bucket=self.settings.bucket, key=self.key)

    def _create(self, create_params: dict[str, Any]) -> None:
        try:
            self.part_size = plan_parts(self.src.size, self.settings.part_size)
        except ValueError as exc:
            raise ObjectRejected(f"{self.src.path}: {exc}") from exc
        params = dict(create_params, Bucket=self.settings.bucket, Key=self.key)
        if self.settings.checksum in FLEXIBLE:
            params["ChecksumAlgorithm"] = FLEXIBLE[self.settings.checksum][0]
        try:
            self.upload_id = self.client.create_multipart_upload(**params)["UploadId"]
        except REMOTE_ERRORS as exc:
            self._fail(exc)
        # Intent before effect: the id is durable before any part can exist.
        self.journal.upload_started(
            key=self.key, upload_id=self.upload_id, part_size=self.part_size
        )

    def _resume(self) -> bool:
        """Take over the journalled upload, reconciled with ListParts. False (after forgetting
        it) when there is none or the server no longer knows it."""
        known = self.journal.known_upload()
        if known is None:
            return False
        self.upload_id, self.part_size = known
        try:
            server = self._list_parts()
        except UploadGone:
            self.journal.upload_forgotten()
            self.upload_id = ""
            return False
        plan = reconcile(self.src.size, self.part_size, self.journal.known_parts(), server)
        self.parts.update(plan.keep)
        for number, remote in plan.verify.items():
            offset, length = part_range(self.src.size, self.part_size, number)
            md5_hex = md5_of_range(self.fd, self.src, offset, length).hexdigest()
            if same_etag(md5_hex, remote.etag):  # the server holds exactly our bytes: adopt
                record = PartRecord(number, remote.size, remote.etag, md5_hex)
                self.journal.part_done(record)
                self.parts[number] = record
        for number in self.parts:
            checksum = server[number].checksum
            if checksum:
                self.checksums[number] = checksum
        return True

    def _list_parts(self) -> dict[int, ServerPart]:
        pages = self.client.get_paginator("list_parts")
        parts: dict[int, ServerPart] = {}
        try:
            for page in pages.paginate(
                Bucket=self.settings.bucket, Key=self.key, UploadId=self.upload_id
            ):
                for p in page.get("Parts", []):
                    checksum = flexible_value(self.settings.checksum, p)
                    parts[p["PartNumber"]] = ServerPart(
                        p["PartNumber"], p["Size"], p["ETag"], checksum
                    )
        except REMOTE_ERRORS as exc:
            self._fail(exc)
        return parts

    def _send_parts(self, progress: Progress, cancel: threading.Event) -> int:
        """Send every missing part, ``part_concurrency`` at a time, lowest number first, and
        return the bytes sent.

        After the first failure (or ``cancel``) no new part starts; parts in flight finish
        (and are journalled) first.
        """
        todo = iter(missing_parts(self.total, set(self.parts)))
        limit = self.settings.part_concurrency
        pending: set[Future[_Sent]] = set()
        failure: BaseException | None = None
        sent = 0
        with ThreadPoolExecutor(limit, self.settings.thread_name) as pool:
            while True:
                while failure is None and not cancel.is_set() and len(pending) < limit:
                    number = next(todo, None)
                    if number is None:
                        break
                    pending.add(pool.submit(self._send_part, number))
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        sent += self._record(future.result(), progress)
                    except BaseException as exc:  # re-raised below, once parts in flight end
                        failure = failure or exc
        if failure is not None:
            raise failure
        if len(self.parts) < self.total:
            raise Cancelled(
                f"{self.src.path}: cancelled after {len(self.parts)} of {self.total} parts"
            )
        return sent

    def _record(self, sent: _Sent, progress: Progress) -> int:
        number = sent.record.part_number
        self.parts[number] = sent.record
        if sent.checksum:
            self.checksums[number] = sent.checksum
        progress(sent.record.size)
        return sent.record.size

    def _send_part(self, number: int) -> _Sent:
        """Hash and upload one part; journal it the moment the server acknowledges it.
        Runs on a pool thread (boto3 clients and the journal are thread-safe)."""
        offset, length = part_range(self.src.size, self.part_size, number)
        md5 = md5_of_range(self.fd, self.src, offset, length)
        body = RangeBody(self.fd, self.src, offset, length, self.settings.limiter)
        try:
            response = self.client.upload_part(
                Bucket=self.settings.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=as_body(body),
                ContentLength=length,
                **checksum_params(self.settings.checksum, md5.digest()),
            )
        except REMOTE_ERRORS as exc:
            if isinstance(classify(exc, bucket=self.settings.bucket), ObjectRejected):
                # BadDigest: bytes written between hashing and sending. Say so, rather than
                # blame the object.
                self.src.check_unchanged(self.fd)
            self._fail(exc)
        record = PartRecord(number, length, response["ETag"], md5.hexdigest())
        self.journal.part_done(record)
        return _Sent(record, flexible_value(self.settings.checksum, response))

    def _complete(self) -> str:
        """Complete the upload once the source is proven unchanged, then verify the object."""
        self.src.check_unchanged(self.fd)
        parts: list[dict[str, Any]] = []
        for number in sorted(self.parts):
            entry: dict[str, Any] = {"PartNumber": number, "ETag": self.parts[number].etag}
            if number in self.checksums:
                entry[FLEXIBLE[self.settings.checksum][1]] = self.checksums[number]
            parts.append(entry)
        try:
            response = self.client.complete_multipart_upload(
                Bucket=self.settings.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )
        except REMOTE_ERRORS as exc:
            if isinstance(classify(exc, bucket=self.settings.bucket), ObjectRejected):
                self._abandon()  # the same part list would be refused again: start over
            self._fail(exc)
        etag = response.get("ETag", "")
        self._verify(etag)
        return etag

    def _verify(self, etag: str) -> None:
        """Check the completed object; a wrong one is deleted so no lookup ever trusts it.

        The ETag comes from CompleteMultipartUpload, not HEAD: rclone's HEAD ETag differs.
        An S3-style ETag that matches our parts' MD5s proves content and size at once; only
        without that proof is the size checked with HEAD, which is not free: rclone serve s3
        hashes the whole object to answer it (1.3 s of server CPU per GiB, measured).
        """
        md5s = [self.parts[n].md5_hex for n in sorted(self.parts)]
        verdict = multipart_etag_verdict(etag, md5s) if self.settings.verify_etag else None
        if verdict is True:
            return
        if verdict is False:
            problem = f"ETag {etag} does not match the parts sent"
        else:
            size = self._stored_size()
            if size == self.src.size:
                return
            problem = f"stored size {size} differs from the source's {self.src.size}"
        try:
            self.client.delete_object(Bucket=self.settings.bucket, Key=self.key)
        except REMOTE_ERRORS as exc:
            self._fail(exc)
        raise ObjectRejected(f"{self.src.path} -> {self.key}: {problem}; deleted")

    def _stored_size(self) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.settings.bucket, Key=self.key)
        except REMOTE_ERRORS as exc:
            if is_not_found(exc):
                return None
            self._fail(exc)
        return head["ContentLength"]

    def _abandon(self) -> None:
        """Abort the upload and forget it. Best effort: an abort that fails leaves the upload
        to the stale-upload sweep (list_uploads + abort), which is what it is for."""
        with contextlib.suppress(*REMOTE_ERRORS):
            self.client.abort_multipart_upload(
                Bucket=self.settings.bucket, Key=self.key, UploadId=self.upload_id
            )
        self.journal.upload_forgotten()
