"""The pure parts of the S3 destination: error classification, metadata, client settings."""

from __future__ import annotations

import hashlib
import io
import os
import random
import socket
import ssl
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from botocore.compat import HAS_CRT
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    ProfileNotFound,
    ReadTimeoutError,
    SSLError,
)
from urllib3.exceptions import ProtocolError

from ingestd.config import S3DestinationConfig, Settings
from ingestd.destinations.base import SourceFile
from ingestd.destinations.factory import KeyChecks, build_destination
from ingestd.destinations.s3.bodies import (
    HASH_BLOCK,
    PartBody,
    RangeBody,
    block_buffer,
    md5_of_range,
    read_range_into,
)
from ingestd.destinations.s3.conditional import (
    ProbeAnswer,
    Seen,
    Setting,
    decide,
    needs_probe,
    probe_key,
)
from ingestd.destinations.s3.destination import (
    S3Destination,
    client_config,
    header_value,
    object_metadata,
)
from ingestd.destinations.s3.errors import (
    classify,
    error_code,
    is_no_such_upload,
    is_not_found,
    raise_classified,
)
from ingestd.errors import (
    ConfigError,
    DestinationDown,
    DestinationMisconfigured,
    IngestdError,
    ObjectRejected,
    SourceChanged,
    UploadGone,
)

URL = "http://127.0.0.1:9"


def client_error(code: str, status: int, message: str = "") -> ClientError:
    error: dict[str, Any] = {"Code": code, "Message": message} if code else {}
    response: Any = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutObject")


def kind(exc: BaseException) -> type[IngestdError] | None:
    result = classify(exc, bucket="inbox-bucket", key="a/b.pdf")
    return None if result is None else type(result)


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url=URL),
        ConnectionClosedError(endpoint_url=URL),
        ReadTimeoutError(endpoint_url=URL),
        ConnectTimeoutError(endpoint_url=URL),
        HTTPClientError(error=ProtocolError("Connection aborted.", ConnectionResetError(104, "x"))),
        SSLError(endpoint_url=URL, error=ssl.SSLError("EOF occurred in violation of protocol")),
        ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),  # unwrapped
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError("timed out"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transport_failures_are_destination_down(exc: BaseException) -> None:
    assert kind(exc) is DestinationDown


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("SlowDown", 503),
        ("ServiceUnavailable", 503),
        ("InternalError", 500),
        ("RequestTimeout", 400),
        ("Throttling", 400),
        ("", 502),  # a proxy's bare gateway error
        ("SomethingNew", 500),
        ("TooManyRequests", 429),
    ],
)
def test_busy_or_broken_servers_are_destination_down(code: str, status: int) -> None:
    assert kind(client_error(code, status)) is DestinationDown


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AccessDenied", 403),
        ("NoSuchBucket", 404),
        ("InvalidAccessKeyId", 403),
        ("SignatureDoesNotMatch", 403),
        ("AuthorizationHeaderMalformed", 400),
        ("PermanentRedirect", 301),
        ("RequestTimeTooSkewed", 403),
        ("", 403),  # HEAD answers without a body
        ("", 301),
        ("NotImplemented", 501),
    ],
)
def test_configuration_problems_are_misconfigured(code: str, status: int) -> None:
    assert kind(client_error(code, status)) is DestinationMisconfigured


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("BadDigest", 400),
        ("EntityTooLarge", 400),
        ("EntityTooSmall", 400),
        ("InvalidArgument", 400),
        ("InvalidPart", 400),
        ("KeyTooLongError", 400),
        ("SomethingNew", 400),  # unknown 4xx: this request, not the server
    ],
)
def test_object_refusals_are_object_rejected(code: str, status: int) -> None:
    assert kind(client_error(code, status)) is ObjectRejected


def test_no_such_upload_is_upload_gone() -> None:
    exc = client_error("NoSuchUpload", 404)
    assert kind(exc) is UploadGone
    assert is_no_such_upload(exc)
    assert not is_no_such_upload(client_error("NoSuchKey", 404))


