"""``transfers = N``: several files of one destination in flight at once, with the real
``ingestd run`` process against rclone serve s3 behind a slowed link.

A kill -9 with four multipart uploads in flight resumes each under its own UploadId (none is
started again, none is sent twice), and a cancel stops only the file it names.
"""

from __future__ import annotations

import os
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
CONCURRENCY = 2
FILES = 4
SIZE = 40 * MIB


def _daemon(tmp_path: Path, server: S3Server, bucket: str, proxy: TcpProxy) -> Ingestd:
    return Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(
            server,
            bucket=bucket,
            endpoint=f"http://127.0.0.1:{proxy.port}",
            part_size_mib=PART_MIB,
            part_concurrency=CONCURRENCY,
            multipart_threshold_mib=PART_MIB,
            transfers=FILES,
            read_timeout_seconds=30.0,
        ),
        inboxes=[inbox_toml("big", tmp_path / "inbox", settle_seconds=0.2, max_size_mib=1024)],
    )


def _drop_files(tmp_path: Path, n: int) -> dict[str, str]:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    shas = {}
    for i in range(n):
        stage = tmp_path / f"f{i}.bin"
        shas[f"f{i}.bin"] = random_file(stage, SIZE)
        os.rename(stage, inbox / f"f{i}.bin")
    return shas


def _upload_ids(daemon: Ingestd) -> dict[int, str]:
    with sqlite3.connect(daemon.state_dir / "catalog.db", timeout=30) as conn:
        rows = conn.execute("SELECT id, upload_id FROM files WHERE upload_id IS NOT NULL")
        return {int(i): str(u) for i, u in rows}


def test_kill9_with_four_uploads_in_flight_resumes_each(
    tmp_path: Path, rclone_s3: S3Server
) -> None:
    bucket = rclone_s3.create_bucket()
    with TcpProxy(target_port=rclone_s3.port) as proxy:
        proxy.rate_limit(16 * MIB)  # four 40 MiB files: ten seconds at the least
        daemon = _daemon(tmp_path, rclone_s3, bucket, proxy)
        with daemon:
            daemon.start()
            shas = _drop_files(tmp_path, FILES)
            daemon.wait_for(
                lambda: (
                    catalog_scalar(daemon, "SELECT count(DISTINCT file_id) FROM parts") >= FILES
                ),
                timeout=120,
                what="a part of every file acknowledged",
                interval=0.05,
            )
            in_flight = daemon.status()["destinations"]["main"]["in_flight"]
            before = _upload_ids(daemon)
            daemon.kill9()
            acknowledged = catalog_scalar(daemon, "SELECT count(*) FROM parts")
            assert acknowledged < FILES * SIZE // (PART_MIB * MIB), "finished before the kill"
            proxy.rate_limit(None)
            daemon.start()
            daemon.wait_idle(expected_total=FILES, timeout=300)
            counts = daemon.status()["counts"]
            starts = catalog_scalar(
                daemon, "SELECT count(*) FROM events WHERE code = 'multipart_started'"
            )
            resumed = catalog_scalar(daemon, "SELECT count(*) FROM events WHERE code = 'resumed'")
    assert len(in_flight) == FILES, in_flight
    assert len(before) == FILES, "each file in flight had its own multipart upload"
    assert counts["uploaded"] == FILES, counts
    assert starts == FILES, "the restart resumed the recorded uploads, it started none anew"
    assert resumed == FILES
    objects = bucket_objects(rclone_s3, bucket)
    assert sorted(o["sha256"] for o in objects.values()) == sorted(shas.values())
    assert len(objects) == FILES, "every file stored once"
    assert multipart_uploads(rclone_s3, bucket) == [], "no multipart upload left open"
    resent = proxy.bytes_up - FILES * SIZE
    # Each upload may lose what was in flight at the kill: its parts in flight and one more.
    assert resent <= FILES * ((CONCURRENCY + 1) * PART_MIB * MIB + MIB), (
        f"{resent / MIB:.1f} MiB sent twice ({acknowledged} parts recorded at the kill)"
    )


def test_cancel_stops_one_of_the_files_in_flight(tmp_path: Path, rclone_s3: S3Server) -> None:
    bucket = rclone_s3.create_bucket()
    with TcpProxy(target_port=rclone_s3.port) as proxy:
        proxy.rate_limit(12 * MIB)
        daemon = _daemon(tmp_path, rclone_s3, bucket, proxy)
        with daemon:
            daemon.start()
            shas = _drop_files(tmp_path, 3)
            flying = daemon.wait_for(
                lambda: (
                    f
                    if len(f := daemon.status()["destinations"]["main"]["in_flight"]) == 3
                    else None
                ),
                timeout=120,
                what="three files in flight",
                interval=0.1,
            )
            victim = flying[1]
            daemon.cli("cancel", str(victim["id"]))
            # The link stays slow until the cancel is applied: the command only commits the
            # request, and at full speed the victim could finish before the lane reads it.
            daemon.wait_for(
                lambda: any(
                    f["id"] == victim["id"] and f["state"] == "cancelled" for f in daemon.files()
                ),
                timeout=120,
                what="the victim cancelled",
            )
            proxy.rate_limit(None)
            daemon.wait_idle(expected_total=3, timeout=300)
            states = {f["path"]: f["state"] for f in daemon.files()}
    assert states.pop(victim["path"]) == "cancelled"
    assert set(states.values()) == {"uploaded"}
    objects = bucket_objects(rclone_s3, bucket)
    assert sorted(o["sha256"] for o in objects.values()) == sorted(
        sha for name, sha in shas.items() if name != victim["path"]
    )
    assert multipart_uploads(rclone_s3, bucket) == [], "the cancelled upload was aborted"


def test_files_with_one_key_in_flight_together_never_overwrite_each_other(
    tmp_path: Path, rclone_s3: S3Server
) -> None:
    """rclone serve s3 ignores If-None-Match, so the key check is a HEAD: four files whose
    names render the same key, uploaded at once, must still end under four keys, each with
    its own bytes (a HEAD alone would let the second PUT overwrite the first)."""
    bucket = rclone_s3.create_bucket()
    inbox = tmp_path / "inbox"
    shas = {}
    for folder in "abcd":
        (inbox / folder).mkdir(parents=True)
        shas[folder] = random_file(inbox / folder / "scan.bin", 6 * MIB)
    with TcpProxy(target_port=rclone_s3.port) as proxy:
        proxy.rate_limit(8 * MIB)  # every upload takes seconds: they overlap
        daemon = Ingestd(
            tmp_path / "d",
            destination=s3_destination_toml(
                rclone_s3,
                bucket=bucket,
                endpoint=f"http://127.0.0.1:{proxy.port}",
                key_template="{name}",
                transfers=4,
                multipart_threshold_mib=16,
                read_timeout_seconds=30.0,
            ),
            inboxes=[inbox_toml("in", inbox, settle_seconds=0.2, on_success="keep")],
        )
        with daemon:
            daemon.start()
            daemon.wait_idle(expected_total=4, timeout=180)
            states = {f["path"]: (f["state"], f["key"]) for f in daemon.files()}
    objects = bucket_objects(rclone_s3, bucket)
    assert sorted(objects) == ["scan-1.bin", "scan-2.bin", "scan-3.bin", "scan.bin"], objects
    assert sorted(o["sha256"] for o in objects.values()) == sorted(shas.values())
    for folder, sha in shas.items():
        state, key = states[f"{folder}/scan.bin"]
        assert state == "uploaded"
        assert objects[key]["sha256"] == sha, (folder, key)
