"""SftpPuller against a real OpenSSH sshd: pull, remote delete/move/reject, a download cut by
killing the session resumes from its offset, host keys are checked, outages heal by themselves."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ingestd.sources.sftp import PART_SUFFIX, SftpPuller
from tests.servers.sshd import SshdServer, keygen

# The session fixture (until tests/conftest.py lists tests.servers.sshd in pytest_plugins).

pytestmark = pytest.mark.integration


def make_puller(server: SshdServer, remote: str, staging: Path, **kw: Any) -> SftpPuller:
    args: dict[str, Any] = {
        "name": "partner",
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "private_key": server.private_key,
        "known_hosts": server.known_hosts,
        "remote_path": f"{remote}/in",
        "archive_path": f"{remote}/archive",
        "rejected_path": f"{remote}/rejected",
        "staging_dir": staging,
        "settle_seconds": 0.0,
        "poll_seconds": 0.3,
        "connect_timeout": 5.0,
        "op_timeout": 10.0,
        "backoff_max": 0.5,
    }
    args.update(kw)
    return SftpPuller(**args)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def remote_dir(sshd_server: SshdServer, request: pytest.FixtureRequest) -> tuple[Path, str]:
    """``<inbox>/<test>/in`` exists (user-owned); returns (local folder, remote folder)."""
    local, remote = sshd_server.make_dir(request.node.name)
    sshd_server.make_dir(f"{request.node.name}/in")
    return local, remote


def put(local: Path, relpath: str, data: bytes, owner: SshdServer) -> Path:
    """A file the SFTP user owns, as if the partner had uploaded it."""
    path = local / "in" / relpath
    for parent in reversed(path.relative_to(local).parents[:-1]):
        folder = local / parent
        folder.mkdir(exist_ok=True)
        os.chown(folder, owner.user.pw_uid, owner.user.pw_gid)
    path.write_bytes(data)
    os.chown(path, owner.user.pw_uid, owner.user.pw_gid)
    return path


@pytest.fixture
def running(sshd_server: SshdServer) -> Iterator[SshdServer]:
    """The session sshd, guaranteed to be running again after the test."""
    yield sshd_server
    if not sshd_server.running:
        sshd_server.start()


def test_files_are_pulled_then_deleted_moved_or_rejected_remotely(
    sshd_server: SshdServer, remote_dir: tuple[Path, str], tmp_path: Path
) -> None:
    local, remote = remote_dir
    put(local, "a.pdf", b"%PDF a", sshd_server)
    put(local, "deep/b.pdf", b"%PDF b", sshd_server)
    put(local, "c.pdf", b"%PDF c", sshd_server)
    put(local, "keep.pdf", b"%PDF k", sshd_server)
    staging = tmp_path / "staging"
    puller = make_puller(sshd_server, remote, staging)
    try:
        puller.poll_once()
        puller.poll_once()
        assert sorted(str(p.relative_to(staging)) for p in staging.rglob("*.pdf")) == [
            "a.pdf",
            "c.pdf",
            "deep/b.pdf",
            "keep.pdf",
        ]
        assert (staging / "deep" / "b.pdf").read_bytes() == b"%PDF b"
        puller.remote_done("a.pdf", "delete")
        puller.remote_done("deep/b.pdf", "move")
        puller.remote_done("keep.pdf", "keep")
        puller.remote_reject("c.pdf", b'{"codes": ["truncated"]}')
        for name in ("a.pdf", "c.pdf", "deep/b.pdf", "keep.pdf"):
            (staging / name).unlink()  # what intake's post-action does with staged files
        puller.poll_once()
        puller.poll_once()
        assert puller.pending_actions == 0
        assert not list(staging.rglob("*.pdf"))  # nothing is taken twice, kept file included
    finally:
        puller.close()
    remaining = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert remaining == [
        "archive/deep/b.pdf",
        "in/keep.pdf",
        "rejected/c.pdf",
        "rejected/c.pdf.reason.json",
    ]
    assert (local / "rejected" / "c.pdf.reason.json").read_bytes() == b'{"codes": ["truncated"]}'


def test_a_local_staging_failure_costs_only_its_file(
    sshd_server: SshdServer, remote_dir: tuple[Path, str], tmp_path: Path
) -> None:
    """A file that cannot be staged (here: a plain file where its staging folder must go; a
    full disk alike) waits for the next poll; the files listed around it are pulled in the
    same poll and the inbox stays up (it is not the server's fault)."""
    local, remote = remote_dir
    for name in ("a.pdf", "m.pdf", "z.pdf"):
        put(local, name, f"%PDF {name}".encode(), sshd_server)
    put(local, "deep/b.pdf", b"%PDF b", sshd_server)
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "deep").write_bytes(b"in the way")
    puller = make_puller(sshd_server, remote, staging)
    try:
        puller.poll_once()
        puller.poll_once()
        pulled = sorted(p.name for p in staging.glob("*.pdf"))
        assert pulled == ["a.pdf", "m.pdf", "z.pdf"]
        assert puller.up, puller.last_error
        (staging / "deep").unlink()
        puller.poll_once()
        assert (staging / "deep" / "b.pdf").read_bytes() == b"%PDF b"
    finally:
        puller.close()