def test_messages_name_the_bucket_key_and_code() -> None:
    exc = client_error("SignatureDoesNotMatch", 403, "The request signature we calculated...")
    error = classify(exc, bucket="inbox-bucket", key="a/b.pdf")
    assert error is not None
    for part in ("inbox-bucket", "a/b.pdf", "SignatureDoesNotMatch", "403", "signature"):
        assert part in str(error)


def test_certificate_failures_and_missing_credentials_are_misconfigured() -> None:
    cert = ssl.SSLCertVerificationError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    )
    assert kind(SSLError(endpoint_url=URL, error=cert)) is DestinationMisconfigured
    assert kind(NoCredentialsError()) is DestinationMisconfigured
    assert kind(ProfileNotFound(profile="nope")) is DestinationMisconfigured
    assert kind(ParamValidationError(report="bad")) is DestinationMisconfigured


def test_our_own_errors_pass_through_and_bugs_are_not_classified() -> None:
    changed = SourceChanged("x")
    assert classify(changed, bucket="b") is changed
    assert classify(ValueError("bug"), bucket="b") is None
    assert classify(KeyError("bug"), bucket="b") is None


def test_raise_classified_chains_the_original() -> None:
    original = client_error("SlowDown", 503)
    with pytest.raises(DestinationDown) as raised:
        raise_classified(original, bucket="b")
    assert raised.value.__cause__ is original
    bug = ValueError("bug")
    with pytest.raises(ValueError) as same:
        raise_classified(bug, bucket="b")
    assert same.value is bug


def test_not_found_and_codes() -> None:
    assert is_not_found(client_error("", 404))
    assert is_not_found(client_error("NoSuchKey", 404))
    assert not is_not_found(client_error("NoSuchBucket", 404))
    assert not is_not_found(ValueError())
    assert error_code(client_error("", 403)) == "403"


def test_header_values_quote_only_what_headers_cannot_carry() -> None:
    assert header_value("plain name (1).pdf") == "plain name (1).pdf"
    assert header_value("résumé.pdf") == "r%C3%A9sum%C3%A9.pdf"
    assert header_value(os.fsdecode(b"caf\xe9.pdf")) == "caf%E9.pdf"  # the exact bytes
    assert header_value("100%.pdf") == "100%25.pdf"  # so unquote gives the name back
    assert header_value("a\nb") == "a%0Ab"
    for name in ("résumé 100%.pdf", "履歴書.docx", "a\tb"):
        assert unquote(header_value(name)) == name


def test_object_metadata(tmp_path: Path) -> None:
    src = SourceFile(
        path=tmp_path / "ünïcode.pdf",
        size=1,
        mtime_ns=1,
        sha256="f" * 64,
        metadata={"Inbox": "scanner-1", "sha256": "not this one"},
    )
    assert object_metadata(src) == {
        "original-name": "%C3%BCn%C3%AFcode.pdf",
        "inbox": "scanner-1",
        "sha256": "f" * 64,
    }
    named = SourceFile(tmp_path / "spool-123", 1, 1, "f" * 64, metadata={"original-name": "é"})
    assert object_metadata(named)["original-name"] == "%C3%A9"  # the caller's name wins


def test_client_config_turns_off_default_checksums_and_body_signing() -> None:
    config: Any = client_config(
        addressing_style="path", part_concurrency=16, connect_timeout=3, read_timeout=30
    )
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.s3 == {"addressing_style": "path", "payload_signing_enabled": False}
    assert config.max_pool_connections is not None and config.max_pool_connections >= 16
    assert config.retries == {"total_max_attempts": 2, "mode": "standard"}
    assert (config.connect_timeout, config.read_timeout) == (3, 30)


def test_connections_keep_little_unsent_data() -> None:
    """Guards the reach into botocore's session: if its layout changes, this fails first."""
    dest = S3Destination(name="d", bucket="b", endpoint_url=URL, region="us-east-1")
    session: Any = dest.client._endpoint.http_session  # type: ignore[attr-defined]
    options = session._manager.connection_pool_kw["socket_options"]
    assert (socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 128 * 1024) in options


