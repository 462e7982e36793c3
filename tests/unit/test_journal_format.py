"""The ``journal`` log format (issue 19, item 4): entries in journald's native protocol on a
real unix datagram socket in a temp dir standing in for /run/systemd/journal/socket.

The receiving side parses the protocol on its own (``parse``), so the encoding is checked
against the protocol, not against itself. A real pipeline (``Daemon(once=True)``) in a child
process logs through it: a file name with a newline stays one FILE_PATH value (binary-safe
form) and shows escaped in MESSAGE; credentials are masked everywhere.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from ingestd import journal, logs
from tests import samples


def parse(data: bytes) -> dict[str, bytes]:
    """One entry of the native protocol: ``KEY=value\\n``, or ``KEY\\n`` + u64le size + bytes
    + ``\\n``."""
    fields: dict[str, bytes] = {}
    i = 0
    while i < len(data):
        end = data.index(b"\n", i)
        line = data[i:end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value
            i = end + 1
        else:
            (size,) = struct.unpack("<Q", data[end + 1 : end + 9])
            value = data[end + 9 : end + 9 + size]
            assert data[end + 9 + size : end + 10 + size] == b"\n"
            fields[line.decode()] = value
            i = end + 10 + size
    return fields


class FakeJournal:
    """A bound AF_UNIX datagram socket; a thread collects every entry (the datagram's, or the
    sealed memfd's passed with it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.raw: list[bytes] = []
        self.seals: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, 1 << 20, 4)
            except TimeoutError:
                continue
            for fd in fds:
                self.seals.append(fcntl.fcntl(fd, fcntl.F_GET_SEALS))
                data = os.pread(fd, os.fstat(fd).st_size, 0)
                os.close(fd)
            self.raw.append(data)

    @property
    def entries(self) -> list[dict[str, bytes]]:
        return [parse(d) for d in list(self.raw)]

    def wait_for(self, n: int, timeout: float = 5.0) -> list[dict[str, bytes]]:
        import time

        deadline = time.monotonic() + timeout
        while len(self.raw) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.entries

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def fake_journal() -> Iterator[FakeJournal]:
    # A short directory: a unix socket's path must fit in 108 bytes.
    directory = Path(tempfile.mkdtemp(prefix="jrnl-", dir="/tmp"))
    fake = FakeJournal(directory / "socket")
    try:
        yield fake
    finally:
        fake.close()
        fake.path.unlink(missing_ok=True)
        directory.rmdir()


@pytest.fixture
def journal_logger(fake_journal: FakeJournal) -> Iterator[logging.Logger]:
    fallback = logging.StreamHandler(sys.stderr)
    handler = journal.JournalHandler(
        path=fake_journal.path, fallback=fallback, priority=logs.priority
    )
    log = logging.getLogger("ingestd.test.journal")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    try:
        yield log
    finally:
        log.handlers[:] = []
        handler.close()


HOSTILE = "scan\n<3>forged: error\x1b[31m\u202egpj.pdf"


def test_an_outcome_record_carries_the_file_fields(
    fake_journal: FakeJournal, journal_logger: logging.Logger
) -> None:
    row = SimpleNamespace(
        id=42,
        inbox="scans",
        relpath=HOSTILE,
        size=1234,
        sha256="ab" * 32,
        reason_code="too_small",
        updated_at=11.5,
        discovered_at=10.0,
    )
    journal_logger.warning(
        "file %s %s/%s: rejected", 42, "scans", HOSTILE, extra=logs.outcome_fields(row, "rejected")
    )
    (entry,) = fake_journal.wait_for(1)
    assert entry["PRIORITY"] == b"4"
    assert entry["SYSLOG_IDENTIFIER"] == b"ingestd"
    assert entry["LOGGER"] == b"ingestd.test.journal"
    assert entry["CODE_FILE"] == __file__.encode()
    assert int(entry["CODE_LINE"]) > 0
    assert entry["CODE_FUNC"] == b"test_an_outcome_record_carries_the_file_fields"
    assert (entry["FILE_ID"], entry["INBOX"], entry["STATE"], entry["REASON_CODE"]) == (
        b"42",
        b"scans",
        b"rejected",
        b"too_small",
    )
    # The hostile name: exact in its own field (the newline sent binary-safe), not a new field.
    assert entry["FILE_PATH"] == HOSTILE.encode()
    assert b"FILE_PATH\n" + struct.pack("<Q", len(HOSTILE.encode())) in fake_journal.raw[0]
    assert "<3>forged" not in {k for k in entry}
    # MESSAGE follows the untrusted-text rule: one line, controls and bidi escaped.
    message = entry["MESSAGE"].decode()
    assert "\n" not in message and "\x1b" not in message and "\u202e" not in message
    assert message == "file 42 scans/scan\\n<3>forged: error\\x1b[31m\\u202egpj.pdf: rejected"
    assert b"MESSAGE=" in fake_journal.raw[0]  # one line: the plain form


def test_fields_only_when_the_record_has_them(
    fake_journal: FakeJournal, journal_logger: logging.Logger
) -> None:
    journal_logger.info("daemon started")
    (entry,) = fake_journal.wait_for(1)
    assert entry["PRIORITY"] == b"6"
    assert not {"FILE_ID", "INBOX", "STATE", "REASON_CODE", "TRACEBACK"} & set(entry)


