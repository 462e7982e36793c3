"""S3 (and S3-compatible) destination: single PUT or a resumable multipart upload with boto3.

Integrity and cost (see docs/ARCHITECTURE.md, "S3 compatibility"):

* botocore's default flexible checksums (CRC headers, aws-chunked bodies) are switched off with
  ``request_checksum_calculation="when_required"``; ``checksum`` picks what is sent instead.
  The default, ``md5``, sends Content-MD5 on every PutObject/UploadPart: every server checks it.
* ``payload_signing_enabled=False`` makes botocore sign ``UNSIGNED-PAYLOAD`` even over plain
  HTTP (an explicit setting wins over its "always sign over HTTP" rule, see
  ``S3SigV4Auth._should_sha256_sign_payload``), so bodies are not SHA-256 hashed again; the
  integration tests assert the headers actually sent.

Keys given to every method are full object keys (the lane renders the prefix into them).
About 450 lines: the single PUT, the key checks, the conditional-write probe's client and the
verification HEAD share the client settings above; the multipart job, its bodies and the
probe's requests (writeprobe.py) already live apart.
"""

from __future__ import annotations

import base64
import errno
import functools
import hashlib
import os
import secrets
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, NoReturn
from urllib.parse import quote

import boto3
from botocore.compat import HAS_CRT
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ingestd.destinations.base import (
    Progress,
    PutResult,
    RemoteObject,
    SourceFile,
    StaleUpload,
    UploadJournal,
)
from ingestd.destinations.s3.bodies import PartBody, as_body, read_range
from ingestd.destinations.s3.checksums import checksum_params
from ingestd.destinations.s3.conditional import ProbeAnswer, probe_key
from ingestd.destinations.s3.errors import (
    REMOTE_ERRORS,
    classify,
    http_status,
    is_key_taken,
    is_no_such_upload,
    is_not_found,
    raise_classified,
)
from ingestd.destinations.s3.multipart import MultipartPut, UploadSettings
from ingestd.destinations.s3.object_options import ObjectOptions
from ingestd.destinations.s3.parts import MiB, use_multipart
from ingestd.destinations.s3.user_metadata import fit
from ingestd.destinations.s3.writeprobe import probe_if_none_match
from ingestd.errors import (
    Cancelled,
    ConfigError,
    DestinationMisconfigured,
    ObjectRejected,
    SourceChanged,
)
from ingestd.ratelimit import TokenBucket

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

Checksum = Literal["md5", "crc32c", "sha256", "none"]
AddressingStyle = Literal["auto", "path", "virtual"]

PROBE_TIMEOUT = 5.0  # seconds: connect and read timeout of the conditional-write probe

# Every printable ASCII character but '%': quoting then only touches what HTTP headers cannot
# carry (non-ASCII, control characters) and stays reversible with urllib.parse.unquote.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def header_value(value: str) -> str:
    """``value`` made safe for an x-amz-meta header: URL-quotes non-ASCII, control chars and '%'.

    A file name that is not UTF-8 quotes its invalid bytes as they are (``caf%E9.pdf``):
    ``unquote_to_bytes`` gives the exact name back (docs/ARCHITECTURE.md, "File names")."""
    return quote(value, safe=_HEADER_SAFE, errors="surrogateescape")


def object_metadata(src: SourceFile) -> dict[str, str]:
    """The user metadata stored with every object: the caller's entries (e.g. ``inbox``,
    ``original-name``, the file's metadata) with values made header-safe, within S3's 2 KiB
    (``user_metadata.fit``); ``sha256`` is always the source's (none when it is hashed during
    the upload, which begins before the digest is known), and ``original-name`` defaults to
    the source's file name."""
    meta = {"original-name": src.path.name}
    meta.update((k.lower(), v) for k, v in src.metadata.items())
    meta.pop("sha256", None)
    if src.sha256 is not None:
        meta["sha256"] = src.sha256
    return fit({k: header_value(v) for k, v in meta.items()})