def test_construction_needs_no_network_and_refuses_impossible_settings() -> None:
    dest = S3Destination(
        name="d",
        bucket="b",
        endpoint_url=URL,
        access_key_id="k",
        secret_access_key="s",
        region="us-east-1",
    )
    assert dest.client.meta.endpoint_url == URL
    impossible: dict[str, Any] = {
        "part_size": 0,
        "part_concurrency": 0,
        "addressing_style": "sideways",
        "checksum": "xxhash",
    }
    with pytest.raises(ConfigError) as bad:
        S3Destination(name="d", bucket="b", **impossible)
    assert len(bad.value.problems) == 3
    if not HAS_CRT:
        with pytest.raises(ConfigError, match="crc32c"):
            S3Destination(name="d", bucket="b", checksum="crc32c")
    with pytest.raises(ConfigError, match="nope"):
        S3Destination(name="d", bucket="b", profile="nope")


def test_plain_etag_only_reads_md5_etags() -> None:
    from ingestd.destinations.s3.destination import _plain_etag

    assert _plain_etag('"9E107D9D372BB6826BD81D3542A419D6"') == "9e107d9d372bb6826bd81d3542a419d6"
    assert _plain_etag('"9e107d9d372bb6826bd81d3542a419d6-3"') is None  # multipart
    assert _plain_etag("kms-encrypted-opaque-value") is None
    assert _plain_etag(None) is None


# ---------------------------------------------------------------- part bodies and buffers


class CountingBucket:
    """Records what a throttled body pays for."""

    def __init__(self) -> None:
        self.paid: list[int] = []

    def acquire(self, n: int) -> None:
        self.paid.append(n)


def test_part_body_reads_in_blocks_seeks_and_pays_per_block() -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes
    bucket = CountingBucket()
    body = PartBody(memoryview(bytearray(data)), bucket)  # type: ignore[arg-type]
    assert len(body) == 10_240 and body.seekable() and body.tell() == 0
    blocks = iter(lambda: body.read(4096), b"")
    assert b"".join(blocks) == data
    assert bucket.paid == [4096, 4096, 2048]
    assert body.read(10) == b"" and body.tell() == 10_240
    assert body.seek(-40, io.SEEK_END) == 10_200
    assert body.read() == data[-40:]
    body.seek(0)  # botocore rewinds a body to retry a request
    assert body.read(3) == data[:3]
    assert body.seek(5, io.SEEK_CUR) == 8
    target = bytearray(4)
    assert body.readinto(target) == 4 and bytes(target) == data[8:12]


def test_block_buffers_are_reused_per_thread_and_never_shared() -> None:
    first = block_buffer()
    assert len(first) == HASH_BLOCK and block_buffer().obj is first.obj  # no new allocation
    seen: list[object] = []
    worker = threading.Thread(target=lambda: seen.append(block_buffer().obj))
    worker.start()
    worker.join()
    assert seen[0] is not first.obj


