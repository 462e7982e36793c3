"""Local inboxes written by a real OpenSSH sshd (chrooted internal-sftp user), read by
LocalSource: what real clients leave behind, and marker mode."""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from ingestd.sources.local import LocalSource
from ingestd.validate import validate_file
from tests import samples
from tests.servers.sshd import SshdServer
from tests.unit.test_local_source import Recorder

# The session fixture (until tests/conftest.py lists tests.servers.sshd in pytest_plugins).

pytestmark = pytest.mark.integration


def paramiko_sftp(server: SshdServer) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
    client = paramiko.SSHClient()
    client.load_host_keys(str(server.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        server.host,
        server.port,
        server.username,
        key_filename=str(server.private_key),
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    return client, client.open_sftp()


def local_source(root: Path, **kw: object) -> LocalSource:
    return LocalSource(
        name="sftp",
        root=root,
        recursive=True,
        include=("*",),
        exclude=(),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def observer() -> Iterator[BaseObserver]:
    obs = Observer()
    obs.start()
    yield obs
    obs.stop()
    obs.join(5)


def validate(path: Path) -> list[str]:
    verdict = validate_file(
        path,
        name=path.name,
        size=path.stat().st_size,
        min_size_bytes=1,
        max_size_bytes=1 << 30,
        allowed_types=frozenset(),
    )
    return [r.code for r in verdict.rejections]


def test_real_clients_upload_and_a_filepart_is_seen_only_after_its_rename(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    inbox, remote = sshd_server.make_dir("clients")
    a = samples.write_pdf(tmp_path / "a.pdf", seed=1)
    b = samples.write_pdf(tmp_path / "b.pdf", seed=2, padding=300_000)
    src = local_source(inbox)
    sshd_server.run_sftp(f"cd {remote}\nput {a} a.pdf\nput {b} b.pdf.filepart\n", tmp_path)
    assert (inbox / "b.pdf.filepart").stat().st_size == b.stat().st_size
    assert {f.relpath for f in src.scan()} == {"a.pdf"}  # WinSCP's temp name is never taken
    sshd_server.run_sftp(f"cd {remote}\nrename b.pdf.filepart b.pdf\n", tmp_path)
    client, sftp = paramiko_sftp(sshd_server)
    try:
        sftp.mkdir(f"{remote}/sub")
        sftp.put(str(samples.write_png(tmp_path / "c.png", seed=3)), f"{remote}/sub/c.png")
    finally:
        client.close()
    found = {f.relpath: f for f in src.scan()}
    assert set(found) == {"a.pdf", "b.pdf", "sub/c.png"}
    assert found["b.pdf"].path.read_bytes() == b.read_bytes()
    assert all(validate(f.path) == [] for f in found.values())


def test_an_sftp_upload_killed_halfway_leaves_a_truncated_pdf(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    inbox, remote = sshd_server.make_dir("killed")
    big = tmp_path / "big.pdf"
    big.write_bytes(samples.pdf_bytes(7, pages=2, padding=4_000_000))
    batch = tmp_path / "batch"
    batch.write_text(f"cd {remote}\nput {big} big.pdf\n")
    # -l: 8,000 Kbit/s (~1 MB/s), so the upload is still running when we kill it
    command = sshd_server.sftp_command(batch)
    client = subprocess.Popen(
        [command[0], "-l", "8000", *command[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    target = inbox / "big.pdf"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if target.exists() and target.stat().st_size > 500_000:
            break
        time.sleep(0.05)
    client.send_signal(signal.SIGKILL)
    client.wait(10)
    time.sleep(0.5)  # the server side notices the dead connection and closes the file
    size = target.stat().st_size
    assert 0 < size < big.stat().st_size
    assert validate(target) == ["truncated"]


def test_a_paramiko_upload_closed_halfway_leaves_a_truncated_pdf(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    inbox, remote = sshd_server.make_dir("halfway")
    data = samples.pdf_bytes(8, pages=3, padding=200_000)
    client, sftp = paramiko_sftp(sshd_server)
    try:
        with sftp.open(f"{remote}/half.pdf", "wb") as fh:
            fh.write(data[: len(data) // 2])
    finally:
        client.close()
    assert (inbox / "half.pdf").stat().st_size == len(data) // 2
    assert validate(inbox / "half.pdf") == ["truncated"]


def test_marker_mode_with_real_uploads(
    sshd_server: SshdServer,
    tmp_path: Path,
    observer: BaseObserver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox, remote = sshd_server.make_dir("markers")
    recorder = Recorder()
    src = local_source(inbox, marker_suffix=".ok", on_change=recorder)
    src.watch(observer)
    try:
        a = samples.write_pdf(tmp_path / "a.pdf", seed=10)
        b = samples.write_pdf(tmp_path / "b.pdf", seed=11)
        empty = tmp_path / "empty"
        empty.write_bytes(b"")
        sshd_server.run_sftp(
            f"cd {remote}\nput {a} a.pdf\nput {b} b.pdf\nput {empty} b.pdf.ok\n"
            f"put {empty} lost.pdf.ok\n",
            tmp_path,
        )
        recorder.wait_for("b.pdf")
        with caplog.at_level(logging.WARNING, logger="ingestd.sources.local"):
            assert {f.relpath for f in src.scan()} == {"b.pdf"}  # a.pdf waits for its marker
        assert list(src.orphan_markers()) == ["lost.pdf.ok"]
        assert any("orphan marker lost.pdf.ok" in r.getMessage() for r in caplog.records)
        recorder.clear()
        sshd_server.run_sftp(f"cd {remote}\nput {empty} a.pdf.ok\n", tmp_path)
        recorder.wait_for("a.pdf")  # the marker's arrival reports the data file
        assert src.stat("a.pdf") is not None
        assert {f.relpath for f in src.scan()} == {"a.pdf", "b.pdf"}
    finally:
        src.unwatch()
