"""Carries out the post-actions of a batch of rows and confirms them in the catalog.

Intent before effect, so a kill -9 at any moment neither loses a file nor acts twice: a move's
target is recorded (``plan_posts``) before anything moves; a source is removed only once the
folders it went to are flushed; a row is confirmed (``confirm_posts``) only once the folders
it left are flushed. Every effect can be repeated after a crash and ends in the same place
(files.place finds a file already there). A batch flushes each folder once, however many
files went into it (docs/ARCHITECTURE.md, "post-actions").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import ingestd.pipeline.post.files as files  # a module, not the package: no circle
from ingestd.catalog.repo import Catalog, FileRow, PostDone
from ingestd.config import InboxConfig, Settings
from ingestd.fsync import DirSyncs
from ingestd.pipeline.post.plan import Step, reason_document, step_for

log = logging.getLogger("ingestd.post")
# Free names tried for one move when others keep taking the planned one.
PLAN_TRIES = 3


class RemoteInbox(Protocol):
    """What the stage asks of an SFTP inbox (sources/sftp.py's puller): record the remote
    post-action durably; the puller carries it out over its connection."""

    def remote_done(self, relpath: str, action: str) -> None: ...

    def remote_reject(self, relpath: str, reason_json: bytes) -> None: ...


@dataclass(frozen=True)
class Failure:
    """A row whose post-action could not be done this time (it stays due)."""

    file_id: int
    error: str


@dataclass(frozen=True)
class _Removal:
    """A source to remove once the batch's targets are flushed, then confirm as ``done``."""

    src: Path
    done: PostDone


def _nothing() -> None:
    return None


class PostActions:
    """Archives, deletes, keeps or quarantines the sources of rows in a terminal state."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        settings: Settings,
        remotes: Mapping[str, RemoteInbox],
        progress: Callable[[], None] = _nothing,
    ) -> None:
        """``remotes``: the SFTP inboxes by name; ``progress`` hears that one more row was
        handled (a long cross-filesystem copy must not look like a stuck loop)."""
        self._catalog = catalog
        self._settings = settings
        self._remotes = remotes
        self._progress = progress

    def perform(self, rows: Sequence[FileRow]) -> list[Failure]:
        """Do the post-action of every row, confirm those done in one transaction, and return
        those that failed (they are left due, to be tried again)."""
        failures: list[Failure] = []
        done: list[PostDone] = []
        steps: list[tuple[FileRow, Step]] = []
        for row in rows:
            inbox = self._inbox(row)
            if inbox is None:
                done.append(PostDone(row.id, post_path=None, source_gone=False))
            else:
                steps.append((row, step_for(row, inbox, self._settings)))
        targets = self._plan_targets(steps)
        to_flush = DirSyncs()  # folders something went into: flushed before any source goes
        removals: list[_Removal] = []
        for row, step in steps:
            try:
                outcome = self._effect(row, step, targets.get(row.id), to_flush)
            except Exception as exc:  # one bad file must not stop the batch
                failures.append(Failure(row.id, _describe(exc)))
                continue
            finally:
                self._progress()
            if isinstance(outcome, _Removal):
                removals.append(outcome)
            else:
                done.append(outcome)
        to_flush.sync()
        left = DirSyncs()  # folders a source left: flushed before the rows are confirmed
        for removal in removals:
            try:
                files.remove(removal.src, syncs=left)
            except OSError as exc:
                failures.append(Failure(removal.done.file_id, _describe(exc)))
                continue
            done.append(removal.done)
        left.sync()
        self._catalog.confirm_posts(done)
        return failures

    def _inbox(self, row: FileRow) -> InboxConfig | None:
        try:
            return self._settings.inbox(row.inbox)
        except KeyError:
            log.warning(
                "file %s: inbox %r is no longer configured; leaving %s in place",
                row.id,
                row.inbox,
                row.source_path,
                extra=_fields(row),
            )
            return None

    def _plan_targets(self, steps: Sequence[tuple[FileRow, Step]]) -> dict[int, Path]:
        """Where each move goes: the target recorded by an earlier attempt, or a free name
        recorded now (one transaction for the batch), before anything moves."""
        targets: dict[int, Path] = {}
        planned: dict[int, str] = {}
        for row, step in steps:
            if step.local != "move" or step.root is None:
                continue
            earlier = Path(row.post_path) if row.post_path else None
            if earlier is not None and earlier.is_relative_to(step.root):
                targets[row.id] = earlier
                continue
            try:
                target = files.plan_target(step.root, row.relpath, taken=targets.values())
            except ValueError:
                continue  # an unsafe relpath: _effect fails it, row by row
            targets[row.id] = target
            planned[row.id] = str(target)
        self._catalog.plan_posts(planned)
        return targets

    def _effect(
        self, row: FileRow, step: Step, target: Path | None, to_flush: DirSyncs
    ) -> PostDone | _Removal:
        src = Path(row.source_path)
        if step.marker is not None:
            # The marker goes first: a marker left beside a new file of the same name would
            # announce it complete before it is.
            files.remove(step.marker, syncs=to_flush)
        if step.check_replaced and files.replaced(src, size=row.size, mtime_ns=row.mtime_ns):
            # A new version was written at the same path after this one was taken: leave it
            # for the next scan (a new row) instead of archiving or deleting it unseen.
            log.warning(
                "file %s: %s changed after it was taken; leaving the new version in place",
                row.id,
                src,
                extra=_fields(row),
            )
            return PostDone(row.id, post_path=None, source_gone=True)
        if step.remote is not None:
            self._ask_remote(row, step)
        if step.local == "keep":
            return PostDone(row.id, post_path=None, source_gone=False)
        if step.local == "delete":
            return _Removal(src, PostDone(row.id, post_path=None, source_gone=True))
        return self._move(row, step, src, target, to_flush)

    def _ask_remote(self, row: FileRow, step: Step) -> None:
        remote = self._remotes.get(row.inbox)
        if remote is None:
            raise OSError(f"inbox {row.inbox}: no SFTP puller for the remote post-action")
        if step.remote == "reject":
            doc = reason_document(row, original=None)
            remote.remote_reject(row.relpath, json.dumps(doc, indent=2).encode())
        else:
            remote.remote_done(row.relpath, step.remote or "keep")

    def _move(
        self, row: FileRow, step: Step, src: Path, target: Path | None, to_flush: DirSyncs
    ) -> PostDone | _Removal:
        assert step.root is not None
        if target is None:
            target = self._replan(row, step.root)
        for _ in range(PLAN_TRIES):
            if step.reason:
                original = self._catalog.get(row.original_id) if row.original_id else None
                files.write_reason(target, reason_document(row, original=original), syncs=to_flush)
            try:
                placed = files.place(src, target, syncs=to_flush)
            except FileExistsError:
                target = self._replan(row, step.root)  # another file took the planned name
                continue
            if not placed:
                log.warning(
                    "file %s: source %s is gone and was not found at %s",
                    row.id,
                    src,
                    target,
                    extra=_fields(row),
                )
                return PostDone(row.id, post_path=None, source_gone=True)
            if step.disarm:
                files.disarm(target)
            return _Removal(src, PostDone(row.id, post_path=str(target), source_gone=True))
        raise FileExistsError(f"file {row.id}: no free name under {step.root} for {row.relpath}")

    def _replan(self, row: FileRow, root: Path) -> Path:
        target = files.plan_target(root, row.relpath)
        self._catalog.plan_post(row.id, str(target))
        return target


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _fields(row: FileRow) -> dict[str, object]:
    """The structured fields of a post-action line (the journal format's FILE_ID, INBOX ...)."""
    return {"file_id": row.id, "inbox": row.inbox, "path": row.relpath, "state": row.state.value}