def client_config(
    *,
    addressing_style: AddressingStyle,
    part_concurrency: int,
    connect_timeout: float,
    read_timeout: float,
) -> Config:
    """The botocore Config every S3 destination uses (see the module docstring for why)."""
    return Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # One retry smooths over a dropped keep-alive connection; anything longer is the
        # lane's business (DestinationDown, probe with backoff), and more attempts would only
        # delay noticing an outage by read_timeout each. (botocore's "max_attempts" counts
        # retries only; "total_max_attempts" counts the first try too.)
        retries={"total_max_attempts": 2, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max(10, part_concurrency + 2),
        tcp_keepalive=True,
        s3={"addressing_style": addressing_style, "payload_signing_enabled": False},
    )


def limit_unsent_bytes(client: S3Client, limit: int = 128 * 1024) -> bool:
    """Make every connection of ``client`` keep at most ``limit`` bytes queued but unsent
    (TCP_NOTSENT_LOWAT), and say whether that worked.

    Without it a socket parks up to 4 MiB (tcp_wmem) in the kernel; once the last block of
    a body is handed over, that backlog must drain over the uplink before the response can
    come, and read_timeout counts the drain: at 0.5 MiB/s per connection, 8 s. With it a
    send only returns when the link has moved the data, so read_timeout measures a stall.
    botocore has no public hook for socket options: this appends to the list its
    URLLib3Session gives urllib3 for each new connection. Where that layout or the option
    is missing nothing changes, and a slow uplink just needs a longer read_timeout.
    """
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    options = getattr(session, "_socket_options", None)
    if option is None or not isinstance(options, list):
        return False
    options.append((socket.IPPROTO_TCP, option, limit))
    return True


