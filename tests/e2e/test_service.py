"""Running as a service: SIGTERM mid-upload, a second signal, SIGHUP reloads (good and bad),
with the real ``ingestd run`` process against real S3 servers."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests import samples
from tests.e2e.harness import (
    Ingestd,
    bucket_objects,
    inbox_toml,
    random_file,
    s3_destination_toml,
)
from tests.servers.proxy import TcpProxy
from tests.servers.s3 import S3Server

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024
PART_MIB = 5
CONCURRENCY = 4
STOP_TIMEOUT = 15.0


def query(daemon: Ingestd, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the daemon's SQLite catalog (read while the daemon may write)."""
    conn = sqlite3.connect(daemon.state_dir / "catalog.db", timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def scalar(daemon: Ingestd, sql: str, *args: Any) -> int:
    return int(query(daemon, sql, *args)[0][0])


def big_upload_daemon(
    tmp_path: Path, server: S3Server, proxy: TcpProxy, bucket: str, **dest: Any
) -> tuple[Ingestd, Path]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    daemon = Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(
            server,
            bucket=bucket,
            endpoint=f"http://127.0.0.1:{proxy.port}",
            part_size_mib=PART_MIB,
            part_concurrency=CONCURRENCY,
            multipart_threshold_mib=PART_MIB,
            **dest,
        ),
        inboxes=[inbox_toml("big", inbox, settle_seconds=0.3, max_size_mib=1024)],
        top={"stop_timeout_seconds": STOP_TIMEOUT},
    )
    return daemon, inbox


def drop_big_file(tmp_path: Path, inbox: Path, size: int) -> str:
    stage = tmp_path / "big.bin"
    sha = random_file(stage, size)
    os.rename(stage, inbox / "big.bin")
    return sha


def wait_parts(daemon: Ingestd, count: int) -> None:
    daemon.wait_for(
        lambda: scalar(daemon, "SELECT count(*) FROM parts") >= count,
        timeout=60,
        what=f"{count} parts acknowledged",
        interval=0.05,
    )


