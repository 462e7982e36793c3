"""``hash_while_uploading`` with the real ``ingestd run``: large files queued unhashed, their
SHA-256 taken beside the parts. Copies are still stored once (the second found a duplicate
before Complete, its upload aborted), and a kill -9 in the middle of such an upload resumes
it under its UploadId with a digest of every byte."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.harness import (
    Ingestd,
    bucket_objects,
    catalog_scalar,
    inbox_toml,
    multipart_uploads,
    random_file,
    s3_destination_toml,
)
from tests.servers.proxy import TcpProxy
from tests.servers.s3 import S3Server

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024
PART_MIB = 5


def _daemon(
    tmp_path: Path, server: S3Server, bucket: str, endpoint: str, **extra: object
) -> Ingestd:
    return Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(
            server,
            bucket=bucket,
            endpoint=endpoint,
            part_size_mib=PART_MIB,
            part_concurrency=2,
            multipart_threshold_mib=PART_MIB,
            hash_while_uploading=True,
            read_timeout_seconds=30.0,
            **extra,
        ),
        inboxes=[inbox_toml("big", tmp_path / "inbox", settle_seconds=0.2, max_size_mib=1024)],
    )


def _rows(daemon: Ingestd) -> dict[str, tuple[str, str | None, int | None]]:
    with sqlite3.connect(daemon.state_dir / "catalog.db", timeout=30) as conn:
        rows = conn.execute("SELECT relpath, state, sha256, original_id FROM files")
        return {str(p): (str(s), h, o) for p, s, h, o in rows}


def test_copies_hashed_during_their_uploads_are_stored_once(
    tmp_path: Path, seaweedfs_s3: S3Server
) -> None:
    bucket = seaweedfs_s3.create_bucket()
    stage, inbox = tmp_path / "stage", tmp_path / "inbox"
    stage.mkdir()
    inbox.mkdir()
    shas = {
        "a.bin": random_file(stage / "a.bin", 12 * MIB),
        "other.bin": random_file(stage / "other.bin", 12 * MIB),
        "small.bin": random_file(stage / "small.bin", 1 * MIB),
    }
    shutil.copyfile(stage / "a.bin", stage / "copy.bin")
    shas["copy.bin"] = shas["a.bin"]
    # Two at once: both copies in flight together, the first digest recorded wins.
    daemon = _daemon(tmp_path, seaweedfs_s3, bucket, seaweedfs_s3.endpoint_url, transfers=2)
    with daemon:
        daemon.start()
        for name in shas:
            os.rename(stage / name, inbox / name)
        counts = daemon.wait_idle(expected_total=4, timeout=120)
        daemon.wait_for(
            lambda: catalog_scalar(daemon, "SELECT count(*) FROM files WHERE post_done = 0") == 0,
            timeout=60,
            what="post-actions done",
        )
        rows = _rows(daemon)
        log = daemon.log.read_text(errors="replace")
        daemon.stop()
    assert (counts["uploaded"], counts["duplicate"]) == (3, 1), counts
    assert {name: sha for name, (_, sha, _) in rows.items()} == shas  # every digest recorded
    (dup_name,) = [n for n, (state, _, _) in rows.items() if state == "duplicate"]
    assert dup_name in ("a.bin", "copy.bin")
    objects = bucket_objects(seaweedfs_s3, bucket)
    assert sorted(o["sha256"] for o in objects.values()) == sorted(set(shas.values()))
    assert multipart_uploads(seaweedfs_s3, bucket) == [], "the duplicate's upload was aborted"
    assert "found during its upload; upload aborted" in log


def test_kill9_during_an_upload_hashed_beside_its_parts_resumes_it(
    tmp_path: Path, rclone_s3: S3Server
) -> None:
    bucket = rclone_s3.create_bucket()
    size = 40 * MIB
    stage, inbox = tmp_path / "stage", tmp_path / "inbox"
    stage.mkdir()
    inbox.mkdir()
    sha = random_file(stage / "scan.bin", size)
    with TcpProxy(target_port=rclone_s3.port) as proxy:
        proxy.rate_limit(4 * MIB)  # ten seconds at the least
        daemon = _daemon(tmp_path, rclone_s3, bucket, f"http://127.0.0.1:{proxy.port}")
        with daemon:
            daemon.start()
            os.rename(stage / "scan.bin", inbox / "scan.bin")
            daemon.wait_for(
                lambda: catalog_scalar(daemon, "SELECT count(*) FROM parts") >= 2,
                timeout=60,
                what="two parts acknowledged",
                interval=0.05,
            )
            daemon.kill9()
            unhashed = catalog_scalar(daemon, "SELECT count(*) FROM files WHERE sha256 IS NULL")
            kept = catalog_scalar(daemon, "SELECT count(*) FROM parts")
            proxy.rate_limit(None)
            daemon.start()
            counts = daemon.wait_idle(expected_total=1, timeout=120)
            starts = catalog_scalar(
                daemon, "SELECT count(*) FROM events WHERE code = 'multipart_started'"
            )
            hashed = catalog_scalar(daemon, "SELECT count(*) FROM events WHERE code = 'hashed'")
            rows = _rows(daemon)
            daemon.stop()
    assert unhashed == 1, "killed before the digest was taken"
    assert counts["uploaded"] == 1, counts
    assert starts == 1, "resumed under its UploadId, not started again"
    assert hashed == 1 and rows["scan.bin"][1] == sha
    objects = bucket_objects(rclone_s3, bucket)
    assert [o["sha256"] for o in objects.values()] == [sha]
    assert multipart_uploads(rclone_s3, bucket) == []
    resent = proxy.bytes_up - size
    assert resent <= 3 * PART_MIB * MIB + MIB, f"{resent / MIB:.1f} MiB sent twice ({kept} kept)"
