"""SftpPuller against asyncssh's in-process SFTP server (fast; the real sshd is in integration).

The server runs in a background asyncio thread, chrooted to a temp folder, with its own host
key; paramiko (the code under test) connects to it over loopback like to any server.
"""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from ingestd.sources import sftp_conn
from ingestd.sources.filters import PathFilter
from ingestd.sources.sftp import PART_SUFFIX, SftpPuller


@dataclass
class Counters:
    """What the server saw: read requests' offsets, and an armed connection cut."""

    read_offsets: list[int] = field(default_factory=list)
    cut_after_bytes: int | None = None  # abort the connection once this much was served
    served: int = 0


class _Server(asyncssh.SFTPServer):  # type: ignore[misc]
    counters: Counters

    def __init__(self, chan: Any, root: Path, counters: Counters) -> None:
        super().__init__(chan, chroot=os.fsencode(root))
        self.counters = counters

    def read(self, file_obj: Any, offset: int, size: int) -> Any:
        c = self.counters
        c.read_offsets.append(offset)
        data = super().read(file_obj, offset, size)
        c.served += len(data)
        if c.cut_after_bytes is not None and c.served >= c.cut_after_bytes:
            c.cut_after_bytes = None
            self.connection.abort()  # the connection drops mid-transfer
        return data

    async def scandir(self, path: bytes) -> Any:
        async for entry in super().scandir(path):
            yield entry
        if b"hostile_listing" in path:  # a server that lists names no file can have
            for name in IMPOSSIBLE:
                attrs = asyncssh.SFTPAttrs(permissions=stat.S_IFREG | 0o644, size=3, mtime=1)
                yield asyncssh.SFTPName(name, attrs=attrs)


IMPOSSIBLE = (b"../escape.pdf", b"sub/inner.pdf", b"", b"nul\x00.pdf")


@dataclass
class InProcSftp:
    port: int
    root: Path
    known_hosts: Path
    client_key: Path
    counters: Counters

    def puller(self, staging: Path, **overrides: Any) -> SftpPuller:
        kwargs: dict[str, Any] = {
            "name": "partner",
            "host": "127.0.0.1",
            "port": self.port,
            "username": "partner",
            "private_key": self.client_key,
            "known_hosts": self.known_hosts,
            "remote_path": "/in",
            "staging_dir": staging,
            "settle_seconds": 0.0,
            "connect_timeout": 5.0,
            "op_timeout": 5.0,
            "backoff_max": 0.001,
        }
        kwargs.update(overrides)
        return SftpPuller(**kwargs)