def test_sigterm_mid_multipart_exits_cleanly_and_resumes(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """SIGTERM during a multipart upload: the parts in flight finish, the process exits 0 within
    stop_timeout_seconds, the file is back in the queue with its parts journalled, and the
    next start sends only the missing parts of the same upload."""
    bucket = s3_server.create_bucket()
    size = 120 * MIB
    total_parts = size // (PART_MIB * MIB)
    with TcpProxy(target_port=s3_server.port) as proxy:
        daemon, inbox = big_upload_daemon(tmp_path, s3_server, proxy, bucket)
        with daemon:
            daemon.start()
            proxy.rate_limit(20 * MIB)  # ~6 s for the whole file: SIGTERM lands mid-upload
            sha = drop_big_file(tmp_path, inbox, size)
            wait_parts(daemon, 3)
            assert daemon.process is not None
            signalled = time.monotonic()
            code = daemon.stop(signal.SIGTERM, timeout=STOP_TIMEOUT + 30)
            stop_seconds = time.monotonic() - signalled

            state, upload_id, key = query(daemon, "SELECT state, upload_id, key FROM files")[0]
            recorded = query(daemon, "SELECT part_number, size, upload_id FROM parts")
            recorded_bytes = sum(r[1] for r in recorded)
            sent_before = proxy.bytes_up

            proxy.rate_limit(None)
            daemon.start()
            counts = daemon.wait_idle(expected_total=1, timeout=90)
            sent_after = proxy.bytes_up - sent_before
            starts = scalar(daemon, "SELECT count(*) FROM events WHERE code = 'multipart_started'")
            assert daemon.stop() == 0
    log = daemon.log.read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert stop_seconds < STOP_TIMEOUT + 10, stop_seconds
    assert state == "queued", (state, log[-3000:])
    assert upload_id is not None and key is not None
    assert 3 <= len(recorded) < total_parts, "the upload must be cut, not finished"
    assert {r[2] for r in recorded} == {upload_id}
    assert all(r[1] == PART_MIB * MIB for r in recorded)
    assert counts["uploaded"] == 1, counts
    assert starts == 1, "the restart must resume the recorded upload, not start a new one"
    missing = size - recorded_bytes
    # A clean stop journals every part that finished: nothing is sent twice. The slack is
    # one part, far more than the HTTP headers and ListParts/HEAD requests weigh.
    assert missing <= sent_after <= missing + PART_MIB * MIB, (
        f"{sent_after / MIB:.1f} MiB sent after the restart; "
        f"{missing / MIB:.1f} MiB were missing ({len(recorded)} parts recorded)"
    )
    objects = bucket_objects(s3_server, bucket)
    assert list(objects) == [key]
    assert objects[key]["sha256"] == sha
    assert objects[key]["size"] == size


def test_second_signal_exits_at_once_and_next_start_completes(
    tmp_path: Path, rclone_s3: S3Server
) -> None:
    """A second signal while the first one waits for parts in flight ends the process at
    once; the catalog is still consistent and the next start completes the file."""
    bucket = rclone_s3.create_bucket()
    size = 60 * MIB
    with TcpProxy(target_port=rclone_s3.port) as proxy:
        # A long read timeout: frozen parts keep the stop waiting instead of failing fast.
        daemon, inbox = big_upload_daemon(
            tmp_path, rclone_s3, proxy, bucket, read_timeout_seconds=60.0
        )
        with daemon:
            daemon.start()
            proxy.rate_limit(10 * MIB)
            sha = drop_big_file(tmp_path, inbox, size)
            wait_parts(daemon, 2)
            proxy.cut("blackhole")  # the parts in flight can no longer finish
            assert daemon.process is not None
            daemon.process.send_signal(signal.SIGTERM)
            time.sleep(1.5)
            assert daemon.alive(), "the first signal must wait for the parts in flight"
            signalled = time.monotonic()
            daemon.process.send_signal(signal.SIGINT)
            daemon.process.wait(timeout=10)
            second_stop = time.monotonic() - signalled
            daemon.process = None
            recorded = scalar(daemon, "SELECT count(*) FROM parts")
            integrity = query(daemon, "PRAGMA integrity_check")[0][0]
            left_in = query(daemon, "SELECT state FROM files")[0][0]

            proxy.restore()
            proxy.rate_limit(None)
            daemon.start()
            counts = daemon.wait_idle(expected_total=1, timeout=90)
            starts = scalar(daemon, "SELECT count(*) FROM events WHERE code = 'multipart_started'")
            assert daemon.stop() == 0
    assert second_stop < 5, f"the second signal took {second_stop:.1f}s to end the process"
    assert recorded >= 2
    assert integrity == "ok"
    assert left_in in ("uploading", "queued"), left_in
    assert counts["uploaded"] == 1, counts
    assert counts["failed"] == 0, counts
    assert starts == 1, "the restart must resume the recorded upload"
    objects = bucket_objects(rclone_s3, bucket)
    assert [o["sha256"] for o in objects.values()] == [sha]


def test_sighup_during_an_upload_does_not_interrupt_it(tmp_path: Path, rclone_s3: S3Server) -> None:
    """A reload while a multipart upload runs: the upload goes on, nothing is sent twice."""
    bucket = rclone_s3.create_bucket()
    size = 60 * MIB
    with TcpProxy(target_port=rclone_s3.port) as proxy:
        daemon, inbox = big_upload_daemon(tmp_path, rclone_s3, proxy, bucket)
        with daemon:
            daemon.start()
            proxy.rate_limit(10 * MIB)
            sha = drop_big_file(tmp_path, inbox, size)
            wait_parts(daemon, 2)
            write_config(
                daemon,
                daemon.config.read_text().replace(
                    "cooldown_seconds = 0.0", "cooldown_seconds = 0.5"
                ),
            )
            reload(daemon, "configuration reloaded")
            during = query(daemon, "SELECT state FROM files")[0][0]
            proxy.rate_limit(None)
            counts = daemon.wait_idle(expected_total=1, timeout=60)
            codes = [c for (c,) in query(daemon, "SELECT code FROM events ORDER BY id")]
            assert daemon.stop() == 0
    assert during == "uploading"
    assert counts["uploaded"] == 1, counts
    assert codes.count("multipart_started") == 1, codes
    assert "interrupted" not in codes and "resumed" not in codes, codes
    assert proxy.bytes_up <= size + PART_MIB * MIB, f"{proxy.bytes_up / MIB:.1f} MiB sent"
    assert [o["sha256"] for o in bucket_objects(rclone_s3, bucket).values()] == [sha]


def write_config(daemon: Ingestd, text: str) -> None:
    """Replace the daemon's configuration file in one step (as an editor's save would)."""
    tmp = daemon.config.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, daemon.config)