class S3Destination:
    """Uploads to one bucket through one thread-safe boto3 client.

    Keys are full object keys: the lane renders the prefix into them (keys.render_key). The
    destination's ``prefix`` scopes ``probe`` and ``list_uploads`` (the stale-upload sweep).
    """

    def __init__(
        self,
        *,
        name: str,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: AddressingStyle = "auto",
        part_size: int = 8 * MiB,
        part_concurrency: int = 4,
        multipart_threshold: int = 16 * MiB,
        checksum: Checksum = "md5",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        profile: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        verify_tls: bool | str = True,
        verify_etag: bool = True,
        conditional_writes: bool = False,
        hash_while_uploading: bool = False,
        limiter: TokenBucket | None = None,
        options: ObjectOptions | None = None,
        unusable: str = "",
    ) -> None:
        """Build the client (no network I/O). ``verify_tls`` may be a CA bundle path.
        ``verify_etag=False`` skips the multipart ETag check, for buckets whose ETags are not
        MD5-based (SSE-KMS, SSE-C; off by itself when ``options`` ask for them). ``options``:
        storage class, encryption, what every object must carry (object_options.py).
        ``hash_while_uploading``: a multipart upload of a file not hashed yet hashes it
        beside its parts (``hashes_while_sending``). ``unusable``: why the destination
        cannot work (its SSE-C key cannot be read): every call on an object raises
        DestinationMisconfigured saying so, and the lane holds until a reload fixes it.
        Raises ConfigError for settings that cannot work."""
        _check_settings(name, checksum, part_size, part_concurrency, addressing_style)
        self.name = name
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.multipart_threshold = multipart_threshold
        self.checksum = checksum
        self.conditional_writes = conditional_writes
        self.hash_while_uploading = hash_while_uploading
        self.options = options or ObjectOptions()
        self.unusable = unusable
        verify_etag = verify_etag and self.options.etag_is_md5
        self._settings = UploadSettings(
            bucket=bucket,
            checksum=checksum,
            part_size=part_size,
            part_concurrency=part_concurrency,
            verify_etag=verify_etag,
            thread_name=f"s3-{name}",
            limiter=limiter,
            options=self.options,
        )
        self.limiter = limiter
        config = client_config(
            addressing_style=addressing_style,
            part_concurrency=part_concurrency,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        try:
            session = boto3.session.Session(
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                profile_name=profile,
                region_name=region,
            )
        except BotoCoreError as exc:  # e.g. ProfileNotFound
            raise ConfigError([f"destination {name!r}: {exc}"]) from exc
        self.client: S3Client = session.client(
            "s3", endpoint_url=endpoint_url, config=config, verify=verify_tls
        )
        limit_unsent_bytes(self.client)
        # The conditional-write probe runs while the daemon starts: one attempt each and short
        # timeouts, so a server that is down delays the start by seconds, not minutes.
        self._probe_settings: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "verify": verify_tls,
            "config": config.merge(
                Config(
                    connect_timeout=min(connect_timeout, PROBE_TIMEOUT),
                    read_timeout=min(read_timeout, PROBE_TIMEOUT),
                    retries={"total_max_attempts": 1, "mode": "standard"},
                )
            ),
        }
        self._session = session

    def probe(self) -> None:
        """Return when the bucket answers a listing under the prefix with these credentials.

        Listing (not HeadBucket) because its errors carry a code (InvalidAccessKeyId,
        NoSuchBucket, ...) and because HeadObject on a missing key needs s3:ListBucket to
        answer 404 rather than 403.
        """
        self._check_usable()
        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key_prefix, MaxKeys=1)
        except REMOTE_ERRORS as exc:
            self._fail(exc)

    def probe_conditional_writes(self) -> ProbeAnswer:
        """Whether this server refuses a second PUT of a key with If-None-Match: * (a scratch
        key under the prefix, deleted again; see writeprobe.py). Never raises."""
        key = probe_key(self._key_prefix, secrets.token_hex(8))
        client = self.probe_client
        return probe_if_none_match(client, bucket=self.bucket, key=key, checksum=self.checksum)

    @functools.cached_property
    def probe_client(self) -> S3Client:
        """The probe's own client: ``client``'s settings with short timeouts, no retry."""
        return self._session.client("s3", **self._probe_settings)

    def lookup(self, key: str) -> RemoteObject | None:
        """HeadObject ``key``: its size, ETag, the sha256 we stored in its metadata, and
        whether it has the encryption asked for (with SSE-C, the HEAD carries the key)."""
        self._check_usable()
        try:
            head = self.client.head_object(
                Bucket=self.bucket, Key=key, **self.options.access_params()
            )
        except REMOTE_ERRORS as exc:
            if is_not_found(exc):
                return None
            if self.options.customer_key is not None and _is_bad_request(exc):
                # S3's answer to a HEAD whose SSE-C key does not fit the object (another key,
                # or none): something is there that is not this destination's object.
                return RemoteObject(key=key, size=-1, sha256=None, as_configured=False)
            self._fail(exc, key)
        # Servers differ in metadata case (rclone answers "Sha256"); S3 itself lowercases.
        meta = {k.lower(): v for k, v in head.get("Metadata", {}).items()}
        return RemoteObject(
            key=key,
            size=head["ContentLength"],
            sha256=meta.get("sha256"),
            etag=head.get("ETag"),
            as_configured=not self.options.encryption_problems(head),
        )

    def refuses_overwrite(self, size: int) -> bool:
        """Single PUTs with ``conditional_writes`` (If-None-Match: *); a multipart upload is
        still looked up first (one HEAD per large file is nothing, and servers differ on
        conditional Complete)."""
        return self.conditional_writes and not use_multipart(size, self.multipart_threshold)

    def hashes_while_sending(self, size: int) -> bool:
        """Multipart uploads with ``hash_while_uploading``: the SHA-256 is taken beside the
        parts and given to the journal before Complete (multipart.MultipartPut)."""
        return self.hash_while_uploading and use_multipart(size, self.multipart_threshold)

    def content_sha256(self, key: str) -> str | None:
        """SHA-256 of the object's bytes, read back from the server (streamed, bounded
        memory); None when it is gone. Used when metadata is missing (rclone forgets it)."""
        digest = hashlib.sha256()
        try:
            body = self.client.get_object(
                Bucket=self.bucket, Key=key, **self.options.access_params()
            )["Body"]
            for chunk in body.iter_chunks(1024 * 1024):
                digest.update(chunk)
        except REMOTE_ERRORS as exc:
            if is_not_found(exc):
                return None
            self._fail(exc, key)
        return digest.hexdigest()

    def put(
        self,
        src: SourceFile,
        key: str,
        *,
        journal: UploadJournal,
        progress: Progress,
        cancel: threading.Event,
    ) -> PutResult:
        """Store ``src`` under ``key``: one PutObject below ``multipart_threshold``, else a
        multipart upload that resumes from ``journal`` (see the Destination protocol).

        ``progress`` counts the bytes this call sends (parts kept from an earlier attempt are
        not reported again). UploadGone (the recorded upload vanished mid-way) is raised after
        the journal forgot it, so the next call starts afresh; DestinationDown and Cancelled
        leave the journal as it is, to resume.
        """
        self._check_usable()
        if not key:
            raise ObjectRejected(f"{src.path}: empty object key")
        if cancel.is_set():
            raise Cancelled(f"{src.path}: cancelled before the upload started")
        if not use_multipart(src.size, self.multipart_threshold):
            self._drop_known_upload(key, journal)
            return self._put_single(src, key, progress)
        try:
            fd = src.open()
        except SourceChanged:
            # An upload recorded for the content as it was holds that content's parts and
            # its sha256 metadata: resuming it would store a mix under the new fingerprint.
            self._drop_known_upload(key, journal)
            raise
        try:
            job = MultipartPut(self.client, self._settings, src, fd, key, journal)
            create = {**self._object_params(src), **self.options.write_params(src.tags)}
            return job.run(create, progress, cancel)
        finally:
            os.close(fd)

    def abort(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload; one the server no longer knows is not an error."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except REMOTE_ERRORS as exc:
            if not is_no_such_upload(exc):
                self._fail(exc, key)

    def list_uploads(self) -> Iterator[StaleUpload]:
        """Multipart uploads in progress under the prefix (every page)."""
        pages = self.client.get_paginator("list_multipart_uploads")
        try:
            for page in pages.paginate(Bucket=self.bucket, Prefix=self._key_prefix):
                for upload in page.get("Uploads", []):
                    yield StaleUpload(upload["Key"], upload["UploadId"], upload["Initiated"])
        except REMOTE_ERRORS as exc:
            # rclone answers NoSuchUpload for a bucket that has never had an upload.
            if not is_no_such_upload(exc):
                self._fail(exc)

    @property
    def _key_prefix(self) -> str:
        # "inbox/" rather than "inbox": keys are rendered as prefix + "/" + rest, and a bare
        # "inbox" would also match a neighbour's "inbox-old/..." uploads.
        return f"{self.prefix}/" if self.prefix else ""

    def _object_params(self, src: SourceFile) -> dict[str, Any]:
        return {"ContentType": src.content_type, "Metadata": object_metadata(src)}

    def _put_single(self, src: SourceFile, key: str, progress: Progress) -> PutResult:
        fd = src.open()
        try:
            body = read_range(fd, src, 0, src.size)
            # The body in memory is what gets sent; it must be what was hashed.
            src.check_unchanged(fd)
        finally:
            os.close(fd)
        # With the MD5 taken in the fingerprint's read (intake), nothing is hashed here and the
        # server refuses a body that is not the fingerprinted one, even one rewritten in place
        # with its size and mtime kept.
        if src.md5:
            md5 = bytes.fromhex(src.md5)
        else:
            md5 = hashlib.md5(body, usedforsecurity=False).digest()
        params = {
            **self._object_params(src),
            **self._single_checksum(src, md5),
            **self.options.write_params(src.tags),
        }
        if self.conditional_writes:
            params["IfNoneMatch"] = "*"
        try:
            response = self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=as_body(PartBody(body, self.limiter)),
                ContentLength=len(body),
                **params,
            )
        except REMOTE_ERRORS as exc:
            if self.conditional_writes and is_key_taken(exc):
                # Nothing was written: the caller looks at what holds the key (perhaps this
                # very file, sent before a crash) and decides, as after a HEAD.
                raise FileExistsError(
                    errno.EEXIST, f"bucket {self.bucket!r} key {key!r} is taken"
                ) from exc
            if isinstance(classify(exc, bucket=self.bucket), ObjectRejected):
                _check_fingerprinted(src, body)  # BadDigest of a file rewritten in place
            self._fail(exc, key)
        etag = response.get("ETag")
        if self._settings.verify_etag and _plain_etag(etag) not in (None, md5.hex()):
            # The server stored other bytes than the fingerprinted ones: never count that as
            # stored, and leave nothing a later lookup could take for this file.
            self._delete(key)
            _check_fingerprinted(src, body)
            raise ObjectRejected(
                f"bucket {self.bucket!r} key {key!r}: ETag {etag} does not match the MD5 of the "
                "body sent; deleted"
            )
        self._check_applied(key, response)
        progress(src.size)
        return PutResult(key, src.size, etag, parts=0, bytes_sent=src.size)

    def _single_checksum(self, src: SourceFile, md5: bytes) -> dict[str, Any]:
        if self.checksum == "sha256" and src.sha256 is not None:
            # The whole object's SHA-256 is the fingerprint: S3 checks the object against it.
            return {"ChecksumSHA256": base64.b64encode(bytes.fromhex(src.sha256)).decode()}
        return checksum_params(self.checksum, md5)

    def _check_applied(self, key: str, answer: Mapping[str, Any]) -> None:
        """Raise ObjectRejected (after deleting the object) when it lacks the encryption or
        the storage class asked for. The PUT's answer decides the encryption when it says; a
        silent one (rclone) is asked by HEAD. No PUT or Complete answer reports the storage
        class, so a configured one is always looked at by HEAD (one request more per file,
        only for those who set it). Not counted as stored, so the file is retried with backoff
        like any refused object (README, "Storage class, encryption and tags")."""
        unproven = self.options.encrypts and bool(self.options.encryption_problems(answer))
        if not unproven and not self.options.storage_class:
            return
        try:
            head = self.client.head_object(
                Bucket=self.bucket, Key=key, **self.options.access_params()
            )
        except REMOTE_ERRORS as exc:
            if not is_not_found(exc):
                self._fail(exc, key)
            raise ObjectRejected(
                f"bucket {self.bucket!r} key {key!r}: gone right after it was stored"
            ) from exc
        problems = self.options.stored_problems(head)
        if problems:
            self._delete(key)
            raise ObjectRejected(
                f"bucket {self.bucket!r} key {key!r}: {'; '.join(problems)}; deleted, not "
                "counted as stored"
            )

    def _check_usable(self) -> None:
        if self.unusable:
            raise DestinationMisconfigured(f"destination {self.name!r}: {self.unusable}")

    def _delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except REMOTE_ERRORS as exc:
            self._fail(exc, key)

    def _drop_known_upload(self, key: str, journal: UploadJournal) -> None:
        """A multipart upload recorded by an earlier attempt (the threshold was raised since)
        is aborted rather than left to the stale-upload sweep."""
        known = journal.known_upload()
        if known is not None:
            self.abort(key, known[0])
            journal.upload_forgotten()

    def _fail(self, exc: BaseException, key: str | None = None) -> NoReturn:
        raise_classified(exc, bucket=self.bucket, key=key)


