"""Disks that say no: the archive fills up, the inbox turns read-only, the state_dir (the
catalog's filesystem) fills up. Small tmpfs mounts stand in for the disks. Nothing is lost,
nothing is uploaded twice, the error is said, and once space is back everything finishes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Ingestd, inbox_toml, random_file, s3_destination_toml
from tests.servers.proxy import TcpProxy
from tests.servers.s3 import S3Server
from tests.servers.s3log import S3RequestLog
from tests.torture.checks import check_bucket
from tests.torture.conftest import Torture

pytestmark = pytest.mark.e2e
Mount = Callable[[Path, str], Path]
FULL_MESSAGES = ("database or disk is full", "No space left on device", "disk I/O error")


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def tmpfs() -> Iterator[Mount]:
    """mount(path, size) -> path: a tmpfs of ``size`` (e.g. "2m") at ``path``, unmounted at
    the end. Skipped where mounting is not permitted, except under CI=true."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        done = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
        if done.returncode != 0:
            reason = f"cannot mount a tmpfs here ({done.stderr.strip()}); needs root/CAP_SYS_ADMIN"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, options: str) -> None:
    done = _mount("-o", f"remount,{options}", str(path))
    assert done.returncode == 0, done.stderr


def fill(path: Path) -> Path:
    """Write ballast into ``path`` until its filesystem is full."""
    ballast = path / "ballast"
    # Unbuffered: nothing is left to flush (and fail) when the file is closed.
    with ballast.open("wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(bytes(64 * 1024))
    return ballast


def stage(directory: Path, count: int, size: int) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    return {f"d{i:02d}.bin": random_file(directory / f"d{i:02d}.bin", size) for i in range(count)}


def daemon_for(
    tmp_path: Path, server: S3Server, proxy: TcpProxy, inbox: Path, **extra: object
) -> Ingestd:
    return Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(
            server, bucket=extra.pop("bucket"), endpoint=f"http://127.0.0.1:{proxy.port}"
        ),
        inboxes=[inbox_toml("scans", inbox, settle_seconds=0.3, **extra)],
    )


def in_inbox(inbox: Path, names: dict[str, str]) -> list[str]:
    return [n for n in names if (inbox / n).exists()]


def test_archive_full(tmp_path: Path, rclone_s3: S3Server, tmpfs: Mount, torture: Torture) -> None:
    """The archive's disk fills after a few files: every upload still happens once, the
    others' sources stay in the inbox with the error logged and no partial copy left in the
    archive; with space back (and a restart), every source is archived."""
    archive = tmpfs(tmp_path / "archive", "2m")
    bucket = rclone_s3.create_bucket()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = stage(tmp_path / "stage", 8, 400 * 1024)
    log = S3RequestLog()
    with TcpProxy(target_port=rclone_s3.port, observer=log) as proxy:
        daemon = daemon_for(tmp_path, rclone_s3, proxy, inbox, bucket=bucket, archive_dir=archive)
        with daemon:
            daemon.start()
            for name in names:
                os.rename(tmp_path / "stage" / name, inbox / name)
            daemon.wait_idle(expected_total=len(names), timeout=120)
            daemon.wait_for(
                lambda: len(in_inbox(inbox, names)) < len(names), timeout=30, what="archiving"
            )
            kept = in_inbox(inbox, names)
            partial = [p.name for p in archive.rglob(".ingestd-tmp-*")]
            said = "No space left on device" in daemon.log.read_text(errors="replace")
            remount(archive, "size=64m")
            daemon.stop()
            daemon.start()
            daemon.wait_for(
                lambda: not in_inbox(inbox, names), timeout=60, what="every source archived"
            )
            daemon.stop()
        outcome = check_bucket(daemon, rclone_s3, names, log, bucket=bucket)
    archived = sorted(p.name for p in archive.rglob("*.bin"))
    torture.record(
        files=len(names),
        kept_while_full=len(kept),
        partial_copies=len(partial),
        enospc_logged=said,
        archived=len(archived),
        **outcome.figures(),
    )
    assert kept, "the archive was expected to fill up"
    assert said
    assert partial == []
    assert archived == sorted(names)
    assert outcome.lost == [] and outcome.twice == {} and outcome.failed == 0