def reload(daemon: Ingestd, marker: str) -> None:
    """SIGHUP, then wait until the log shows one more line containing ``marker``."""
    before = daemon.log.read_text(errors="replace").count(marker)
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for(
        lambda: daemon.log.read_text(errors="replace").count(marker) > before,
        timeout=20,
        what=f"log line {marker!r} after SIGHUP",
    )


def drop(stage: Path, inbox: Path, kind: str, seed: int) -> tuple[str, str]:
    """A sample written aside and renamed into ``inbox``: (name, sha256)."""
    path = samples.write_sample(kind, stage, seed=seed)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    os.rename(path, inbox / path.name)
    return path.name, sha


def uploaded_keys(daemon: Ingestd) -> dict[str, str]:
    """path -> key of every uploaded file."""
    return {f["path"]: f["key"] for f in daemon.files("--state", "uploaded")}


def test_sighup_adds_an_inbox_and_survives_a_broken_config(
    tmp_path: Path, rclone_s3: S3Server
) -> None:
    """SIGHUP picks up a new inbox; a broken configuration is rejected with every error in
    the log, and the daemon goes on with the configuration it had."""
    bucket = rclone_s3.create_bucket()
    first, second, stage = tmp_path / "first", tmp_path / "second", tmp_path / "stage"
    for folder in (first, second, stage):
        folder.mkdir()
    daemon = Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(rclone_s3, bucket=bucket),
        inboxes=[inbox_toml("first", first, settle_seconds=0.3)],
    )
    original = daemon.config.read_text()
    expected: dict[str, str] = {}
    with daemon:
        daemon.start()
        name, sha = drop(stage, first, "pdf", 1)
        expected[name] = sha
        daemon.wait_idle(expected_total=1, timeout=30)

        # 1. A new inbox, added by a reload.
        added = original + inbox_toml("second", second, settle_seconds=0.3)
        write_config(daemon, added)
        reload(daemon, "configuration reloaded")
        for seed in (2, 3):
            name, sha = drop(stage, second, "txt", seed)
            expected[name] = sha
        daemon.wait_idle(expected_total=3, timeout=30)
        keys = uploaded_keys(daemon)
        assert all(keys[n].startswith("second/") for n in expected if n.startswith("txt"))

        # 2. A broken configuration: two errors; it also drops the second inbox and changes
        # the key template, which must not happen since it is rejected as a whole.
        broken = "frobnicate = true\n" + original.replace(
            "cooldown_seconds = 0.0", "cooldown_seconds = -1"
        ).replace("[destinations.main]\n", '[destinations.main]\nkey_template = "b/{name}"\n')
        assert "cooldown_seconds = -1" in broken and 'key_template = "b/' in broken
        write_config(daemon, broken)
        reload(daemon, "keeping the running configuration")
        assert daemon.alive()
        # The CLI used below reads the same file: put the valid one back, without a SIGHUP.
        write_config(daemon, added)
        for inbox, kind, seed in ((first, "png", 4), (second, "json", 5)):
            name, sha = drop(stage, inbox, kind, seed)
            expected[name] = sha
        counts = daemon.wait_idle(expected_total=5, timeout=30)
        assert daemon.alive()
        keys = uploaded_keys(daemon)
        assert daemon.stop() == 0
    log = daemon.log.read_text(errors="replace")
    rejected = [line for line in log.splitlines() if "reload rejected" in line]
    config = str(daemon.config)
    assert any(config in line and "queue.cooldown_seconds" in line for line in rejected), log
    assert any(config in line and "frobnicate" in line for line in rejected), log
    assert counts["uploaded"] == 5, counts
    assert sorted(keys) == sorted(expected)
    png = next(n for n in keys if n.startswith("png"))
    json_name = next(n for n in keys if n.startswith("json"))
    assert keys[png].startswith("first/"), keys  # the old key template still applies
    assert keys[json_name].startswith("second/"), keys  # the second inbox is still watched
    objects = bucket_objects(rclone_s3, bucket)
    assert sorted(o["sha256"] for o in objects.values()) == sorted(expected.values())
