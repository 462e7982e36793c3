"""S3Destination against real servers: moto_server, rclone serve s3 and SeaweedFS (see
tests/servers/s3.py)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import random
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from botocore.exceptions import ClientError

from ingestd.catalog.rows import PartRecord
from ingestd.destinations.base import SourceFile
from ingestd.destinations.s3.destination import S3Destination
from ingestd.destinations.s3.parts import multipart_etag
from ingestd.errors import (
    Cancelled,
    DestinationDown,
    DestinationMisconfigured,
    DuplicateContent,
    SourceChanged,
)
from tests.rewrites import rewrite_in_place
from tests.servers.proxy import TcpProxy
from tests.servers.s3 import KINDS, S3Server, free_port

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture(scope="session", params=KINDS)
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Here each real server in turn includes SeaweedFS (elsewhere: moto and rclone)."""
    server: S3Server = request.getfixturevalue(f"{request.param}_s3")
    return server


class MemoryJournal:
    """The UploadJournal protocol in memory, as thread-safe as the catalog's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.upload: tuple[str, int] | None = None
        self.key: str | None = None
        self.parts: dict[int, PartRecord] = {}
        self.forgotten = 0
        self.hashed: list[str] = []
        self.held: dict[str, int] = {}

    def known_upload(self) -> tuple[str, int] | None:
        return self.upload

    def known_parts(self) -> dict[int, PartRecord]:
        with self._lock:
            return dict(self.parts)

    def upload_creating(self) -> None:
        self.creating = True

    def creation_unrecorded(self) -> bool:
        return getattr(self, "creating", False)

    def upload_started(self, *, key: str, upload_id: str, part_size: int) -> None:
        with self._lock:
            self.upload, self.key, self.parts = (upload_id, part_size), key, {}
            self.creating = False

    def part_done(self, part: PartRecord) -> None:
        with self._lock:
            self.parts[part.part_number] = part

    def upload_forgotten(self) -> None:
        with self._lock:
            self.upload, self.parts = None, {}
            self.forgotten += 1

    def content_hashed(self, sha256: str) -> None:
        """The catalog's record_content in memory: the digest, and a duplicate when
        ``held`` (the digests other files hold) has it."""
        self.hashed.append(sha256)
        if sha256 in self.held:
            raise DuplicateContent(f"same content as file {self.held[sha256]}", original_id=7)


class Crash(Exception):
    """Stands in for the process dying between two parts."""


def make_source(tmp_path: Path, size: int, *, name: str = "file.bin", **kw: Any) -> SourceFile:
    data = random.Random(f"{name}{size}").randbytes(size)
    path = tmp_path / name
    path.write_bytes(data)
    st = path.stat()
    digest = hashlib.sha256(data).hexdigest()
    return SourceFile(path=path, size=size, mtime_ns=st.st_mtime_ns, sha256=digest, **kw)


def destination(server: S3Server, **overrides: Any) -> S3Destination:
    settings: dict[str, Any] = {
        "name": f"test-{server.kind}",
        "bucket": server.bucket,
        "endpoint_url": server.endpoint_url,
        "region": "us-east-1",
        "addressing_style": "path",
        "part_size": 5 * MiB,
        "part_concurrency": 2,
        "multipart_threshold": 5 * MiB,
        "access_key_id": server.key,
        "secret_access_key": server.secret,
        "connect_timeout": 2.0,
        "read_timeout": 20.0,
    }
    settings.update(overrides)
    return S3Destination(**settings)


def calls(dest: S3Destination, operation: str, field: str = "Key") -> list[Any]:
    """``field`` of every ``operation`` call ``dest`` makes from now on (retries not counted)."""
    seen: list[Any] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append(params[field])

    dest.client.meta.events.register(f"before-parameter-build.s3.{operation}", record)
    return seen


def sent_parts(dest: S3Destination) -> list[int]:
    """Part numbers of every UploadPart call ``dest`` makes from now on."""
    return calls(dest, "UploadPart", "PartNumber")


def new_key(name: str = "file.bin") -> str:
    return f"it/{uuid.uuid4().hex[:12]}/{name}"


def put(
    dest: S3Destination,
    src: SourceFile,
    key: str,
    journal: MemoryJournal | None = None,
    progress: Callable[[int], None] = lambda n: None,
    cancel: threading.Event | None = None,
) -> Any:
    return dest.put(
        src,
        key,
        journal=journal or MemoryJournal(),
        progress=progress,
        cancel=cancel or threading.Event(),
    )


def stored_bytes(server: S3Server, key: str) -> bytes:
    return server.client().get_object(Bucket=server.bucket, Key=key)["Body"].read()


def cancel_on_progress(cancel: threading.Event) -> Callable[[int], None]:
    return lambda _: cancel.set()


def crash_after(parts: int) -> Callable[[int], None]:
    calls = [0]

    def progress(_: int) -> None:
        calls[0] += 1
        if calls[0] == parts:
            raise Crash

    return progress


def test_small_put_stores_bytes_metadata_and_content_type(
    s3_server: S3Server, tmp_path: Path
) -> None:
    src = make_source(
        tmp_path,
        1000,
        name="résumé 100%.pdf",
        content_type="application/pdf",
        metadata={"inbox": "scanner-1"},
    )
    dest, key, seen = destination(s3_server), new_key("résumé.pdf"), list[int]()
    result = put(dest, src, key, progress=seen.append)
    assert (result.key, result.size, result.parts, result.bytes_sent) == (key, 1000, 0, 1000)
    assert seen == [1000]
    head = s3_server.client().head_object(Bucket=s3_server.bucket, Key=key)
    meta = {k.lower(): v for k, v in head["Metadata"].items()}
    assert meta["sha256"] == src.sha256
    assert unquote(meta["original-name"]) == "résumé 100%.pdf"
    assert meta["inbox"] == "scanner-1"
    assert head["ContentType"] == "application/pdf"
    assert stored_bytes(s3_server, key) == src.path.read_bytes()


def test_bodies_go_unsigned_with_content_md5_over_plain_http(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """payload_signing_enabled=False really yields UNSIGNED-PAYLOAD over http (no SHA-256 of
    the body), Content-MD5 is sent, and none of botocore's default CRC headers are."""
    dest = destination(s3_server, part_concurrency=1)
    headers: dict[str, dict[str, str]] = {}

    def capture(request: Any, event_name: str, **_: Any) -> None:
        op = event_name.rsplit(".", 1)[-1]
        headers[op] = {
            k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
        }

    dest.client.meta.events.register("before-send.s3", capture)
    put(dest, make_source(tmp_path, 100, name="small"), new_key())
    put(dest, make_source(tmp_path, 6 * MiB, name="big"), new_key())
    for op in ("PutObject", "UploadPart"):
        sent = headers[op]
        assert sent["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        assert "content-md5" in sent
        assert not [h for h in sent if h.startswith("x-amz-checksum") or h == "x-amz-trailer"]
        assert "aws-chunked" not in sent.get("content-encoding", "")


def test_three_part_multipart_round_trip(s3_server: S3Server, tmp_path: Path) -> None:
    src = make_source(tmp_path, 12 * MiB)
    dest, key, journal, seen = destination(s3_server), new_key(), MemoryJournal(), list[int]()
    numbers = sent_parts(dest)
    result = put(dest, src, key, journal, progress=seen.append)
    assert sorted(numbers) == [1, 2, 3]
    assert (result.parts, result.bytes_sent, sum(seen)) == (3, 12 * MiB, 12 * MiB)
    data = src.path.read_bytes()
    md5s = [
        hashlib.md5(data[i : i + 5 * MiB], usedforsecurity=False).hexdigest()
        for i in range(0, len(data), 5 * MiB)
    ]
    assert result.etag.strip('"') == multipart_etag(md5s)
    assert stored_bytes(s3_server, key) == data
    assert journal.upload is None and journal.forgotten == 1
    found = dest.lookup(key)
    assert found is not None and (found.size, found.sha256) == (src.size, src.sha256)


@pytest.mark.parametrize("verify_etag", [True, False])
def test_a_matching_multipart_etag_spares_the_head(
    s3_server: S3Server, tmp_path: Path, verify_etag: bool
) -> None:
    """Complete's S3-style ETag, equal to the digest of our parts' MD5s, proves content and
    size: no HEAD after it (rclone serve s3 hashes the whole object to answer one). Without
    ETag verification the size is still checked, with HEAD."""
    src = make_source(tmp_path, 12 * MiB)
    dest, key = destination(s3_server, verify_etag=verify_etag), new_key()
    heads = calls(dest, "HeadObject")
    put(dest, src, key)
    assert heads == ([] if verify_etag else [key])
    assert stored_bytes(s3_server, key) == src.path.read_bytes()


def test_resume_after_crash_sends_only_missing_parts(s3_server: S3Server, tmp_path: Path) -> None:
    src = make_source(tmp_path, 12 * MiB)
    key, journal = new_key(), MemoryJournal()
    with pytest.raises(Crash):
        put(destination(s3_server, part_concurrency=1), src, key, journal, crash_after(2))
    assert journal.upload is not None and sorted(journal.parts) == [1, 2]

    fresh = destination(s3_server)  # a new process: new client, same journal
    numbers = sent_parts(fresh)
    result = put(fresh, src, key, journal)
    assert numbers == [3]
    assert (result.parts, result.bytes_sent) == (3, 12 * MiB - 10 * MiB)
    assert stored_bytes(s3_server, key) == src.path.read_bytes()


def test_resume_trusts_the_server_not_the_journal(s3_server: S3Server, tmp_path: Path) -> None:
    """Part 2 was acknowledged but its journal write was lost: adopted after checking its MD5.
    The journal claims a part 3 the server never got: sent again."""
    src = make_source(tmp_path, 12 * MiB)
    key, journal = new_key(), MemoryJournal()
    with pytest.raises(Crash):
        put(destination(s3_server, part_concurrency=1), src, key, journal, crash_after(2))
    del journal.parts[2]
    journal.parts[3] = PartRecord(3, 2 * MiB, '"' + "0" * 32 + '"', "0" * 32)

    fresh = destination(s3_server)
    numbers = sent_parts(fresh)
    put(fresh, src, key, journal)
    assert numbers == [3]
    assert stored_bytes(s3_server, key) == src.path.read_bytes()


def test_an_upload_created_just_before_a_crash_is_aborted_by_the_resume(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """A kill after CreateMultipartUpload answered but before its UploadId was journalled:
    the resume aborts the stray one under its key and starts anew, so the server keeps no
    upload nobody knows of. An upload of another key is left alone."""
    src = make_source(tmp_path, 12 * MiB)
    key, journal = new_key(), MemoryJournal()
    client = s3_server.client()
    other = new_key()
    elsewhere = client.create_multipart_upload(Bucket=s3_server.bucket, Key=other)["UploadId"]
    journal.upload_creating()  # the intent was committed ...
    stray = client.create_multipart_upload(Bucket=s3_server.bucket, Key=key)["UploadId"]
    # ... the server answered, and the process died before upload_started.
    result = put(destination(s3_server), src, key, journal)
    assert result.bytes_sent == 12 * MiB
    assert stored_bytes(s3_server, key) == src.path.read_bytes()
    left = {
        (u["Key"], u["UploadId"])
        for u in client.list_multipart_uploads(Bucket=s3_server.bucket).get("Uploads", [])
    }
    assert (key, stray) not in left
    assert (other, elsewhere) in left
    client.abort_multipart_upload(Bucket=s3_server.bucket, Key=other, UploadId=elsewhere)


def test_upload_aborted_behind_our_back_starts_over(s3_server: S3Server, tmp_path: Path) -> None:
    src = make_source(tmp_path, 12 * MiB)
    key, journal = new_key(), MemoryJournal()
    with pytest.raises(Crash):
        put(destination(s3_server, part_concurrency=1), src, key, journal, crash_after(2))
    assert journal.upload is not None
    old_id = journal.upload[0]
    s3_server.client().abort_multipart_upload(Bucket=s3_server.bucket, Key=key, UploadId=old_id)

    fresh = destination(s3_server)
    numbers = sent_parts(fresh)
    result = put(fresh, src, key, journal)
    assert sorted(numbers) == [1, 2, 3]
    assert result.bytes_sent == 12 * MiB
    assert stored_bytes(s3_server, key) == src.path.read_bytes()


def test_cancel_stops_between_parts_then_abort_cleans_up(
    s3_server: S3Server, tmp_path: Path
) -> None:
    src = make_source(tmp_path, 16 * MiB)
    dest, key, journal, cancel = (
        destination(s3_server, part_concurrency=1),
        new_key(),
        MemoryJournal(),
        threading.Event(),
    )
    numbers = sent_parts(dest)
    with pytest.raises(Cancelled):
        put(dest, src, key, journal, cancel_on_progress(cancel), cancel)
    assert numbers == [1]
    assert journal.upload is not None and sorted(journal.parts) == [1]  # kept: caller decides
    upload_id = journal.upload[0]
    assert (key, upload_id) in {(u.key, u.upload_id) for u in dest.list_uploads()}
    dest.abort(key, upload_id)
    dest.abort(key, upload_id)  # unknown now: not an error
    assert upload_id not in {u.upload_id for u in dest.list_uploads()}
    assert dest.lookup(key) is None


def test_list_uploads_of_a_bucket_that_never_had_one_is_empty(s3_server: S3Server) -> None:
    dest = destination(s3_server, bucket=s3_server.create_bucket())  # rclone: NoSuchUpload
    assert list(dest.list_uploads()) == []


def test_list_uploads_stays_under_the_prefix(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.create_bucket()
    ours = destination(s3_server, bucket=bucket, prefix="ours/")
    src = make_source(tmp_path, 12 * MiB)
    for key in ("ours/a.bin", "ours-old/b.bin", "theirs/c.bin"):
        cancel = threading.Event()
        with pytest.raises(Cancelled):
            put(ours, src, key, MemoryJournal(), cancel_on_progress(cancel), cancel)
    assert [u.key for u in ours.list_uploads()] == ["ours/a.bin"]
    everything = destination(s3_server, bucket=bucket)
    assert sorted(u.key for u in everything.list_uploads()) == [
        "ours-old/b.bin",
        "ours/a.bin",
        "theirs/c.bin",
    ]


def test_lookup_of_existing_and_missing_objects(s3_server: S3Server, tmp_path: Path) -> None:
    dest, key = destination(s3_server), new_key()
    src = make_source(tmp_path, 10)
    assert dest.lookup(key) is None
    put(dest, src, key)
    found = dest.lookup(key)
    assert found is not None
    assert (found.key, found.size, found.sha256) == (key, 10, src.sha256)
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=key + ".foreign", Body=b"x")
    foreign = dest.lookup(key + ".foreign")
    assert foreign is not None and foreign.sha256 is None


def test_probe_passes_on_a_healthy_server(s3_server: S3Server) -> None:
    destination(s3_server).probe()
    destination(s3_server, prefix="some/prefix").probe()


def test_nothing_listening_is_destination_down(s3_server: S3Server, tmp_path: Path) -> None:
    dest = destination(
        s3_server, endpoint_url=f"http://127.0.0.1:{free_port()}", connect_timeout=1.0
    )
    with pytest.raises(DestinationDown):
        dest.probe()
    with pytest.raises(DestinationDown):
        dest.lookup("k")
    with pytest.raises(DestinationDown):
        put(dest, make_source(tmp_path, 10), new_key())
    with pytest.raises(DestinationDown):
        put(dest, make_source(tmp_path, 6 * MiB, name="big"), new_key())


@pytest.mark.parametrize(
    ("key_id", "secret", "code"),
    [
        (None, "wrong-secret", "SignatureDoesNotMatch"),
        ("AKIANOSUCHKEY0000000", "x", "InvalidAccessKeyId"),
    ],
)
def test_bad_credentials_are_misconfigured(
    s3_server: S3Server, tmp_path: Path, key_id: str | None, secret: str, code: str
) -> None:
    dest = destination(s3_server, access_key_id=key_id or s3_server.key, secret_access_key=secret)
    with pytest.raises(DestinationMisconfigured, match=code) as probed:
        dest.probe()
    assert s3_server.bucket in str(probed.value)
    with pytest.raises(DestinationMisconfigured):
        put(dest, make_source(tmp_path, 10), new_key())


def test_missing_bucket_is_misconfigured(s3_server: S3Server, tmp_path: Path) -> None:
    dest = destination(s3_server, bucket="no-such-bucket-here")
    with pytest.raises(DestinationMisconfigured, match="NoSuchBucket") as probed:
        dest.probe()
    assert "no-such-bucket-here" in str(probed.value)


def test_source_changed_before_complete_aborts_the_upload(
    s3_server: S3Server, tmp_path: Path
) -> None:
    src = make_source(tmp_path, 12 * MiB)
    dest, key, journal = destination(s3_server, part_concurrency=1), new_key(), MemoryJournal()
    seen: list[str] = []

    def change_after_last_part(_: int) -> None:
        if journal.upload is not None:
            seen.append(journal.upload[0])
        if len(journal.parts) == 3:
            with src.path.open("ab") as f:
                f.write(b"late bytes")

    with pytest.raises(SourceChanged):
        put(dest, src, key, journal, change_after_last_part)
    assert journal.upload is None
    assert dest.lookup(key) is None
    with pytest.raises(ClientError, match="NoSuchUpload"):
        s3_server.client().list_parts(Bucket=s3_server.bucket, Key=key, UploadId=seen[0])


def test_bytes_rewritten_between_hashing_and_sending_are_refused_as_a_changed_source(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """A part is hashed, then read again as it is sent: a writer that rewrites the file in
    between (same size) makes a server that checks Content-MD5 refuse the part, and the
    upload ends as SourceChanged, aborted, with nothing stored."""
    src = make_source(tmp_path, 12 * MiB)
    dest, key, journal = destination(s3_server, part_concurrency=1), new_key(), MemoryJournal()
    rewritten: list[str] = []

    def rewrite_before_part_two(request: Any, **_: Any) -> None:
        if "partNumber=2" in request.url and not rewritten:
            with src.path.open("r+b") as f:
                f.seek(6 * MiB)
                f.write(b"\xff" * 4096)
            rewritten.append(journal.upload[0] if journal.upload else "")

    dest.client.meta.events.register("before-send.s3.UploadPart", rewrite_before_part_two)
    numbers = sent_parts(dest)
    with pytest.raises(SourceChanged, match="changed since it was hashed"):
        put(dest, src, key, journal)
    if s3_server.kind != "moto":  # rclone and SeaweedFS verify Content-MD5 on UploadPart;
        assert numbers == [1, 2]  # moto does not, so there it is found at Complete instead
    assert rewritten and journal.upload is None and dest.lookup(key) is None
    with pytest.raises(ClientError, match="NoSuchUpload"):
        s3_server.client().list_parts(Bucket=s3_server.bucket, Key=key, UploadId=rewritten[0])


def test_source_changed_before_a_single_put(s3_server: S3Server, tmp_path: Path) -> None:
    src = make_source(tmp_path, 100)
    src.path.write_bytes(b"other content")
    with pytest.raises(SourceChanged):
        put(destination(s3_server), src, new_key())


def with_intake_md5(src: SourceFile) -> SourceFile:
    """``src`` as intake hands a small file to the lane: MD5 taken with the fingerprint."""
    md5 = hashlib.md5(src.path.read_bytes(), usedforsecurity=False).hexdigest()
    return dataclasses.replace(src, md5=md5)


@pytest.mark.parametrize("checksum", ["md5", "sha256", "none"])
def test_a_small_put_sends_the_fingerprints_own_checksums_and_hashes_nothing(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checksum: str
) -> None:
    src = with_intake_md5(make_source(tmp_path, 1000))
    dest, key = destination(s3_server, checksum=checksum), new_key()
    sent: dict[str, str] = {}

    def capture(request: Any, **_: Any) -> None:
        sent.update(
            {
                k.lower(): v.decode() if isinstance(v, bytes) else v
                for k, v in request.headers.items()
            }
        )

    dest.client.meta.events.register("before-send.s3.PutObject", capture)

    def no_hashing(*_: Any, **__: Any) -> Any:
        raise AssertionError("the upload hashed the body again")

    monkeypatch.setattr("ingestd.destinations.s3.destination.hashlib.md5", no_hashing)
    monkeypatch.setattr("ingestd.destinations.s3.destination.hashlib.sha256", no_hashing)
    put(dest, src, key)
    assert stored_bytes(s3_server, key) == src.path.read_bytes()
    assert src.md5 is not None
    if checksum == "md5":
        assert sent["content-md5"] == base64.b64encode(bytes.fromhex(src.md5)).decode()
    if checksum == "sha256":
        assert sent["x-amz-checksum-sha256"] == base64.b64encode(bytes.fromhex(src.sha256)).decode()


@pytest.mark.parametrize("checksum", ["md5", "sha256", "none"])
def test_a_small_file_rewritten_in_place_since_its_fingerprint_is_a_changed_source(
    s3_server: S3Server, tmp_path: Path, checksum: str
) -> None:
    """Same size, same mtime, other bytes: the server refuses the fingerprint's Content-MD5
    (md5) or SHA-256 (sha256, where it checks one), or stores the bytes under another ETag
    (none, or a server that ignores the SHA-256), which is then deleted. Either way the file
    goes back to intake as changed and nothing is left under the key."""
    src = with_intake_md5(make_source(tmp_path, 1000))
    rewrite_in_place(src.path)
    dest, key = destination(s3_server, checksum=checksum), new_key()
    with pytest.raises(SourceChanged, match="changed since it was fingerprinted"):
        put(dest, src, key)
    assert dest.lookup(key) is None


def test_a_large_file_rewritten_in_place_since_it_was_hashed_is_a_changed_source(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """Parts are hashed as they go, so no part's MD5 can tell the bytes from those the SHA-256
    was taken of; the ctime recorded with the fingerprint does: the upload stops before its
    first part and nothing is left on the server."""
    src = make_source(tmp_path, 11 * MiB)
    src = dataclasses.replace(src, ctime_ns=src.path.stat().st_ctime_ns)
    rewrite_in_place(src.path, offset=7 * MiB)
    dest, key, journal = destination(s3_server), new_key(), MemoryJournal()
    numbers = sent_parts(dest)
    with pytest.raises(SourceChanged, match="ctime"):
        put(dest, src, key, journal)
    assert numbers == [] and journal.upload is None and dest.lookup(key) is None


def test_empty_file(s3_server: S3Server, tmp_path: Path) -> None:
    dest, key = destination(s3_server, multipart_threshold=0), new_key()
    result = put(dest, make_source(tmp_path, 0), key)
    assert (result.size, result.parts) == (0, 0)
    assert stored_bytes(s3_server, key) == b""


@pytest.mark.parametrize("checksum", ["sha256", "none"])
def test_other_checksum_settings(s3_server: S3Server, tmp_path: Path, checksum: str) -> None:
    dest = destination(s3_server, checksum=checksum)
    for size in (1000, 11 * MiB):
        src, key = make_source(tmp_path, size, name=f"f{size}"), new_key()
        put(dest, src, key)
        assert stored_bytes(s3_server, key) == src.path.read_bytes()


def test_network_cut_mid_upload_then_resume(s3_server: S3Server, tmp_path: Path) -> None:
    src = make_source(tmp_path, 16 * MiB)
    key, journal = new_key(), MemoryJournal()
    with TcpProxy(target_port=s3_server.port) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}"
        dest = destination(s3_server, endpoint_url=endpoint, part_concurrency=1)
        with pytest.raises(DestinationDown):
            put(dest, src, key, journal, lambda n: proxy.cut())
        assert sorted(journal.parts) == [1]
        proxy.restore()
        numbers = sent_parts(dest)  # the same instance carries on once the link is back
        result = put(dest, src, key, journal)
    assert numbers == [2, 3, 4]
    assert result.bytes_sent == 16 * MiB - 5 * MiB
    assert stored_bytes(s3_server, key) == src.path.read_bytes()


def test_a_rate_limited_link_is_slow_but_delivers(s3_server: S3Server, tmp_path: Path) -> None:
    """The proxy's slow uplink (used by the e2e tests) paces uploads and loses nothing."""
    src, key = make_source(tmp_path, 6 * MiB), new_key()
    with TcpProxy(target_port=s3_server.port) as proxy:
        proxy.rate_limit(8 * MiB)
        dest = destination(s3_server, endpoint_url=f"http://127.0.0.1:{proxy.port}")
        started = time.monotonic()
        put(dest, src, key)
        elapsed = time.monotonic() - started
        proxy.rate_limit(None)
    assert elapsed >= 6 / 8 * 0.9
    assert proxy.bytes_up >= 6 * MiB
    assert stored_bytes(s3_server, key) == src.path.read_bytes()


def test_a_part_slower_than_read_timeout_still_goes_up(s3_server: S3Server, tmp_path: Path) -> None:
    """read_timeout catches a stalled link, not a slow one: a 5 MiB part at 2 MiB/s takes
    2.5 s and survives a 1 s read timeout (bodies go out in blocks, and TCP_NOTSENT_LOWAT
    keeps megabytes from waiting in the socket buffer after the last block)."""
    big, small = make_source(tmp_path, 6 * MiB), make_source(tmp_path, 3 * MiB, name="small")
    key = new_key()
    with TcpProxy(target_port=s3_server.port) as proxy:
        proxy.rate_limit(2 * MiB)
        endpoint = f"http://127.0.0.1:{proxy.port}"
        dest = destination(s3_server, endpoint_url=endpoint, part_concurrency=1, read_timeout=1.0)
        put(dest, big, key)
        put(dest, small, key + ".single")
    assert stored_bytes(s3_server, key) == big.path.read_bytes()
    assert stored_bytes(s3_server, key + ".single") == small.path.read_bytes()


def test_rclone_verifies_content_md5_but_not_crc32(rclone_s3: S3Server) -> None:
    """Why ``checksum = "md5"`` is the default (README, Integrity): ``rclone serve s3`` refuses
    a body whose Content-MD5 is wrong, and stores one whose x-amz-checksum-crc32 is wrong. If
    this ever changes, the cheaper CRC check becomes worth offering as the default."""
    client = rclone_s3.client(
        request_checksum_calculation="when_required", response_checksum_validation="when_required"
    )
    body = b"hello world" * 1000
    wrong_md5 = base64.b64encode(hashlib.md5(b"x", usedforsecurity=False).digest()).decode()
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=rclone_s3.bucket, Key=new_key(), Body=body, ContentMD5=wrong_md5)
    assert refused.value.response["Error"]["Code"] == "BadDigest"
    wrong_crc = base64.b64encode(zlib.crc32(b"x").to_bytes(4, "big")).decode()
    key = new_key()
    client.put_object(Bucket=rclone_s3.bucket, Key=key, Body=body, ChecksumCRC32=wrong_crc)
    stored = client.get_object(Bucket=rclone_s3.bucket, Key=key)["Body"].read()
    assert stored == body  # stored despite the wrong CRC: that header protects nothing here


# ------------------------------------------------- hashed during the upload (hash_while_uploading)


def unhashed(src: SourceFile) -> SourceFile:
    """``src`` as the lane hands over a file queued unhashed (hash_policy.py)."""
    return dataclasses.replace(src, sha256=None)


def uploads_under(server: S3Server, key: str) -> list[str]:
    found = server.client().list_multipart_uploads(Bucket=server.bucket, Prefix=key)
    return [u["UploadId"] for u in found.get("Uploads", []) if u["Key"] == key]


def test_a_source_is_hashed_beside_its_parts_and_recorded_before_complete(
    s3_server: S3Server, tmp_path: Path
) -> None:
    src = make_source(tmp_path, 12 * MiB)
    dest = destination(s3_server, hash_while_uploading=True)
    key, journal = new_key(), MemoryJournal()
    assert dest.hashes_while_sending(src.size) and not dest.hashes_while_sending(5 * MiB - 1)
    order: list[str] = []
    completes = calls(dest, "CompleteMultipartUpload", "UploadId")
    journal_hashed = journal.content_hashed

    def hashed(sha256: str) -> None:
        order.append(f"hashed, {len(completes)} completes")
        journal_hashed(sha256)

    journal.content_hashed = hashed  # type: ignore[method-assign]
    result = put(dest, unhashed(src), key, journal)
    assert journal.hashed == [src.sha256]
    assert order == ["hashed, 0 completes"]  # the digest is recorded before the object exists
    assert (result.parts, result.bytes_sent) == (3, 12 * MiB)
    assert stored_bytes(s3_server, key) == src.path.read_bytes()
    # The upload began before the digest was known: the object cannot carry it.
    meta = s3_server.client().head_object(Bucket=s3_server.bucket, Key=key)["Metadata"]
    assert "sha256" not in meta
    assert dest.content_sha256(key) == src.sha256


def test_a_duplicate_found_before_complete_is_aborted_and_stores_nothing(
    s3_server: S3Server, tmp_path: Path
) -> None:
    src = make_source(tmp_path, 12 * MiB)
    dest = destination(s3_server, hash_while_uploading=True)
    key, journal = new_key(), MemoryJournal()
    assert src.sha256 is not None
    journal.held[src.sha256] = 3
    completes = calls(dest, "CompleteMultipartUpload", "UploadId")
    with pytest.raises(DuplicateContent, match="same content as file 3"):
        put(dest, unhashed(src), key, journal)
    assert completes == [] and dest.lookup(key) is None
    assert uploads_under(s3_server, key) == []  # aborted, not left for the sweep
    assert journal.upload is None and journal.forgotten == 1


def test_a_resumed_upload_hashes_the_whole_file_and_sends_only_missing_parts(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """Killed after two parts: the digest of a file hashed during its upload is of every byte,
    the parts kept from before the crash too (they are read again, not sent again)."""
    src = make_source(tmp_path, 12 * MiB)
    key, journal = new_key(), MemoryJournal()
    first = destination(s3_server, part_concurrency=1, hash_while_uploading=True)
    with pytest.raises(Crash):
        put(first, unhashed(src), key, journal, crash_after(2))
    assert journal.hashed == [] and sorted(journal.parts) == [1, 2]

    fresh = destination(s3_server, hash_while_uploading=True)
    numbers = sent_parts(fresh)
    result = put(fresh, unhashed(src), key, journal)
    assert numbers == [3] and result.bytes_sent == 2 * MiB
    assert journal.hashed == [src.sha256]
    assert stored_bytes(s3_server, key) == src.path.read_bytes()


def test_a_source_changed_while_hashed_during_its_upload_is_abandoned(
    s3_server: S3Server, tmp_path: Path
) -> None:
    src = make_source(tmp_path, 12 * MiB)
    src = dataclasses.replace(src, ctime_ns=src.path.stat().st_ctime_ns)
    dest = destination(s3_server, part_concurrency=1, hash_while_uploading=True)
    key, journal = new_key(), MemoryJournal()

    def rewrite_after_last_part(_: int) -> None:
        if len(journal.parts) == 3:
            rewrite_in_place(src.path, offset=0)

    with pytest.raises(SourceChanged):
        put(dest, unhashed(src), key, journal, rewrite_after_last_part)
    assert journal.hashed == []  # no digest of changed bytes was recorded
    assert dest.lookup(key) is None and uploads_under(s3_server, key) == []


def test_parts_are_not_md5_hashed_when_nothing_checks_the_md5(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """checksum = "none" with verify_etag = false: no MD5 per part (1.2 s of CPU per GiB
    saved). Resumed later with the defaults, the parts kept without an MD5 give no ETag
    proof, so the size is checked by HEAD instead of the object being refused."""
    src = make_source(tmp_path, 12 * MiB)
    key, journal = new_key(), MemoryJournal()
    bare = destination(s3_server, part_concurrency=1, checksum="none", verify_etag=False)
    sent: list[dict[str, Any]] = []
    bare.client.meta.events.register(
        "before-parameter-build.s3.UploadPart", lambda params, **_: sent.append(dict(params))
    )
    with pytest.raises(Crash):
        put(bare, src, key, journal, crash_after(2))
    assert len(sent) == 2 and all("ContentMD5" not in p for p in sent)
    assert [p.md5_hex for p in journal.parts.values()] == ["", ""]

    checked = destination(s3_server)
    heads = calls(checked, "HeadObject")
    put(checked, src, key, journal)
    assert stored_bytes(s3_server, key) == src.path.read_bytes()
    assert heads == [key]
