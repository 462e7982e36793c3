"""The ``journal`` log format: each record sent to journald's native socket as structured
fields, without python-systemd.

The native protocol (systemd's "Native Journal Protocol" document): one datagram per entry
on ``/run/systemd/journal/socket``, each field ``KEY=value\\n``; a value holding a newline is
sent binary-safe as ``KEY\\n``, its length as 64-bit little endian, the bytes, ``\\n``. An entry
too big for a datagram goes in a sealed memfd whose descriptor is passed instead.

Fields: MESSAGE (the record's text, masked and shown through ``untrusted.shown``, so one line as
in the other formats), PRIORITY (sd-daemon, as ``logs.priority``), SYSLOG_IDENTIFIER, LOGGER,
CODE_FILE/CODE_LINE/CODE_FUNC, TRACEBACK (exact, masked), and for file records whatever the
record carries of FILE_ID, INBOX, STATE, REASON_CODE, FILE_PATH, FILE_SIZE, SHA256,
DURATION_SECONDS, OBJECT_KEY (exact values, masked: a name with a newline stays one field).
``entry_fields`` and ``encode`` are pure; ``JournalHandler`` does the I/O. See
docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import array
import errno
import fcntl
import logging
import os
import socket
import struct
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from ingestd.redact import redact_text
from ingestd.untrusted import shown

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
IDENTIFIER = "ingestd"

# Record attributes (``extra=`` of the per-file lines, ``logs.outcome_fields``) -> fields.
RECORD_FIELDS = (
    ("file_id", "FILE_ID"),
    ("inbox", "INBOX"),
    ("state", "STATE"),
    ("reason", "REASON_CODE"),
    ("path", "FILE_PATH"),
    ("size", "FILE_SIZE"),
    ("sha256", "SHA256"),
    ("duration_seconds", "DURATION_SECONDS"),
    ("key", "OBJECT_KEY"),
)


def entry_fields(record: logging.LogRecord, *, priority: int) -> list[tuple[str, str]]:
    """The journal fields of ``record`` (pure): credentials masked everywhere, MESSAGE one
    line; a field only when the record carries a value for it."""
    text = record.getMessage()
    trace = "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else ""
    if trace:
        text = f"{text}\n{trace.rstrip()}"
    fields = [
        ("MESSAGE", shown(redact_text(text))),
        ("PRIORITY", str(priority)),
        ("SYSLOG_IDENTIFIER", IDENTIFIER),
        ("LOGGER", record.name),
        ("CODE_FILE", record.pathname),
        ("CODE_LINE", str(record.lineno)),
        ("CODE_FUNC", record.funcName or ""),
    ]
    if trace:
        fields.append(("TRACEBACK", redact_text(trace)))
    for attr, name in RECORD_FIELDS:
        value = getattr(record, attr, None)
        if attr == "state" and value is None:
            value = getattr(record, "outcome", None)  # a finished file's outcome is its state
        if value is not None and value != "":
            fields.append((name, redact_text(str(value))))
    return fields


def encode(fields: list[tuple[str, str]]) -> bytes:
    """The native protocol's form of ``fields`` (pure). Names are ours (upper case, digits,
    underscores); values are bytes as they are (a file name's invalid UTF-8 kept exact)."""
    out = bytearray()
    for name, value in fields:
        data = value.encode("utf-8", "surrogateescape")
        if b"\n" in data:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


def socket_available(path: Path = JOURNAL_SOCKET) -> str | None:
    """None when journald's socket at ``path`` takes datagrams, else why not (for a warning)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect(str(path))
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    finally:
        sock.close()
    return None


class JournalHandler(logging.Handler):
    """Sends every record to journald as one entry; a record that cannot be sent (journald
    restarting) goes to ``fallback`` instead, so nothing is lost silently."""

    def __init__(
        self,
        *,
        path: Path = JOURNAL_SOCKET,
        fallback: logging.Handler,
        priority: Callable[[int], int],
    ) -> None:
        super().__init__()
        self.path = str(path)
        self.fallback = fallback
        # logs.priority, handed in: logs imports this module, so it cannot import logs back.
        self.priority = priority
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = encode(entry_fields(record, priority=self.priority(record.levelno)))
            self._send(data)
        except OSError as exc:
            self.fallback.handle(record)
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.EAGAIN):
                print(f"ingestd: journal: {exc}", file=sys.stderr)
        except Exception:
            self.handleError(record)

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendto(data, self.path)
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            self._send_memfd(data)

    def _send_memfd(self, data: bytes) -> None:
        # journald takes a big entry as a sealed memfd passed with SCM_RIGHTS (it ignores an
        # unsealed one: the sender could change it while it is read).
        fd = os.memfd_create("ingestd-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            fcntl.fcntl(
                fd,
                fcntl.F_ADD_SEALS,
                fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL,
            )
            # sendmsg, not socket.send_fds: Python 3.11's ignores its address argument.
            rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))
            self._sock.sendmsg([b""], [rights], 0, self.path)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._sock.close()
        super().close()