def _is_bad_request(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and http_status(exc) == 400


def _check_fingerprinted(src: SourceFile, body: memoryview) -> None:
    """Raise SourceChanged when ``body`` is not the content the fingerprint was taken of (the
    file was rewritten in place, keeping size and mtime): intake hashes it again. Only on a
    refused or mismatched upload, so the common path hashes nothing."""
    if hashlib.sha256(body).hexdigest() != src.sha256:
        raise SourceChanged(f"{src.path} changed since it was fingerprinted (same size and mtime)")


def _check_settings(
    name: str, checksum: str, part_size: int, part_concurrency: int, addressing_style: str
) -> None:
    problems: list[str] = []
    if checksum not in ("md5", "crc32c", "sha256", "none"):
        problems.append(f"destination {name!r}: checksum must be md5, crc32c, sha256 or none")
    if checksum == "crc32c" and not HAS_CRT:
        problems.append(
            f"destination {name!r}: checksum = 'crc32c' needs botocore[crt] (awscrt) installed"
        )
    if addressing_style not in ("auto", "path", "virtual"):
        problems.append(f"destination {name!r}: addressing_style must be auto, path or virtual")
    if part_size <= 0 or part_concurrency < 1:
        problems.append(f"destination {name!r}: part_size and part_concurrency must be positive")
    if problems:
        raise ConfigError(problems)


def _plain_etag(etag: str | None) -> str | None:
    """The hex MD5 in a single-PUT ETag, or None when the ETag is not of that form (servers
    with SSE-KMS/SSE-C, or ones that do not return MD5 ETags)."""
    value = (etag or "").strip('"').lower()
    if len(value) == 32 and all(c in "0123456789abcdef" for c in value):
        return value
    return None