@pytest.fixture(scope="module")
def inproc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcSftp]:
    base = tmp_path_factory.mktemp("asyncssh")
    root = base / "root"
    (root / "in").mkdir(parents=True)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    key_path = base / "client_key"
    key_path.write_bytes(client_key.export_private_key("openssh"))
    counters = Counters()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> Any:
        return await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(
                client_key.export_public_key("openssh").decode()
            ),
            sftp_factory=lambda chan: _Server(chan, root, counters),
        )

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    port = server.sockets[0].getsockname()[1]
    known_hosts = base / "known_hosts"
    public = host_key.export_public_key("openssh").decode().split()
    known_hosts.write_text(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")
    yield InProcSftp(port, root, known_hosts, key_path, counters)

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    # On the loop's own thread: asyncio servers are not thread-safe, and closing one from here
    # raced the loop waking its waiters ("'NoneType' object is not iterable" in teardown).
    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def remote(inproc: InProcSftp, request: pytest.FixtureRequest) -> Path:
    """A fresh remote folder for one test: the puller's remote_path is ``/<test name>``."""
    folder = inproc.root / request.node.name.replace("[", "_").replace("]", "")
    folder.mkdir()
    inproc.counters.read_offsets.clear()
    inproc.counters.cut_after_bytes = None
    return folder


def pull(inproc: InProcSftp, remote: Path, staging: Path, **kw: Any) -> SftpPuller:
    return inproc.puller(staging, **{"remote_path": "/" + remote.name, **kw})


def staged(staging: Path) -> set[str]:
    return {
        str(p.relative_to(staging))
        for p in staging.rglob("*")
        if p.is_file() and "/." not in f"/{p.relative_to(staging)}"
    }


def test_files_are_taken_on_the_second_poll_then_never_again(
    inproc: InProcSftp, remote: Path, tmp_path: Path
) -> None:
    (remote / "a.pdf").write_bytes(b"%PDF-a")
    (remote / "sub").mkdir()
    (remote / "sub" / "b.txt").write_bytes(b"bee")
    (remote / "c.filepart").write_bytes(b"uploading")
    puller = pull(inproc, remote, tmp_path / "staging")
    try:
        puller.poll_once()
        assert puller.up and staged(tmp_path / "staging") == set()  # first sighting only
        puller.poll_once()
        assert staged(tmp_path / "staging") == {"a.pdf", "sub/b.txt"}
        assert (tmp_path / "staging" / "sub" / "b.txt").read_bytes() == b"bee"
        # intake processed and removed the staged files; the remote ones stay (keep)
        for name in ("a.pdf", "sub/b.txt"):
            (tmp_path / "staging" / name).unlink()
        puller.remote_done("a.pdf", "keep")
        for _ in range(3):
            puller.poll_once()
        assert staged(tmp_path / "staging") == set()
        assert puller.files_downloaded == 2
    finally:
        puller.close()
    # a restarted puller remembers what it took
    again = pull(inproc, remote, tmp_path / "staging")
    try:
        again.poll_once()
        again.poll_once()
        assert staged(tmp_path / "staging") == set() and again.files_downloaded == 0
    finally:
        again.close()


def test_a_growing_file_waits_and_a_new_version_is_taken_again(
    inproc: InProcSftp, remote: Path, tmp_path: Path
) -> None:
    target = remote / "grow.txt"
    target.write_bytes(b"1")
    puller = pull(inproc, remote, tmp_path / "s")
    try:
        for i in range(2, 5):
            puller.poll_once()
            target.write_bytes(b"1" * i)  # changes between every poll
        assert staged(tmp_path / "s") == set()
        puller.poll_once()
        puller.poll_once()
        assert (tmp_path / "s" / "grow.txt").read_bytes() == b"1111"
        # a new version while the old one is still staged waits; it is never overwritten
        target.write_bytes(b"22")
        os.utime(target, (1, 1))
        puller.poll_once()
        puller.poll_once()
        assert (tmp_path / "s" / "grow.txt").read_bytes() == b"1111"
        (tmp_path / "s" / "grow.txt").unlink()
        puller.poll_once()
        assert (tmp_path / "s" / "grow.txt").read_bytes() == b"22"
    finally:
        puller.close()


def test_settle_seconds_hold_a_file_back_across_polls(
    inproc: InProcSftp, remote: Path, tmp_path: Path
) -> None:
    (remote / "a.txt").write_bytes(b"x")
    now = [100.0]
    puller = pull(inproc, remote, tmp_path / "s", settle_seconds=10.0, clock=lambda: now[0])
    try:
        puller.poll_once()
        now[0] += 5
        puller.poll_once()
        assert staged(tmp_path / "s") == set()  # two polls, but only 5 of 10 seconds
        now[0] += 5
        puller.poll_once()
        assert staged(tmp_path / "s") == {"a.txt"}
    finally:
        puller.close()


# paramiko's prefetch thread dies with "Socket is closed" when the connection is cut under it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_download_cut_midway_resumes_from_its_offset(
    inproc: InProcSftp, remote: Path, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 123)
    (remote / "big.bin").write_bytes(data)
    staging = tmp_path / "s"
    puller = pull(inproc, remote, staging)
    try:
        puller.poll_once()
        inproc.counters.cut_after_bytes = 1024 * 1024
        puller.poll_once()  # the connection is aborted under the download
        assert not puller.up and puller.last_error
        part = staging / f".big.bin{PART_SUFFIX}"
        have = part.stat().st_size
        # Usually about 1 MiB arrived; rarely the abort beats every buffered answer and nothing
        # did. Either way the next pass must read from exactly that offset on.
        assert 0 <= have < len(data) and not (staging / "big.bin").exists()
        first_pass = puller.bytes_downloaded
        inproc.counters.read_offsets.clear()
        for _ in range(20):  # reconnect after the (1 ms) backoff, list, resume
            time.sleep(0.05)
            puller.poll_once()
            if (staging / "big.bin").exists():
                break
        assert (staging / "big.bin").read_bytes() == data
        assert min(inproc.counters.read_offsets) == have  # nothing before the offset again
        assert puller.bytes_downloaded - first_pass == len(data) - have
        assert puller.up and puller.last_error is None
    finally:
        puller.close()


