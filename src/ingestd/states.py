"""File states and the only table that says which moves between them are legal."""

from __future__ import annotations

from enum import StrEnum


class FileState(StrEnum):
    """User-visible file states; the names are a stable contract (CLI, JSON, metrics)."""

    DISCOVERED = "discovered"
    QUEUED = "queued"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: frozenset[FileState] = frozenset(
    {FileState.UPLOADED, FileState.DUPLICATE, FileState.REJECTED, FileState.CANCELLED}
)

# Rows in these states still hold a claim on their content hash for dedup.
HOLDS_FINGERPRINT: frozenset[FileState] = frozenset(
    {FileState.QUEUED, FileState.UPLOADING, FileState.UPLOADED}
)

_S = FileState
ALLOWED: dict[FileState, frozenset[FileState]] = {
    # discovered -> discovered: the file changed while settling or was taken in again.
    _S.DISCOVERED: frozenset(
        {_S.DISCOVERED, _S.QUEUED, _S.DUPLICATE, _S.REJECTED, _S.FAILED, _S.CANCELLED}
    ),
    # queued -> discovered: the source changed after it was hashed; take it in again.
    _S.QUEUED: frozenset({_S.UPLOADING, _S.DISCOVERED, _S.FAILED, _S.CANCELLED, _S.UPLOADED}),
    # uploading -> queued: retry later, lane held, or shutdown mid-upload (resumes).
    # uploading -> duplicate: a file hashed during its upload (hash_while_uploading) turned
    # out to hold content another file already holds; its upload is aborted.
    _S.UPLOADING: frozenset(
        {_S.UPLOADED, _S.QUEUED, _S.DISCOVERED, _S.FAILED, _S.CANCELLED, _S.DUPLICATE}
    ),
    _S.FAILED: frozenset({_S.QUEUED, _S.DISCOVERED, _S.DUPLICATE, _S.CANCELLED}),
    _S.UPLOADED: frozenset(),
    _S.DUPLICATE: frozenset(),
    _S.REJECTED: frozenset(),
    _S.CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    """A caller asked for a state change the table does not allow: a bug, never user input."""

    def __init__(self, file_id: int, old: FileState, new: FileState) -> None:
        super().__init__(f"file {file_id}: illegal transition {old} -> {new}")
        self.file_id = file_id
        self.old = old
        self.new = new


def check_transition(file_id: int, old: FileState, new: FileState) -> None:
    """Raise IllegalTransition unless ``old -> new`` is in the allowed table."""
    if new not in ALLOWED[old]:
        raise IllegalTransition(file_id, old, new)
