"""Logging set-up: a human format on a terminal, JSON lines for log shippers; either way a
record is one line with its credentials masked."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
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
    """The structured fields of a per-file outcome line (JSON logs carry them as keys)."""
    duration = seconds if seconds is not None else row.updated_at - row.discovered_at
    return {
        "file_id": row.id,
        "inbox": row.inbox,
        "path": row.relpath,
        "size": row.size,
        "sha256": (row.sha256 or "")[:12] or None,
        "outcome": outcome,
        "duration_seconds": round(duration, 3),
        "reason": row.reason_code,
        "key": key,
    }


def setup(*, fmt: str = "auto", level: str = "info") -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(sys.stderr)
    # "auto" is human-readable: journald adds its own timestamps and fields.
    use_json = fmt == "json"
    if use_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            _OneLineFormatter(
                "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
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
