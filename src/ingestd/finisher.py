"""Decides and performs the post-action for a finished file, then confirms it in the catalog."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingestd import post
from ingestd.catalog.repo import Catalog, FileRow
from ingestd.config import InboxConfig, Settings, archive_dir, quarantine_dir
from ingestd.states import FileState

if TYPE_CHECKING:
    # paramiko costs 16 MB: loaded only when an SFTP inbox is configured.
    from ingestd.sources.sftp import SftpPuller

log = logging.getLogger("ingestd.finisher")


def action_for(row: FileRow, inbox: InboxConfig) -> str:
    """The configured post-action for a row in a terminal state (pure)."""
    return action_for_state(row.state, inbox)


def action_for_state(state: FileState, inbox: InboxConfig) -> str:
    """The configured post-action for a terminal ``state`` in ``inbox`` (pure)."""
    if state == FileState.UPLOADED:
        return inbox.on_success
    if state == FileState.DUPLICATE:
        return inbox.on_duplicate
    if state == FileState.REJECTED:
        return inbox.on_reject
    return "keep"


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


class Finisher:
    """Archives, deletes, keeps or quarantines sources of finished files.

    Intake, the lanes and the daemon's retry loop all call it; one lock serialises them and
    each call re-reads the row, so a stale copy can never undo a finished post-action.
    """

    def __init__(
        self,
        *,
        catalog: Catalog,
        settings: Settings,
        pullers: Mapping[str, SftpPuller] | None = None,
    ) -> None:
        self._catalog = catalog
        self._settings = settings
        self._pullers = pullers or {}
        self._lock = threading.Lock()

    def keeps_source(self, inbox_name: str, state: FileState) -> bool:
        """True when a file of this inbox in ``state`` has no post-action at all (a local
        inbox that keeps the source, without markers): nothing to do after the outcome."""
        try:
            inbox = self._settings.inbox(inbox_name)
        except KeyError:
            return False
        return (
            inbox.type == "local"
            and not inbox.marker_suffix
            and action_for_state(state, inbox) == "keep"
        )

    def finish(self, row: FileRow) -> None:
        """Carry out the post-action for ``row`` and mark it done; safe to call again."""
        with self._lock:
            fresh = self._catalog.get(row.id)
            if fresh is None or fresh.post_done:
                return
            self._finish(fresh)

    def _finish(self, row: FileRow) -> None:
        try:
            inbox = self._settings.inbox(row.inbox)
        except KeyError:
            log.warning(
                "file %s: inbox %r is no longer configured; leaving %s in place",
                row.id,
                row.inbox,
                row.source_path,
            )
            self._catalog.finish_post(row.id, post_path=None, source_gone=False)
            return
        action = action_for(row, inbox)
        src = Path(row.source_path)
        if inbox.marker_suffix:
            # Marker first: a crash after this leaves the file, which finish_pending moves.
            post.delete_source(Path(row.source_path + inbox.marker_suffix))
        if inbox.type == "sftp":
            self._finish_remote(row, inbox, action, src)
            return
        if action != "keep" and _replaced(src, row):
            # A new version was written at the same path after this one was taken: leave it
            # for the next scan (a new row) instead of archiving or deleting it unseen.
            log.warning(
                "file %s: %s changed after it was taken; leaving the new version in place",
                row.id,
                src,
            )
            self._catalog.finish_post(row.id, post_path=None, source_gone=True)
            return
        if action == "keep":
            self._catalog.finish_post(row.id, post_path=None, source_gone=False)
        elif action == "delete":
            post.delete_source(src)
            self._catalog.finish_post(row.id, post_path=None, source_gone=True)
        else:
            root = (quarantine_dir if action == "quarantine" else archive_dir)(
                self._settings, inbox
            )
            self._move(row, src, root)

    def _finish_remote(self, row: FileRow, inbox: InboxConfig, action: str, src: Path) -> None:
        """SFTP inbox: the remote post-action is queued durably with the puller; the staged
        copy is deleted (or quarantined) so a later version of the file can be staged."""
        puller = self._pullers.get(inbox.name)
        if puller is None:
            raise OSError(f"inbox {inbox.name}: no SFTP puller for the remote post-action")
        if action == "quarantine":
            if inbox.rejected_path:
                doc = reason_document(row, original=None)
                puller.remote_reject(row.relpath, json.dumps(doc, indent=2).encode())
            else:
                puller.remote_done(row.relpath, "keep")
            self._move(row, src, quarantine_dir(self._settings, inbox))
            return
        remote = "move" if action == "archive" and inbox.archive_path else action
        puller.remote_done(row.relpath, "keep" if remote == "archive" else remote)
        post.delete_source(src)
        self._catalog.finish_post(row.id, post_path=None, source_gone=True)

    def _move(self, row: FileRow, src: Path, root: Path) -> None:
        target = Path(row.post_path) if row.post_path else None
        if target is None or not target.is_relative_to(root):
            target = self._plan(row, root)
        for _ in range(3):
            if row.state in (FileState.REJECTED, FileState.DUPLICATE):
                original = self._catalog.get(row.original_id) if row.original_id else None
                post.write_reason(target, reason_document(row, original=original))
            try:
                moved = post.finish_move(src, target)
            except FileExistsError:
                target = self._plan(row, root)  # another file took the planned name
                continue
            if not moved:
                log.warning(
                    "file %s: source %s is gone and was not found at %s", row.id, src, target
                )
                self._catalog.finish_post(row.id, post_path=None, source_gone=True)
                return
            self._catalog.finish_post(row.id, post_path=str(target), source_gone=True)
            return
        raise FileExistsError(f"file {row.id}: no free name under {root} for {row.relpath}")

    def _plan(self, row: FileRow, root: Path) -> Path:
        target = post.plan_target(root, row.relpath)
        self._catalog.plan_post(row.id, str(target))
        return target

    def finish_pending(self) -> int:
        """Finish every row whose post-action is still due (after a crash); return how many."""
        done = 0
        for row in self._catalog.pending_post():
            try:
                self.finish(row)
                done += 1
            except OSError as exc:
                log.error("file %s: post-action failed: %s (will retry)", row.id, exc)
        return done


def _replaced(src: Path, row: FileRow) -> bool:
    """True when ``src`` exists but is not the version the row took (size or mtime differ)."""
    try:
        st = os.stat(src, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns)