def test_secrets_are_masked_in_every_field(
    fake_journal: FakeJournal, journal_logger: logging.Logger
) -> None:
    try:
        raise RuntimeError("login failed for postgresql://ingestd:hunter2pw@db/ingestd")
    except RuntimeError:
        journal_logger.exception(
            "cannot reach https://hooks.example/x?token=t0ps3cret",
            extra={"file_id": 7, "path": "in/password=s3cr3t9.txt"},
        )
    (entry,) = fake_journal.wait_for(1)
    raw = fake_journal.raw[0]
    for secret in (b"hunter2pw", b"t0ps3cret", b"s3cr3t9"):
        assert secret not in raw
    assert entry["PRIORITY"] == b"3"
    assert b"\n" in entry["TRACEBACK"] and b"RuntimeError" in entry["TRACEBACK"]
    assert b"\n" not in entry["MESSAGE"] and b"Traceback" in entry["MESSAGE"]


def test_an_entry_too_big_for_a_datagram_goes_in_a_sealed_memfd(
    fake_journal: FakeJournal, journal_logger: logging.Logger
) -> None:
    big = "x" * (4 << 20)
    journal_logger.info("big %s", big)
    (entry,) = fake_journal.wait_for(1)
    assert entry["MESSAGE"] == f"big {big}".encode()
    wanted = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
    assert fake_journal.seals and fake_journal.seals[0] & wanted == wanted


def test_a_journal_gone_away_falls_back_to_stderr(tmp_path: Path) -> None:
    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    fallback = Collect()
    handler = journal.JournalHandler(
        path=tmp_path / "no-socket", fallback=fallback, priority=logs.priority
    )
    try:
        handler.handle(logging.LogRecord("ingestd", logging.ERROR, __file__, 1, "lost?", (), None))
    finally:
        handler.close()
    assert [r.getMessage() for r in fallback.records] == ["lost?"]


SETUP_CHILD = """
import logging, sys
from pathlib import Path
from ingestd import logs
logs.setup(fmt="journal", level="info", journal_socket=Path(sys.argv[1]))
logging.getLogger("ingestd.child").warning("hello %s", "there")
"""


def test_setup_uses_the_socket_and_falls_back_to_auto_with_a_warning(
    fake_journal: FakeJournal, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    ok = subprocess.run(
        [sys.executable, "-c", SETUP_CHILD, str(fake_journal.path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert ok.stderr == ""
    (entry,) = fake_journal.wait_for(1)
    assert entry["MESSAGE"] == b"hello there" and entry["PRIORITY"] == b"4"
    missing = tmp_path / "missing-socket"
    gone = subprocess.run(
        [sys.executable, "-c", SETUP_CHILD, str(missing)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    lines = gone.stderr.splitlines()
    assert len(lines) == 2
    assert "log format journal: the journal's socket is not available" in lines[0]
    assert str(missing) in lines[0] and lines[0].rstrip().endswith("using auto")
    assert "WARNING" in lines[1] and "hello there" in lines[1]  # auto, off the journal: human


PIPELINE_CHILD = """
import sys
from pathlib import Path
from ingestd import logs
from ingestd.config import load_settings
from ingestd.daemon import Daemon
config = Path(sys.argv[2])
settings = load_settings(config)
logs.setup(fmt="journal", level="info", journal_socket=Path(sys.argv[1]))
sys.exit(Daemon(settings=settings, config_path=config, once=True).run())
"""


def test_the_pipelines_file_lines_carry_their_fields(
    fake_journal: FakeJournal, tmp_path: Path
) -> None:
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    inbox.mkdir()
    store.mkdir()
    name = "report\nline2.pdf"
    samples.write_pdf(inbox / name)
    (inbox / "empty.pdf").write_bytes(b"")
    config = tmp_path / "ingestd.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\nhttp_listen = ""\n'
        f'[destinations.main]\ntype = "directory"\npath = "{store}"\n'
        f'[[inboxes]]\nname = "scans"\npath = "{inbox}"\ndestination = "main"\n'
        "settle_seconds = 0\nmin_size_bytes = 1\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGESTD_", "JOURNAL_"))}
    subprocess.run(
        [sys.executable, "-c", PIPELINE_CHILD, str(fake_journal.path), str(config)],
        env=env,
        check=False,
        timeout=120,
    )
    files = [e for e in fake_journal.wait_for(2) if "FILE_ID" in e]
    by_state = {e["STATE"]: e for e in files}
    assert set(by_state) >= {b"uploaded", b"rejected"}, files
    up = by_state[b"uploaded"]
    assert up["INBOX"] == b"scans" and up["FILE_PATH"] == name.encode()
    assert up["OBJECT_KEY"] and up["SHA256"]
    assert b"\n" not in up["MESSAGE"] and b"report\\nline2.pdf" in up["MESSAGE"]
    rejected = by_state[b"rejected"]
    assert rejected["FILE_PATH"] == b"empty.pdf" and rejected["REASON_CODE"]