def test_read_range_into_fills_the_view_or_says_the_source_shrank(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(b"0123456789")
    src = SourceFile(path=path, size=10, mtime_ns=0, sha256="0" * 64)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert bytes(read_range_into(memoryview(bytearray(4)), fd, src, 3)) == b"3456"
        with pytest.raises(SourceChanged, match="shrank while being read"):
            read_range_into(memoryview(bytearray(8)), fd, src, 5)
    finally:
        os.close(fd)


def test_md5_of_range_hashes_across_blocks(tmp_path: Path) -> None:
    data = random.Random(7).randbytes(HASH_BLOCK * 2 + 123)
    path = tmp_path / "scan.pdf"
    path.write_bytes(data)
    src = SourceFile(path=path, size=len(data), mtime_ns=0, sha256="0" * 64)
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset, length in ((0, len(data)), (HASH_BLOCK - 5, HASH_BLOCK + 10), (9, 0)):
            expected = hashlib.md5(
                data[offset : offset + length], usedforsecurity=False
            ).hexdigest()
            assert md5_of_range(fd, src, offset, length).hexdigest() == expected
        with pytest.raises(SourceChanged):
            md5_of_range(fd, src, len(data) - 10, 11)
    finally:
        os.close(fd)


def test_range_body_reads_its_range_in_blocks_seeks_and_pays_per_block(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes, of which the body is 100..10,100
    path = tmp_path / "scan.pdf"
    path.write_bytes(data)
    src = SourceFile(path=path, size=len(data), mtime_ns=0, sha256="0" * 64)
    bucket = CountingBucket()
    fd = os.open(path, os.O_RDONLY)
    try:
        body = RangeBody(fd, src, 100, 10_000, bucket)  # type: ignore[arg-type]
        assert len(body) == 10_000 and body.seekable() and body.tell() == 0
        assert b"".join(iter(lambda: body.read(4096), b"")) == data[100:10_100]
        assert bucket.paid == [4096, 4096, 1808]
        assert body.read(10) == b"" and body.tell() == 10_000
        assert body.seek(-40, io.SEEK_END) == 9_960
        assert body.read() == data[10_060:10_100]
        body.seek(0)  # botocore rewinds a body to retry a request
        assert body.read(3) == data[100:103]
        target = bytearray(4)
        assert body.readinto(target) == 4 and bytes(target) == data[103:107]
        os.truncate(path, 5_000)  # a writer cut the file between hashing and sending
        body.seek(4_900)  # file offset 5,000: nothing left, and the body says so
        with pytest.raises(SourceChanged, match=r"shrank while being read \(at byte 5000\)"):
            body.read(4096)
    finally:
        os.close(fd)


def s3_config(setting: str, **values: Any) -> S3DestinationConfig:
    cfg = Settings(
        destinations={
            "d": {"type": "s3", "bucket": "scans", "conditional_writes": setting, **values}
        },
        inboxes=[],
    ).destinations["d"]
    assert isinstance(cfg, S3DestinationConfig)
    return cfg


@pytest.mark.parametrize(
    ("setting", "answer", "conditional", "reason"),
    [
        ("auto", ProbeAnswer(Seen.REFUSED, "HTTP 412 PreconditionFailed"), True,
         "probe: the server refused to overwrite a scratch object (HTTP 412 PreconditionFailed)"),
        ("auto", ProbeAnswer(Seen.OVERWROTE), False,
         "probe: the server overwrote a scratch object despite If-None-Match: *"),
        ("auto", ProbeAnswer(Seen.FAILED, "DeleteObject: AccessDenied"), False,
         "probe failed: DeleteObject: AccessDenied"),
        ("auto", None, False, "not probed"),
        ("on", None, True, "conditional_writes = on (trusted, not probed)"),
        ("off", None, False, "conditional_writes = off"),
    ],
)  # fmt: skip
def test_the_key_check_follows_the_setting_and_the_probe(
    setting: Setting, answer: ProbeAnswer | None, conditional: bool, reason: str
) -> None:
    check = decide(setting, answer)
    assert (check.conditional, check.reason) == (conditional, reason)
    assert check.failed is (answer is not None and answer.seen is Seen.FAILED)
    assert needs_probe(setting) is (setting == "auto")


def test_a_probe_key_lives_in_a_hidden_folder_under_the_prefix() -> None:
    assert probe_key("in/", "ab12") == "in/.ingestd-probe/ab12"
    assert probe_key("", "ab12") == ".ingestd-probe/ab12"


def test_key_checks_probe_once_and_again_only_after_a_failure_or_a_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The probe's I/O is tested against real servers (test_conditional_writes.py); here its
    answers are given, to show when KeyChecks asks and what it applies."""
    answers = [ProbeAnswer(Seen.FAILED, "no answer"), ProbeAnswer(Seen.REFUSED, "HTTP 412")]
    asked: list[str] = []

    def built(cfg: S3DestinationConfig) -> S3Destination:
        dest = build_destination("d", cfg)
        assert isinstance(dest, S3Destination)
        assert dest.conditional_writes is (cfg.conditional_writes == "on")  # before any probe

        def probe() -> ProbeAnswer:
            asked.append(cfg.bucket)
            return answers.pop(0)

        monkeypatch.setattr(dest, "probe_conditional_writes", probe)
        return dest

    checks, auto = KeyChecks(), s3_config("auto")
    first = built(auto)
    failed = decide("auto", ProbeAnswer(Seen.FAILED, "no answer"))
    assert checks.settle("d", auto, first) == (failed, True)
    assert first.conditional_writes is False and first.refuses_overwrite(1000) is False
    again = built(auto)  # a reload after a failed probe asks again
    settled = checks.settle("d", auto, again)
    assert settled is not None and settled[0].conditional and settled[1]
    assert again.refuses_overwrite(1000) is True
    # Multipart uploads are looked up first whatever the setting.
    assert again.refuses_overwrite(auto.multipart_threshold_mib * 1024 * 1024) is False
    same = built(auto)  # a reload with the same settings keeps the answer
    assert checks.settle("d", auto, same) == (settled[0], False) and same.conditional_writes
    assert asked == ["scans", "scans"]
    off = s3_config("off")
    assert checks.settle("d", off, built(off)) == (decide("off", None), True)
    directory = Settings(
        destinations={"x": {"type": "directory", "path": "/tmp"}}, inboxes=[]
    ).destinations["x"]
    assert checks.settle("x", directory, build_destination("x", directory)) is None
    assert asked == ["scans", "scans"]


def test_a_source_error_raised_while_botocore_sends_a_body_is_the_files() -> None:
    """A part's RangeBody raising SourceChanged mid-request comes out of botocore wrapped
    in HTTPClientError; it is the file's problem (the upload is abandoned and the file
    hashed again), not a destination that is down (which kept the upload to resume it
    with the old content's parts and metadata)."""
    changed = SourceChanged("/in/a.bin shrank while being read (at byte 10485760)")
    assert classify(HTTPClientError(error=changed), bucket="b") is changed
    with pytest.raises(SourceChanged) as raised:
        raise_classified(HTTPClientError(error=changed), bucket="b")
    assert raised.value is changed
    assert kind(HTTPClientError(error=ProtocolError("reset"))) is DestinationDown


class _Journal:
    def __init__(self) -> None:
        self.upload: tuple[str, int] | None = ("upload-1", 5 * 1024 * 1024)

    def known_upload(self) -> tuple[str, int] | None:
        return self.upload

    def known_parts(self) -> dict[int, Any]:
        return {}

    def upload_creating(self) -> None:
        self.creating = True

    def creation_unrecorded(self) -> bool:
        return getattr(self, "creating", False) and self.known_upload() is None

    def upload_started(self, *, key: str, upload_id: str, part_size: int) -> None:
        self.upload = (upload_id, part_size)

    def part_done(self, part: Any) -> None:
        pass

    def upload_forgotten(self) -> None:
        self.upload = None

    def content_hashed(self, sha256: str) -> None:
        raise AssertionError("the source was hashed before its upload")


def test_a_source_changed_since_hashing_abandons_its_recorded_multipart_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file changed after its upload was recorded (e.g. replaced while the daemon was
    down): the recorded upload is aborted and forgotten, so the rehashed file starts a new
    one rather than resuming the old content's parts under the old sha256 metadata."""
    path = tmp_path / "a.bin"
    path.write_bytes(os.urandom(6 * 1024 * 1024))
    st = path.stat()
    src = SourceFile(path, st.st_size, st.st_mtime_ns, "0" * 64, ctime_ns=st.st_ctime_ns)
    path.write_bytes(os.urandom(6 * 1024 * 1024))  # replaced: same size, new content
    mib = 1024 * 1024
    dest = S3Destination(
        name="d", bucket="b", endpoint_url=URL, part_size=5 * mib, multipart_threshold=5 * mib
    )
    aborted: list[dict[str, Any]] = []
    monkeypatch.setattr(dest.client, "abort_multipart_upload", lambda **kw: aborted.append(kw))
    journal = _Journal()
    with pytest.raises(SourceChanged):
        dest.put(src, "k/a.bin", journal=journal, progress=lambda n: None, cancel=threading.Event())
    assert aborted == [{"Bucket": "b", "Key": "k/a.bin", "UploadId": "upload-1"}]
    assert journal.upload is None