def test_read_only_inbox(
    tmp_path: Path, rclone_s3: S3Server, tmpfs: Mount, torture: Torture
) -> None:
    """The inbox's filesystem is read-only (remounted so under the daemon): files still
    upload once, their sources stay (archiving is a move), the error is said; writable again
    (and a restart), each source is archived once, under its own name."""
    inbox = tmpfs(tmp_path / "inbox", "16m")
    bucket = rclone_s3.create_bucket()
    names = stage(inbox, 6, 300 * 1024)
    remount(inbox, "ro")
    log = S3RequestLog()
    with TcpProxy(target_port=rclone_s3.port, observer=log) as proxy:
        daemon = daemon_for(tmp_path, rclone_s3, proxy, inbox, bucket=bucket)
        with daemon:
            daemon.start()
            daemon.wait_idle(expected_total=len(names), timeout=120)
            daemon.wait_for(
                lambda: "Read-only file system" in daemon.log.read_text(errors="replace"),
                timeout=30,
                what="the read-only error in the log",
            )
            kept = in_inbox(inbox, names)
            remount(inbox, "rw")
            daemon.stop()
            daemon.start()
            daemon.wait_for(
                lambda: not in_inbox(inbox, names), timeout=60, what="every source archived"
            )
            daemon.stop()
        outcome = check_bucket(daemon, rclone_s3, names, log, bucket=bucket)
    archive = daemon.state_dir / "archive"
    archived = sorted(p.name for p in archive.rglob("*") if p.is_file())
    torture.record(
        files=len(names),
        kept_while_read_only=len(kept),
        archived=len(archived),
        **outcome.figures(),
    )
    assert kept == sorted(names)
    assert archived == sorted(names), "each source archived once, under its own name"
    assert outcome.lost == [] and outcome.twice == {} and outcome.failed == 0


def test_state_dir_full(
    tmp_path: Path, rclone_s3: S3Server, tmpfs: Mount, torture: Torture
) -> None:
    """The catalog's filesystem fills up while files arrive: the daemon says so (in its log,
    or by exiting with the error), nothing is uploaded without its row, and once space is
    back every file goes up exactly once (without a restart, unless it exited)."""
    state = tmpfs(tmp_path / "d" / "state", "16m")  # the harness's state_dir
    bucket = rclone_s3.create_bucket()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = stage(tmp_path / "stage", 6, 200 * 1024)
    log = S3RequestLog()
    with TcpProxy(target_port=rclone_s3.port, observer=log) as proxy:
        daemon = daemon_for(tmp_path, rclone_s3, proxy, inbox, bucket=bucket)
        with daemon:
            daemon.start()
            ballast = fill(state)
            for name in names:
                os.rename(tmp_path / "stage" / name, inbox / name)
            deadline = time.monotonic() + 20
            said = False
            while time.monotonic() < deadline and daemon.alive() and not said:
                time.sleep(0.5)
                text = daemon.log.read_text(errors="replace")
                said = any(m in text for m in FULL_MESSAGES)
            time.sleep(2)
            text = daemon.log.read_text(errors="replace")
            said = any(m in text for m in FULL_MESSAGES)
            exited = not daemon.alive()
            stored_while_full = sum(log.stored().values())
            ballast.unlink()
            if exited:  # allowed, if it said why: started again by its supervisor
                daemon.process = None
                daemon.start()
            # else: it carries on by itself once space is back (its next rescan)
            daemon.wait_idle(expected_total=len(names), timeout=120)
            daemon.stop()
        outcome = check_bucket(daemon, rclone_s3, names, log, bucket=bucket)
    torture.record(
        files=len(names),
        full_error_logged=said,
        daemon_exited=exited,
        stored_while_full=stored_while_full,
        **outcome.figures(),
    )
    assert said
    assert outcome.lost == [] and outcome.twice == {} and outcome.failed == 0
    assert outcome.stray_objects == []
