"""A file queued unhashed (``hash_while_uploading``), through the lane's Upload with a real
SQLite catalog and real S3 servers: the crash windows its upload adds, each cut exactly where
a kill -9 could fall, then resumed by a fresh Upload on the row as the catalog holds it."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, update

from ingestd.catalog import db
from ingestd.catalog.repo import Catalog, FileRow
from ingestd.catalog.schema import files, fingerprints
from ingestd.config import Settings
from ingestd.destinations.factory import build_destination
from ingestd.destinations.s3.destination import S3Destination
from ingestd.errors import DuplicateContent, SourceChanged
from ingestd.pipeline.lane.upload import Upload, planned_key
from ingestd.states import FileState
from tests.servers.s3 import KINDS, S3Server

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
SIZE = 12 * MIB


class Crash(Exception):
    """Stands in for the process dying at the request it is raised from."""


@pytest.fixture(params=KINDS)
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    server: S3Server = request.getfixturevalue(f"{request.param}_s3")
    return server


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield cat
    cat.close()


def settings_for(tmp_path: Path, server: S3Server, prefix: str, **extra: Any) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        destinations={
            "main": {
                "type": "s3",
                "bucket": server.bucket,
                "endpoint_url": server.endpoint_url,
                "addressing_style": "path",
                "access_key_id": server.key,
                "secret_access_key": server.secret,
                "prefix": prefix,
                "part_size_mib": 5,
                "multipart_threshold_mib": 5,
                "part_concurrency": 1,
                "hash_while_uploading": True,
                **extra,
            }
        },
        inboxes=[{"name": "big", "path": str(tmp_path / "inbox"), "destination": "main"}],
    )


def queued_unhashed(catalog: Catalog, path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    st = path.stat()
    seen = catalog.observe(
        inbox="big", relpath=path.name, source_path=str(path), size=st.st_size,
        mtime_ns=st.st_mtime_ns,
    )  # fmt: skip
    queue(catalog, seen.file_id, path, sha256=None)
    return hashlib.sha256(data).hexdigest()


def queue(catalog: Catalog, file_id: int, path: Path, *, sha256: str | None) -> None:
    """Queue ``path`` as intake does with its stat now (``sha256`` None: unhashed)."""
    st = path.stat()
    catalog.queue(
        file_id,
        sha256=sha256,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        detected_type=None,
        content_type="application/octet-stream",
        destination="main",
        dedup_scope="*",
    )


def claim(catalog: Catalog, settings: Settings) -> FileRow:
    row = catalog.claim_next(
        "main",
        owner="node-1",
        lease_seconds=300,
        plan=lambda r: planned_key(r, dest_cfg=settings.destinations["main"]),
    )
    assert row is not None
    return row


def upload(catalog: Catalog, settings: Settings, dest: S3Destination) -> Upload:
    return Upload(
        catalog=catalog,
        destination=dest,
        dest_cfg=settings.destinations["main"],
        progress=lambda _n: None,
        cancel=threading.Event(),
    )


def fresh_destination(settings: Settings) -> S3Destination:
    dest = build_destination("main", settings.destinations["main"])
    assert isinstance(dest, S3Destination)
    return dest


def crash_at(dest: S3Destination, operation: str) -> None:
    def die(**_: Any) -> None:
        raise Crash(operation)

    dest.client.meta.events.register(f"before-call.s3.{operation}", die)


def counted(dest: S3Destination, operation: str) -> list[int]:
    seen: list[int] = []
    dest.client.meta.events.register(
        f"before-call.s3.{operation}", lambda **_: seen.append(1)
    )  # fmt: skip
    return seen


def data(name: str) -> bytes:
    return random.Random(name).randbytes(SIZE)


def open_uploads(server: S3Server, prefix: str) -> list[str]:
    found = server.client().list_multipart_uploads(Bucket=server.bucket, Prefix=prefix)
    return [u["Key"] for u in found.get("Uploads", [])]


def objects(server: S3Server, prefix: str) -> dict[str, str]:
    client = server.client()
    listed = client.list_objects_v2(Bucket=server.bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"]: hashlib.sha256(
            client.get_object(Bucket=server.bucket, Key=o["Key"])["Body"].read()
        ).hexdigest()
        for o in listed
    }


def test_killed_after_the_digest_was_recorded_the_resume_completes_without_resending(
    tmp_path: Path, catalog: Catalog, s3_server: S3Server, request: pytest.FixtureRequest
) -> None:
    prefix = f"hwu-{request.node.name[-12:-1]}-{random.randrange(1 << 30):x}"
    settings = settings_for(tmp_path, s3_server, prefix)
    sha = queued_unhashed(catalog, tmp_path / "inbox" / "a.bin", data("a"))
    row = claim(catalog, settings)
    first = fresh_destination(settings)
    crash_at(first, "CompleteMultipartUpload")
    with pytest.raises(Crash):
        upload(catalog, settings, first).run(row)
    recorded = catalog.get(row.id)
    assert recorded is not None and recorded.sha256 == sha and recorded.upload_id

    again = fresh_destination(settings)
    parts = counted(again, "UploadPart")
    result = upload(catalog, settings, again).run(recorded)
    assert parts == [] and result.bytes_sent == 0
    assert objects(s3_server, prefix) == {result.key: sha}
    assert open_uploads(s3_server, prefix) == []


def test_killed_after_complete_the_resume_finds_its_own_object(
    tmp_path: Path, catalog: Catalog, s3_server: S3Server, request: pytest.FixtureRequest
) -> None:
    """The object exists, without x-amz-meta-sha256, and the catalog never heard of its
    success: recognised by its content, not stored a second time under another key."""
    prefix = f"hwu-{request.node.name[-12:-1]}-{random.randrange(1 << 30):x}"
    settings = settings_for(tmp_path, s3_server, prefix)
    sha = queued_unhashed(catalog, tmp_path / "inbox" / "a.bin", data("a"))
    row = claim(catalog, settings)
    upload(catalog, settings, fresh_destination(settings)).run(row)  # ... and then killed
    recorded = catalog.get(row.id)
    assert recorded is not None and recorded.state == FileState.UPLOADING
    again = fresh_destination(settings)
    parts = counted(again, "UploadPart")
    result = upload(catalog, settings, again).run(recorded)
    assert result.reused and parts == []
    assert objects(s3_server, prefix) == {result.key: sha}


def test_a_copy_found_during_its_upload_is_a_duplicate_and_its_upload_aborted(
    tmp_path: Path, catalog: Catalog, s3_server: S3Server, request: pytest.FixtureRequest
) -> None:
    prefix = f"hwu-{request.node.name[-12:-1]}-{random.randrange(1 << 30):x}"
    settings = settings_for(tmp_path, s3_server, prefix)
    sha = queued_unhashed(catalog, tmp_path / "inbox" / "a.bin", data("same"))
    queued_unhashed(catalog, tmp_path / "inbox" / "b.bin", data("same"))
    dest = fresh_destination(settings)
    first = claim(catalog, settings)
    stored = upload(catalog, settings, dest).run(first)
    catalog.mark_uploaded(first.id, key=stored.key, seconds=1.0, bytes_sent=SIZE, detail="ok")
    second = claim(catalog, settings)
    with pytest.raises(DuplicateContent):
        upload(catalog, settings, dest).run(second)
    dup = catalog.get(second.id)
    assert dup is not None
    assert (dup.state, dup.original_id, dup.sha256) == (FileState.DUPLICATE, first.id, sha)
    assert dup.upload_id is None  # aborted, then forgotten
    assert objects(s3_server, prefix) == {stored.key: sha}
    assert open_uploads(s3_server, prefix) == []


def test_a_setting_changed_after_queueing_hashes_before_the_upload(
    tmp_path: Path, catalog: Catalog, s3_server: S3Server, request: pytest.FixtureRequest
) -> None:
    """Queued unhashed, then a reload turned hash_while_uploading off: the lane hashes it
    first, and the object carries its sha256 as every other does."""
    prefix = f"hwu-{request.node.name[-12:-1]}-{random.randrange(1 << 30):x}"
    settings = settings_for(tmp_path, s3_server, prefix)
    sha = queued_unhashed(catalog, tmp_path / "inbox" / "a.bin", data("a"))
    row = claim(catalog, settings)
    now = settings_for(tmp_path, s3_server, prefix, hash_while_uploading=False)
    dest = fresh_destination(now)
    result = upload(catalog, now, dest).run(row)
    head = s3_server.client().head_object(Bucket=s3_server.bucket, Key=result.key)
    meta = {k.lower(): v for k, v in head["Metadata"].items()}
    assert meta.get("sha256", sha) == sha  # rclone keeps no metadata on multipart objects
    got = catalog.get(row.id)
    assert got is not None and got.sha256 == sha
    assert objects(s3_server, prefix) == {result.key: sha}


def test_a_source_changed_before_its_resume_loses_the_old_upload_and_goes_up_whole(
    tmp_path: Path, catalog: Catalog, s3_server: S3Server, request: pytest.FixtureRequest
) -> None:
    """Killed after one part; the file is rewritten (same size) and a reload turns the
    setting off, so the lane hashes first and finds it changed. The recorded upload holds old
    bytes: it is aborted and forgotten, and the file taken in again goes up whole with its
    new content, never as a mix of old parts and new ones."""
    prefix = f"hwu-{request.node.name[-12:-1]}-{random.randrange(1 << 30):x}"
    settings = settings_for(tmp_path, s3_server, prefix)
    path = tmp_path / "inbox" / "a.bin"
    queued_unhashed(catalog, path, data("old"))
    row = claim(catalog, settings)
    first = fresh_destination(settings)
    crash_at(first, "CompleteMultipartUpload")
    with pytest.raises(Crash):
        upload(catalog, settings, first).run(row)
    recorded = catalog.get(row.id)
    assert recorded is not None and recorded.upload_id and recorded.sha256 is not None
    with db.write_tx(catalog.engine) as conn:  # as if killed before the digest's record
        conn.execute(update(files).where(files.c.id == row.id).values(sha256=None))
        conn.execute(delete(fingerprints))
    new = data("new")
    path.write_bytes(new)
    later = settings_for(tmp_path, s3_server, prefix, hash_while_uploading=False)
    with pytest.raises(SourceChanged):
        upload(catalog, later, fresh_destination(later)).run(catalog.get(row.id))  # type: ignore[arg-type]
    assert open_uploads(s3_server, prefix) == []
    catalog.source_changed(row.id, detail="changed")
    queue(catalog, row.id, path, sha256=hashlib.sha256(new).hexdigest())
    again = claim(catalog, later)
    assert again.upload_id is None
    result = upload(catalog, later, fresh_destination(later)).run(again)
    assert result.bytes_sent == SIZE
    assert objects(s3_server, prefix) == {result.key: hashlib.sha256(new).hexdigest()}