def test_a_partial_of_another_version_starts_over(
    inproc: InProcSftp, remote: Path, tmp_path: Path
) -> None:
    (remote / "f.bin").write_bytes(b"new content, longer than before")
    staging = tmp_path / "s"
    staging.mkdir()
    (staging / f".f.bin{PART_SUFFIX}").write_bytes(b"old")
    puller = pull(inproc, remote, staging)
    try:
        puller.store.set_partial(f"/{remote.name}/f.bin", 3, 1)  # another size and mtime
        puller.poll_once()
        puller.poll_once()
        assert (staging / "f.bin").read_bytes() == b"new content, longer than before"
        assert puller.bytes_downloaded == len(b"new content, longer than before")
    finally:
        puller.close()


def test_remote_actions_run_at_the_next_poll(
    inproc: InProcSftp, remote: Path, tmp_path: Path
) -> None:
    for name in ("del.txt", "mv.txt", "bad.pdf", "changed.txt"):
        (remote / "in" / name).parent.mkdir(exist_ok=True)
        (remote / "in" / name).write_bytes(name.encode())
    (remote / "archive").mkdir()
    (remote / "archive" / "mv.txt").write_bytes(b"an older one, kept")
    base = "/" + remote.name
    puller = pull(
        inproc,
        remote,
        tmp_path / "s",
        remote_path=base + "/in",
        archive_path=base + "/archive",
        rejected_path=base + "/rejected",
    )
    try:
        puller.poll_once()
        puller.poll_once()
        assert staged(tmp_path / "s") == {"del.txt", "mv.txt", "bad.pdf", "changed.txt"}
        (remote / "in" / "changed.txt").write_bytes(b"a new version arrived meanwhile")
        puller.remote_done("del.txt", "delete")
        puller.remote_done("mv.txt", "archive")
        puller.remote_done("changed.txt", "delete")
        puller.remote_reject("bad.pdf", b'{"codes": ["truncated"]}')
        assert puller.pending_actions == 4
        puller.poll_once()
        assert puller.pending_actions == 0
    finally:
        puller.close()
    assert sorted(p.name for p in (remote / "in").iterdir()) == ["changed.txt"]
    assert (remote / "archive" / "mv-1.txt").read_bytes() == b"mv.txt"
    assert (remote / "archive" / "mv.txt").read_bytes() == b"an older one, kept"
    assert (remote / "rejected" / "bad.pdf").read_bytes() == b"bad.pdf"
    assert (remote / "rejected" / "bad.pdf.reason.json").read_bytes() == b'{"codes": ["truncated"]}'


def test_remote_actions_need_their_folders(inproc: InProcSftp, tmp_path: Path) -> None:
    puller = inproc.puller(tmp_path / "s")
    try:
        with pytest.raises(ValueError, match="archive_path"):
            puller.remote_done("a", "move")
        with pytest.raises(ValueError, match="rejected_path"):
            puller.remote_reject("a", b"{}")
        with pytest.raises(ValueError, match="unknown remote action"):
            puller.remote_done("a", "shred")
    finally:
        puller.close()