# paramiko's prefetch thread dies with "Socket is closed" when the session is killed under it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_download_cut_by_killing_the_session_resumes_from_its_offset(
    sshd_server: SshdServer, remote_dir: tuple[Path, str], tmp_path: Path
) -> None:
    local, remote = remote_dir
    data = os.urandom(96 * 1024 * 1024)
    put(local, "big.bin", data, sshd_server)
    staging = tmp_path / "staging"
    part = staging / f".big.bin{PART_SUFFIX}"
    puller = make_puller(sshd_server, remote, staging)
    try:
        puller.poll_once()
        poll = threading.Thread(target=puller.poll_once)
        poll.start()
        wait_until(lambda: part.exists() and part.stat().st_size > len(data) // 5, 60, "download")
        assert sshd_server.kill_sessions() > 0
        poll.join(30)
        assert not puller.up and not (staging / "big.bin").exists()
        have = part.stat().st_size
        assert 0 < have < len(data)
        first_pass = puller.bytes_downloaded
        for _ in range(10):  # reconnect after the backoff, list, resume
            puller.poll_once()
            if (staging / "big.bin").exists():
                break
            time.sleep(0.2)
        second_pass = puller.bytes_downloaded - first_pass
        assert second_pass == len(data) - have  # only the missing bytes crossed the wire again
        assert (staging / "big.bin").read_bytes() == data
    finally:
        puller.close()


def fingerprint_of(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True)
    return out.stdout.split()[1]  # "256 SHA256:... comment (ED25519)"


def test_a_wrong_host_key_is_refused_naming_host_and_fingerprint(
    sshd_server: SshdServer, remote_dir: tuple[Path, str], tmp_path: Path
) -> None:
    local, remote = remote_dir
    put(local, "a.pdf", b"%PDF a", sshd_server)
    other = keygen(tmp_path / "other_host_key", "someone-else")
    wrong = tmp_path / "known_hosts"
    wrong.write_text(
        f"[{sshd_server.host}]:{sshd_server.port} "
        + " ".join(other.with_suffix(".pub").read_text().split()[:2])
        + "\n"
    )
    real = fingerprint_of(sshd_server.etc / "host_ed25519.pub")
    puller = make_puller(sshd_server, remote, tmp_path / "staging", known_hosts=wrong)
    try:
        puller.poll_once()
        puller.poll_once()
        message = puller.last_error or ""
        assert not puller.up
        assert f"[{sshd_server.host}]:{sshd_server.port}" in message
        assert real in message and fingerprint_of(other.with_suffix(".pub")) in message
        assert "CHANGED" in message
        assert not (tmp_path / "staging" / "a.pdf").exists()
    finally:
        puller.close()
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    puller = make_puller(sshd_server, remote, tmp_path / "staging2", known_hosts=empty)
    try:
        puller.poll_once()
        message = puller.last_error or ""
        assert f"[{sshd_server.host}]:{sshd_server.port}" in message and real in message
        assert "not in" in message and empty.read_text() == ""
    finally:
        puller.close()


def test_the_server_going_away_and_coming_back_needs_no_intervention(
    running: SshdServer, remote_dir: tuple[Path, str], tmp_path: Path
) -> None:
    local, remote = remote_dir
    staging = tmp_path / "staging"
    put(local, "before.pdf", b"%PDF 1", running)
    puller = make_puller(running, remote, staging)
    puller.start()
    try:
        wait_until(lambda: (staging / "before.pdf").exists(), 20, "first file")
        assert puller.up and puller.down_since is None
        running.stop()
        wait_until(lambda: not puller.up, 20, "the inbox to be marked down")
        assert puller.down_since is not None and puller.last_error
        put(local, "during.pdf", b"%PDF 2", running)
        time.sleep(1.5)  # several failed reconnects, none of them raising out of the thread
        assert not puller.up
        running.start()
        wait_until(lambda: (staging / "during.pdf").exists(), 30, "the file after the outage")
        assert puller.up and puller.down_since is None and puller.last_error is None
    finally:
        puller.close()


def test_a_passphrase_protected_key_is_unlocked_and_a_wrong_passphrase_is_named(
    sshd_server: SshdServer, remote_dir: tuple[Path, str], tmp_path: Path
) -> None:
    local, remote = remote_dir
    put(local, "locked.pdf", b"%PDF locked", sshd_server)
    key = tmp_path / "client_locked"
    key.write_bytes(sshd_server.private_key.read_bytes())
    key.chmod(0o600)
    subprocess.run(
        ["ssh-keygen", "-q", "-p", "-P", "", "-N", "s3cret phrase", "-f", str(key)], check=True
    )
    wrong = make_puller(
        sshd_server, remote, tmp_path / "staging-wrong", private_key=key, passphrase="nope"
    )
    try:
        wrong.poll_once()
        assert not wrong.up
        message = wrong.last_error or ""
        assert f"private key {key} cannot be loaded: wrong passphrase" in message, message
        assert "nope" not in message
    finally:
        wrong.close()
    puller = make_puller(
        sshd_server, remote, tmp_path / "staging", private_key=key, passphrase="s3cret phrase"
    )
    try:
        puller.poll_once()
        assert puller.up, puller.last_error
        wait_until(lambda: (puller.poll_once(), puller.files_downloaded)[1], 10, "the download")
        assert (tmp_path / "staging" / "locked.pdf").read_bytes() == b"%PDF locked"
    finally:
        puller.close()
