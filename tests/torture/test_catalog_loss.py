"""The catalog taken away: deleted under the running daemon, or corrupted while it was
stopped. Either way a clear error, never a daemon carrying on as if nothing happened."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from ingestd import exitcodes
from tests.e2e.harness import (
    INGESTD,
    Ingestd,
    inbox_toml,
    random_file,
    s3_destination_toml,
)
from tests.servers.s3 import S3Server
from tests.torture.conftest import Torture

pytestmark = pytest.mark.e2e


def new_daemon(tmp_path: Path, server: S3Server) -> tuple[Ingestd, Path]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    daemon = Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(server, bucket=server.create_bucket()),
        inboxes=[inbox_toml("scans", inbox, settle_seconds=0.3)],
    )
    return daemon, inbox


def start_with_files(daemon: Ingestd, inbox: Path, count: int) -> None:
    daemon.start()
    for i in range(count):
        random_file(inbox / f"a{i}.bin", 100_000)
    daemon.wait_idle(expected_total=count, timeout=60)


def test_catalog_deleted_while_running(
    tmp_path: Path, rclone_s3: S3Server, torture: Torture
) -> None:
    daemon, inbox = new_daemon(tmp_path, rclone_s3)
    with daemon:
        start_with_files(daemon, inbox, 3)
        db = daemon.state_dir / "catalog.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        deleted_at = time.monotonic()
        assert daemon.process is not None
        code = daemon.process.wait(timeout=60)
        seconds = time.monotonic() - deleted_at
        daemon.process = None
    said = "was deleted while ingestd ran" in daemon.log.read_text(errors="replace")
    torture.record(catalog_deleted_exit=code, said=said, stopped_after_s=round(seconds, 1))
    assert code == 1
    assert said


def test_catalog_corrupted_while_stopped(
    tmp_path: Path, rclone_s3: S3Server, torture: Torture
) -> None:
    daemon, inbox = new_daemon(tmp_path, rclone_s3)
    with daemon:
        start_with_files(daemon, inbox, 3)
        daemon.stop()
    db = daemon.state_dir / "catalog.db"
    with sqlite3.connect(db) as conn:  # fold the WAL in, so the damage is in what is read
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    with db.open("r+b") as fh:
        fh.seek(size // 3)
        fh.write(os.urandom(size // 3))
    damaged = db.read_bytes()
    random_file(inbox / "late.bin", 100_000)
    run = subprocess.run(
        [*INGESTD, "run", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = "malformed" in run.stdout + run.stderr
    torture.record(catalog_corrupted_exit=run.returncode, said=said)
    assert run.returncode == exitcodes.CATALOG_UNAVAILABLE
    assert said and "Traceback" not in run.stderr, run.stderr  # one line an operator can act on
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert db.read_bytes() == damaged, "the damaged catalog is left for the operator, not replaced"
    assert (inbox / "late.bin").exists(), "nothing taken in without a catalog to record it"
