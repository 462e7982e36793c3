"""Plain data the catalog hands out, and its errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Row

from ingestd.states import FileState


@dataclass(frozen=True)
class FileRow:
    """One row of ``files`` as plain data."""

    id: int
    inbox: str
    relpath: str
    source_path: str
    source_key: str | None
    owner: str
    size: int
    mtime_ns: int
    sha256: str | None
    detected_type: str | None
    content_type: str | None
    dedup_scope: str | None
    state: FileState
    reason_code: str | None
    reason: str | None
    attempts: int
    next_attempt_at: float | None
    destination: str | None
    key: str | None
    original_id: int | None
    batch_id: int | None
    discovered_at: float
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    updated_at: float
    lease_owner: str | None
    lease_expires: float | None
    cancel_requested: bool
    post_done: bool
    post_path: str | None
    upload_id: str | None
    part_size: int | None
    bytes_sent: int
    upload_seconds: float | None
    md5: str | None
    ctime_ns: int | None
    priority: int = 0  # last, with a default: rows built by hand (tests) need not name it

    @classmethod
    def from_row(cls, row: Row[Any]) -> FileRow:
        data = dict(row._mapping)
        data["state"] = FileState(data["state"])
        data["cancel_requested"] = bool(data["cancel_requested"])
        data["post_done"] = bool(data["post_done"])
        return cls(**data)


FILE_COLUMNS = tuple(f.name for f in fields(FileRow))


class StaleState(Exception):
    """The row is no longer in the state the caller expected (another actor moved it first)."""


@dataclass(frozen=True)
class Claim:
    """What a lane asks for when it claims its next file: the first due ``queued`` file of
    ``destination`` in queue order (priority, then first come; see ``aging_seconds``), leased
    to ``owner``; ``plan`` renders the key to record with the claim."""

    destination: str
    owner: str
    lease_seconds: float
    plan: Callable[[FileRow], str | None] | None = None
    # A file queued longer ago than this goes before newer files of any priority (0: never).
    aging_seconds: float = 0.0


@dataclass(frozen=True)
class Seen:
    """What ``observe`` decided about a file found on disk."""

    file_id: int
    state: FileState
    new: bool  # a row was created (first sight, or a new version of a path)


@dataclass(frozen=True)
class QueueOutcome:
    state: FileState  # queued or duplicate
    original_id: int | None = None
    original_key: str | None = None


def source_key(inbox: str, relpath: str, *, postgres: bool = False) -> str:
    # PostgreSQL text cannot hold NUL; "/" is as unambiguous there (inbox names never contain it).
    return f"{inbox}{'/' if postgres else chr(0)}{relpath}"


@dataclass(frozen=True)
class PartRecord:
    """One multipart part the server acknowledged (a row of ``parts``)."""

    part_number: int
    size: int
    etag: str
    md5_hex: str


@dataclass(frozen=True)
class OutboxItem:
    """One pending notification (a row of ``webhook_outbox``)."""

    id: int
    event: str
    payload: Mapping[str, Any]
    attempts: int
    created_at: float
