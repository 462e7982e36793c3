"""What the post-action of one row is, decided from the row and its inbox alone (pure): the
stage's performer (perform.py) then carries it out (docs/ARCHITECTURE.md, "post-actions")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ingestd.catalog.repo import FileRow
from ingestd.config import InboxConfig, Settings, archive_dir, quarantine_dir
from ingestd.post_policy import action_for_state
from ingestd.states import FileState

# What happens to the local file (an SFTP inbox's local file is its staged copy).
Local = Literal["keep", "delete", "move"]
# What an SFTP inbox is asked to do on the server (None: a local inbox).
Remote = Literal["keep", "delete", "move", "reject"]


@dataclass(frozen=True)
class Step:
    """One row's post-action, ready to perform."""

    local: Local
    root: Path | None = None  # the folder a ``move`` mirrors the relpath into
    remote: Remote | None = None
    marker: Path | None = None  # the inbox's marker file, removed first
    reason: bool = False  # a ``.reason.json`` goes beside the moved file
    # Quarantined files lose their execute (and set-id) bits: what was refused must not be
    # one click away from running (docs/SECURITY.md, "Paths").
    disarm: bool = False
    # A local source replaced by a new version since it was taken is left alone (the new
    # version is a new row); a staged SFTP copy never is (nobody else writes staging).
    check_replaced: bool = False


def step_for(row: FileRow, inbox: InboxConfig, settings: Settings) -> Step:
    """The post-action of ``row`` (in a terminal state) in ``inbox``."""
    action = action_for_state(row.state, inbox)
    marker = Path(row.source_path + inbox.marker_suffix) if inbox.marker_suffix else None
    explained = row.state in (FileState.REJECTED, FileState.DUPLICATE)
    if inbox.type == "sftp":
        if action == "quarantine":
            # The partner sees why in rejected_path when there is one; without it the remote
            # file stays (remembered as taken) and only the staged copy is quarantined.
            return Step(
                local="move",
                root=quarantine_dir(settings, inbox),
                remote="reject" if inbox.rejected_path else "keep",
                marker=marker,
                reason=explained,
                disarm=True,
            )
        remote: Remote
        if action == "archive":
            remote = "move" if inbox.archive_path else "keep"
        elif action == "delete":
            remote = "delete"
        else:
            remote = "keep"
        # The staged copy goes in every case, so a later version of the file can be staged.
        return Step(local="delete", remote=remote, marker=marker)
    if action == "keep":
        return Step(local="keep", marker=marker)
    if action == "delete":
        return Step(local="delete", marker=marker, check_replaced=True)
    quarantine = action == "quarantine"
    root = (quarantine_dir if quarantine else archive_dir)(settings, inbox)
    return Step(
        local="move",
        root=root,
        marker=marker,
        reason=explained,
        check_replaced=True,
        disarm=quarantine,
    )


def reason_document(row: FileRow, *, original: FileRow | None) -> dict[str, Any]:
    """The ``.reason.json`` content placed beside a quarantined or archived-duplicate file."""
    doc: dict[str, Any] = {
        "file_id": row.id,
        "inbox": row.inbox,
        "path": row.relpath,
        "state": row.state.value,
        "codes": [c for c in (row.reason_code or "").split(",") if c],
        "messages": [m for m in (row.reason or "").split("\n") if m],
        "sha256": row.sha256,
        "size": row.size,
        "detected_type": row.detected_type,
        "time": datetime.fromtimestamp(row.updated_at, UTC).isoformat(),
    }
    if row.state == FileState.DUPLICATE:
        doc["original_id"] = row.original_id
        doc["original_path"] = original.relpath if original else None
        doc["original_key"] = original.key if original else None
    return doc
