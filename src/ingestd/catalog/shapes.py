"""The JSON shape of one file, shared by ``files --json``, ``show``, ``report`` and ``status``
(SQLAlchemy rows and the fast reader's rows alike: anything with the columns as attributes)."""

from __future__ import annotations

from typing import Any

FILE_FIELDS = (
    "id",
    "inbox",
    "relpath",
    "source_path",
    "size",
    "sha256",
    "state",
    "reason_code",
    "reason",
    "key",
    "destination",
    "attempts",
    "detected_type",
    "original_id",
    "batch_id",
    "discovered_at",
    "queued_at",
    "started_at",
    "finished_at",
    "next_attempt_at",
    "post_path",
    "bytes_sent",
    "upload_seconds",
    "priority",
)


def file_dict(row: Any) -> dict[str, Any]:
    """One file as the stable JSON shape (``relpath`` is published as ``path``)."""
    data = {name: getattr(row, name) for name in FILE_FIELDS}
    data["path"] = data.pop("relpath")
    return data