def test_an_unknown_host_key_is_refused_naming_host_and_fingerprint(
    inproc: InProcSftp, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    puller = inproc.puller(tmp_path / "s", known_hosts=empty)
    try:
        puller.poll_once()
        assert not puller.up and puller.down_since is not None
        assert f"[127.0.0.1]:{inproc.port}" in (puller.last_error or "")
        assert "SHA256:" in (puller.last_error or "")
        assert empty.read_text() == ""  # never written to
    finally:
        puller.close()


def test_listing_10000_files_streams(
    inproc: InProcSftp, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(10_000):
        folder = remote / f"d{i // 2500}"
        folder.mkdir(exist_ok=True)
        os.close(os.open(folder / f"f{i:05d}.pdf", os.O_CREAT | os.O_WRONLY, 0o644))
    pulled = 0
    real_list_folder = sftp_conn.list_folder

    def counting(sftp: Any, folder: str) -> Iterator[Any]:
        nonlocal pulled
        for attr in real_list_folder(sftp, folder):
            pulled += 1
            yield attr

    monkeypatch.setattr(sftp_conn, "list_folder", counting)
    client, sftp = sftp_conn.connect(
        sftp_conn.Endpoint(
            host="127.0.0.1",
            port=inproc.port,
            username="partner",
            known_hosts=inproc.known_hosts,
            private_key=inproc.client_key,
        )
    )
    try:
        listing = sftp_conn.walk(sftp, "/" + remote.name, recursive=True, path_filter=PathFilter())
        assert isinstance(listing, types.GeneratorType)  # lazy by construction
        first = next(listing)
        assert first.relpath.endswith(".pdf")
        # the top folder's 4 entries, then at most one READDIR batch of one folder
        assert pulled <= 4 + 200
        assert sum(1 for _ in listing) + 1 == 10_000
        assert pulled == 10_004
    finally:
        client.close()


LATIN1 = b"caf\xe9-r\xe9sum\xe9.pdf"
LATIN1_DIR = b"d\xe9p\xf4t"


def test_names_that_are_not_utf8_are_pulled_and_acted_on_exactly(
    inproc: InProcSftp, remote: Path, tmp_path: Path
) -> None:
    """Latin-1 names (a file, a folder, a file in it) arrive in staging under their exact
    bytes, are remembered as taken, and their remote post-actions reach the exact remote
    names (docs/ARCHITECTURE.md, "File names")."""
    inbox = os.path.join(os.fsencode(remote), b"in")
    os.makedirs(os.path.join(inbox, LATIN1_DIR))
    for raw, body in (
        (LATIN1, b"one"),
        (LATIN1_DIR + b"/" + LATIN1, b"two"),
        (b"r\xe9f.pdf", b"3"),
    ):
        with open(os.path.join(inbox, raw), "wb") as fh:
            fh.write(body)
    older = os.path.join(os.fsencode(remote), b"archive", LATIN1_DIR, LATIN1)
    os.makedirs(os.path.dirname(older))
    with open(older, "wb") as fh:  # an earlier file of that name: never overwritten
        fh.write(b"older")
    base = "/" + remote.name
    staging = tmp_path / "s"
    puller = pull(
        inproc,
        remote,
        staging,
        remote_path=base + "/in",
        archive_path=base + "/archive",
        rejected_path=base + "/rejected",
    )
    name, nested, rejected = (
        os.fsdecode(n) for n in (LATIN1, LATIN1_DIR + b"/" + LATIN1, b"r\xe9f.pdf")
    )
    try:
        puller.poll_once()
        puller.poll_once()
        assert staged(staging) == {name, nested, rejected}
        with open(os.path.join(os.fsencode(staging), LATIN1_DIR, LATIN1), "rb") as fh:
            assert fh.read() == b"two"
        puller.poll_once()
        assert puller.files_downloaded == 3  # remembered as taken: not pulled again
        puller.remote_done(name, "delete")
        puller.remote_done(nested, "archive")
        puller.remote_reject(rejected, b'{"codes": ["truncated"]}')
        puller.poll_once()
        assert puller.pending_actions == 0
    finally:
        puller.close()
    assert os.listdir(inbox) == [LATIN1_DIR]  # the file deleted, the emptied folder kept
    assert os.listdir(os.path.join(inbox, LATIN1_DIR)) == []
    archive = os.path.join(os.fsencode(remote), b"archive", LATIN1_DIR)
    assert sorted(os.listdir(archive)) == [b"caf\xe9-r\xe9sum\xe9-1.pdf", LATIN1]
    with open(os.path.join(archive, b"caf\xe9-r\xe9sum\xe9-1.pdf"), "rb") as fh:
        assert fh.read() == b"two"
    with open(older, "rb") as fh:
        assert fh.read() == b"older"
    quarantined = os.path.join(os.fsencode(remote), b"rejected")
    assert sorted(os.listdir(quarantined)) == [b"r\xe9f.pdf", b"r\xe9f.pdf.reason.json"]


def test_the_pull_store_keeps_names_that_are_not_utf8_exactly(tmp_path: Path) -> None:
    from ingestd.sources.sftp_store import PullStore

    store = PullStore(tmp_path)
    exact = "/in/" + os.fsdecode(LATIN1)
    looks_alike = "/in/caf%E9-r%E9sum%E9.pdf"  # a UTF-8 name spelling the other's escapes
    try:
        store.mark_taken(exact, 3, 10)
        assert store.is_taken(exact, 3, 10) and not store.is_taken(looks_alike, 3, 10)
        assert store.last_taken(exact) == (3, 10) and store.last_taken(looks_alike) is None
        store.set_partial(looks_alike, 5, 20)
        assert store.partial_of(looks_alike) == (5, 20) and store.partial_of(exact) is None
        store.enqueue(os.fsdecode(LATIN1), "delete")
        store.enqueue("caf%E9-r%E9sum%E9.pdf", "delete")
        assert [a.relpath for a in store.pending()] == [os.fsdecode(LATIN1), looks_alike[4:]]
        store.forget_taken(exact)
        assert store.last_taken(exact) is None
    finally:
        store.close()


def test_a_hostile_listing_of_impossible_names_is_skipped(
    inproc: InProcSftp, remote: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server listing "../escape.pdf", "sub/inner.pdf", "" or a NUL: each would name another
    path than the entry (or none), so the listing leaves it out and says so."""
    (remote / "real.pdf").write_bytes(b"one")
    client, sftp = sftp_conn.connect(
        sftp_conn.Endpoint(
            host="127.0.0.1",
            port=inproc.port,
            username="partner",
            known_hosts=inproc.known_hosts,
            private_key=inproc.client_key,
        )
    )
    try:
        with caplog.at_level("WARNING", logger="ingestd.sources.sftp"):
            found = list(
                sftp_conn.walk(sftp, "/" + remote.name, recursive=True, path_filter=PathFilter())
            )
        assert [f.relpath for f in found] == ["real.pdf"]
        assert sum("impossible name" in r.getMessage() for r in caplog.records) == len(IMPOSSIBLE)
        # the session is still in step after the listing: the next request answers normally
        assert sftp_conn.lstat(sftp, f"/{remote.name}/real.pdf") is not None
    finally:
        client.close()


def test_a_listing_stopped_early_leaves_the_session_in_step(
    inproc: InProcSftp, remote: Path
) -> None:
    """Read-ahead requests are still in flight when a caller stops after a few names (the
    doctor reads one): their replies must not be taken for the answers to later requests."""
    for i in range(3000):
        os.close(os.open(remote / f"f{i:04d}.pdf", os.O_CREAT | os.O_WRONLY, 0o644))
    client, sftp = sftp_conn.connect(
        sftp_conn.Endpoint(
            host="127.0.0.1",
            port=inproc.port,
            username="partner",
            known_hosts=inproc.known_hosts,
            private_key=inproc.client_key,
        )
    )
    try:
        listing = sftp_conn.list_folder(sftp, "/" + remote.name)
        first = [next(listing).filename for _ in range(5)]
        listing.close()
        assert all(name.endswith(".pdf") for name in first)
        again = {a.filename for a in sftp_conn.list_folder(sftp, "/" + remote.name)}
        assert len(again) == 3000 and set(first) <= again
        attrs = sftp_conn.lstat(sftp, f"/{remote.name}/f0042.pdf")
        assert attrs is not None and attrs.st_size == 0
        assert sftp_conn.lstat(sftp, f"/{remote.name}/missing.pdf") is None
    finally:
        client.close()


def test_the_doctor_lists_a_folder_whose_first_name_is_not_utf8(
    inproc: InProcSftp, remote: Path
) -> None:
    from ingestd.doctor.sftp import _folder_problem

    with open(os.path.join(os.fsencode(remote), LATIN1), "wb") as fh:
        fh.write(b"x")
    client, sftp = sftp_conn.connect(
        sftp_conn.Endpoint(
            host="127.0.0.1",
            port=inproc.port,
            username="partner",
            known_hosts=inproc.known_hosts,
            private_key=inproc.client_key,
        )
    )
    try:
        assert _folder_problem(sftp, "/" + remote.name) is None
        assert "does not exist" in (_folder_problem(sftp, f"/{remote.name}/nope") or "")
    finally:
        client.close()


def test_a_name_as_long_as_a_name_may_be_is_pulled_and_rejected_with_its_reason(
    inproc: InProcSftp, remote: Path, tmp_path: Path
) -> None:
    """255 bytes, not UTF-8: its hidden staging name and its reason file's name must still fit
    in one path component (they would not with their suffixes simply added)."""
    long = b"\xe9" * 251 + b".pdf"
    after = b"after.pdf"  # a file listed after it is not held back by it
    inbox = os.path.join(os.fsencode(remote), b"in")
    os.makedirs(inbox)
    for raw in (long, after):
        with open(os.path.join(inbox, raw), "wb") as fh:
            fh.write(raw)
    base = "/" + remote.name
    puller = pull(
        inproc, remote, tmp_path / "s", remote_path=base + "/in", rejected_path=base + "/rej"
    )
    try:
        puller.poll_once()
        puller.poll_once()
        assert staged(tmp_path / "s") == {os.fsdecode(long), "after.pdf"}
        puller.remote_reject(os.fsdecode(long), b'{"codes": ["truncated"]}')
        puller.poll_once()
        assert puller.pending_actions == 0
    finally:
        puller.close()
    rejected = os.listdir(os.path.join(os.fsencode(remote), b"rej"))
    assert long in rejected and len(rejected) == 2
    (reason,) = [n for n in rejected if n != long]
    assert reason.startswith(b"\xe9" * 200) and reason.endswith(b".reason.json")
    assert os.listdir(inbox) == [after]
