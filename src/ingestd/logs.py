"""Logging set-up: a human format on a terminal, JSON lines for log shippers; either way a
record is one line with its credentials masked.

Under journald (``JOURNAL_STREAM`` names the device and inode of our stderr, see
systemd.exec(5)) the ``auto`` format writes no timestamp of its own (the journal has one) and
starts each line with the sd-daemon(3) priority prefix, ``<3>`` for an error ... ``<7>`` for
debug, so ``journalctl -p warning`` finds ingestd's warnings. The ``journal`` format sends
structured entries to journald's native socket instead (``ingestd.journal``), and falls back to
``auto`` with a warning where there is no such socket.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingestd.redact import redact_text
from ingestd.untrusted import json_safe, shown


def redact(text: str) -> str:
    """Mask every credential ``text`` quotes (see ``ingestd.redact``)."""
    return redact_text(text)


class _OneLineFormatter(logging.Formatter):
    """The human format: credentials masked, and always exactly one line, whatever a file
    name, a server's message or a traceback holds (``\\n`` and other controls escaped), so a
    name cannot forge a log record of its own."""

    def format(self, record: logging.LogRecord) -> str:
        return shown(redact(super().format(record)))


# sd-daemon(3) / syslog(3) priorities, by Python level (the highest level at or below a record's).
_PRIORITIES = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
DEBUG_PRIORITY = 7


def priority(levelno: int) -> int:
    """The syslog priority of a Python log level: CRITICAL 2, ERROR 3, WARNING 4, INFO 6,
    anything lower 7 (debug)."""
    for level, prio in _PRIORITIES:
        if levelno >= level:
            return prio
    return DEBUG_PRIORITY


def under_journald(environ: dict[str, str] | None = None, fd: int | None = None) -> bool:
    """Whether stderr (or ``fd``) is the journal's stream: ``JOURNAL_STREAM`` is
    ``<device>:<inode>`` of the stream systemd connected, and it must be this very file (a
    child whose stderr was redirected inherits the variable, not the stream)."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(sys.stderr.fileno() if fd is None else fd)
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


class JournalFormatter(_OneLineFormatter):
    """The human format for journald: ``<N>logger: message``, one line, no timestamp (the
    journal stamps each line) and the priority as an sd-daemon prefix (the journal stores it
    as PRIORITY and strips it from MESSAGE)."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return f"<{priority(record.levelno)}>{super().format(record)}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and exception text if any.
    Values stay exact (JSON escapes newlines), credentials masked, and nothing a terminal
    interprets is written raw."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key in OUTCOME_KEYS:
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_info:
            doc["exception"] = redact(self.formatException(record.exc_info))
        return json_safe(json.dumps(doc, ensure_ascii=False, default=str))


OUTCOME_KEYS = (
    "file_id",
    "inbox",
    "state",
    "path",
    "size",
    "sha256",
    "outcome",
    "duration_seconds",
    "reason",
    "key",
)


def outcome_fields(
    row: Any, outcome: str, *, seconds: float | None = None, key: str | None = None
) -> dict[str, Any]:
    """The structured fields of a per-file outcome line (JSON logs carry them as keys, the
    journal format as FILE_ID, INBOX, STATE ...); ``outcome`` is the state the file ended in."""
    duration = seconds if seconds is not None else row.updated_at - row.discovered_at
    return {
        "file_id": row.id,
        "inbox": row.inbox,
        "state": outcome,
        "path": row.relpath,
        "size": row.size,
        "sha256": (row.sha256 or "")[:12] or None,
        "outcome": outcome,
        "duration_seconds": round(duration, 3),
        "reason": row.reason_code,
        "key": key,
    }


def formatter(fmt: str, *, journald: bool) -> logging.Formatter:
    """The formatter of log format ``fmt``: ``json``; ``human``; ``auto`` is human, but
    with sd-daemon priorities and no timestamp when stderr is the journal (``journald``)."""
    if fmt == "json":
        return JsonFormatter()
    if fmt == "auto" and journald:
        return JournalFormatter()
    return _OneLineFormatter(
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
    )


def file_fields(
    *, file_id: int, inbox: str, path: str, state: str, reason_code: str | None = None
) -> dict[str, Any]:
    """The structured fields of a file's line that is no outcome (a retry, a failure)."""
    return {"file_id": file_id, "inbox": inbox, "path": path, "state": state, "reason": reason_code}


def setup(*, fmt: str = "auto", level: str = "info", journal_socket: Path | None = None) -> None:
    """Configure the root logger once for the process. ``journal`` sends entries to
    ``journal_socket`` (default /run/systemd/journal/socket); where it is not available the
    format is ``auto``, with a warning saying why."""
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter("auto" if fmt == "journal" else fmt, journald=under_journald()))
    handler: logging.Handler = stderr
    unavailable = None
    if fmt == "journal":
        from ingestd import journal

        path = journal_socket or journal.JOURNAL_SOCKET
        unavailable = journal.socket_available(path)
        if unavailable is None:
            handler = journal.JournalHandler(path=path, fallback=stderr, priority=priority)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if unavailable is not None:
        logging.getLogger("ingestd").warning(
            "log format journal: the journal's socket is not available (%s); using auto",
            unavailable,
        )
    for noisy in (
        "botocore",
        "boto3",
        "urllib3",
        "s3transfer",
        "watchdog",
        "apscheduler",
        "paramiko",
        "alembic",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
