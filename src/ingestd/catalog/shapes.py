"""The JSON shape of one file, shared by ``files --json``, ``show``, ``report`` and ``status``
(SQLAlchemy rows and the fast reader's rows alike: anything with the columns as attributes),
and of its metadata, shared by ``files --json``, ``show`` and the webhook payloads."""

from __future__ import annotations

import json
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


def metadata_doc(row: Any) -> dict[str, Any] | None:
    """A file's metadata as every surface shows it: ``sha256`` and ``detected_type`` first,
    then the facts validation read off the content (docs/ARCHITECTURE.md, "Metadata"). None
    for a row taken in before migration 0011, or whose content was never inspected."""
    facts = getattr(row, "metadata", None)
    if isinstance(facts, str):  # a DBAPI row from the fast reader: the column's JSON text
        facts = json.loads(facts)
    if not isinstance(facts, dict):
        return None
    return {"sha256": row.sha256, "detected_type": row.detected_type, **facts}
