"""The resumable multipart job: create or resume, send the missing parts, complete, verify.

Bodies come from bodies.py, checksum parameters from checksums.py, the part arithmetic from
parts.py; this module only sequences the API calls and journals every part before the next
depends on it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from ingestd.catalog.rows import PartRecord
from ingestd.destinations.base import Progress, PutResult, SourceFile, UploadJournal
from ingestd.destinations.s3.errors import (
    REMOTE_ERRORS,
    classify,
    is_not_found,
    raise_classified,
)
from ingestd.destinations.s3.parts import (
    ServerPart,
    missing_parts,
    multipart_etag_verdict,
    part_count,
    part_range,
    plan_parts,
    reconcile,
    same_etag,
)
from ingestd.errors import (
    Cancelled,
    DuplicateContent,
    ObjectRejected,
    SourceChanged,
    UploadGone,
)
from ingestd.ratelimit import TokenBucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


from ingestd.destinations.s3.bodies import RangeBody, as_body, md5_of_range
from ingestd.destinations.s3.checksums import FLEXIBLE, checksum_params, flexible_value
from ingestd.destinations.s3.content_hash import ContentHasher
from ingestd.destinations.s3.object_options import ObjectOptions


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
    options: ObjectOptions = field(default_factory=ObjectOptions)


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

        A source not hashed yet (``src.sha256`` None) is hashed beside the parts; its digest
        goes to ``journal.content_hashed`` before Complete, which may find it a duplicate
        (DuplicateContent: the upload is aborted, nothing is stored).

        A source that changes on the way aborts the upload (SourceChanged); one the server
        lost mid-way is forgotten (UploadGone). Other errors keep it, to resume.
        """
        hasher = None
        if self.src.sha256 is None:
            hasher = ContentHasher(self.fd, self.src, name=f"{self.settings.thread_name}-sha")
        try:
            if not self._resume():
                self._abort_strays()
                self.journal.upload_creating()
                self._create(create_params)
            sent = self._send_parts(progress, cancel)
            if hasher is not None:
                self._hashed(hasher.result(cancel))
            etag = self._complete()
        except (SourceChanged, DuplicateContent):
            if self.upload_id:
                self._abandon()
            raise
        except UploadGone:
            self.journal.upload_forgotten()
            raise
        finally:
            if hasher is not None:
                hasher.close()
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

    def _abort_strays(self) -> None:
        """A crash between CreateMultipartUpload's answer and the record of its UploadId left
        an upload the journal does not know: when a creation was begun and never recorded,
        abort the uploads in progress under exactly this key. The key is this file's alone
        (planned in the catalog before the creation, reserved among the destination's lanes,
        and only the lane lease's holder uploads), so they are its own. Not by their
        ``Initiated`` time: some servers report a fixed one (moto). Best effort: what is not
        aborted here the stale-upload sweep aborts later."""
        if not self.journal.creation_unrecorded():
            return
        with contextlib.suppress(*REMOTE_ERRORS):
            pages = self.client.get_paginator("list_multipart_uploads")
            for page in pages.paginate(Bucket=self.settings.bucket, Prefix=self.key):
                for upload in page.get("Uploads", []):
                    if upload["Key"] == self.key:
                        self.client.abort_multipart_upload(
                            Bucket=self.settings.bucket,
                            Key=self.key,
                            UploadId=upload["UploadId"],
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
                Bucket=self.settings.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                **self.settings.options.access_params(),
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
        # The MD5 only where something checks it: Content-MD5, or the ETag proof at the end.
        md5 = md5_of_range(self.fd, self.src, offset, length) if self._wants_md5 else None
        body = RangeBody(self.fd, self.src, offset, length, self.settings.limiter)
        try:
            response = self.client.upload_part(
                Bucket=self.settings.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=as_body(body),
                ContentLength=length,
                **checksum_params(self.settings.checksum, md5.digest() if md5 else b""),
                # SSE-C: S3 encrypts each part with the key, so every part (a resumed
                # upload's too) must carry it.
                **self.settings.options.access_params(),
            )
        except REMOTE_ERRORS as exc:
            if isinstance(classify(exc, bucket=self.settings.bucket), ObjectRejected):
                # BadDigest: bytes written between hashing and sending. Say so, rather than
                # blame the object.
                self.src.check_unchanged(self.fd)
            self._fail(exc)
        record = PartRecord(number, length, response["ETag"], md5.hexdigest() if md5 else "")
        self.journal.part_done(record)
        return _Sent(record, flexible_value(self.settings.checksum, response))

    def _hashed(self, sha256: str) -> None:
        """Record the digest taken beside the parts, once the source is proven unchanged
        since intake's stat (so the digest is of the bytes the parts hold): before Complete,
        so a crash after it finds the digest, and de-duplication is decided before an object
        exists."""
        self.src.check_unchanged(self.fd)
        self.journal.content_hashed(sha256)

    @property
    def _wants_md5(self) -> bool:
        return self.settings.checksum == "md5" or self.settings.verify_etag

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
                **self.settings.options.access_params(),
            )
        except REMOTE_ERRORS as exc:
            if isinstance(classify(exc, bucket=self.settings.bucket), ObjectRejected):
                self._abandon()  # the same part list would be refused again: start over
            self._fail(exc)
        etag = response.get("ETag", "")
        self._verify(etag, response)
        return etag

    def _verify(self, etag: str, answer: Mapping[str, Any]) -> None:
        """Check the completed object; a wrong one is deleted so no lookup ever trusts it.

        The ETag comes from CompleteMultipartUpload, not HEAD: rclone's HEAD ETag differs.
        An S3-style ETag that matches our parts' MD5s proves content and size at once; only
        without that proof is the size checked with HEAD, which is not free: rclone serve s3
        hashes the whole object to answer it (1.3 s of server CPU per GiB, measured). The
        encryption asked for is proven by Complete's answer, else by that HEAD (made for it
        when needed: Complete never reports SSE-C, rclone's reports nothing); the HEAD also
        shows the storage class, which no answer reports, so it is made whenever a class is
        configured. An object without them is not counted as stored.
        """
        md5s = [self.parts[n].md5_hex for n in sorted(self.parts)]
        # A part sent while neither setting wanted its MD5 has none: no ETag proof then.
        proof = self.settings.verify_etag and all(md5s)
        verdict = multipart_etag_verdict(etag, md5s) if proof else None
        options = self.settings.options
        unproven = options.encrypts and bool(options.encryption_problems(answer))
        problems: list[str] = []
        if verdict is False:
            problems.append(f"ETag {etag} does not match the parts sent")
        elif verdict is None or unproven or options.storage_class:
            head = self._head()
            size = None if head is None else head["ContentLength"]
            if head is None or (verdict is None and size != self.src.size):
                problems.append(f"stored size {size} differs from the source's {self.src.size}")
            else:
                problems.extend(options.stored_problems(head))
        if not problems:
            return
        try:
            self.client.delete_object(Bucket=self.settings.bucket, Key=self.key)
        except REMOTE_ERRORS as exc:
            self._fail(exc)
        raise ObjectRejected(
            f"{self.src.path} -> {self.key}: {'; '.join(problems)}; deleted, not counted as stored"
        )

    def _head(self) -> dict[str, Any] | None:
        try:
            head = self.client.head_object(
                Bucket=self.settings.bucket, Key=self.key, **self.settings.options.access_params()
            )
        except REMOTE_ERRORS as exc:
            if is_not_found(exc):
                return None
            self._fail(exc)
        return dict(head)

    def _abandon(self) -> None:
        """Abort the upload and forget it. Best effort: an abort that fails leaves the upload
        to the stale-upload sweep (list_uploads + abort), which is what it is for."""
        with contextlib.suppress(*REMOTE_ERRORS):
            self.client.abort_multipart_upload(
                Bucket=self.settings.bucket, Key=self.key, UploadId=self.upload_id
            )
        self.journal.upload_forgotten()
