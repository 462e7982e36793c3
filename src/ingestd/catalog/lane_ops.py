"""Catalog operations of the upload lanes: lane lease, claims, the multipart journal, outcomes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ingestd.catalog import db, stmts
from ingestd.catalog.base import CatalogBase
from ingestd.catalog.notices import Notice, announce
from ingestd.catalog.rows import (
    Claim,
    FileRow,
    PartRecord,
    StaleState,
)
from ingestd.catalog.schema import events, files, lanes, parts
from ingestd.errors import SourceChanged
from ingestd.states import FileState


class LaneOps(CatalogBase):
    """Catalog operations of the upload lanes: lease, claims, multipart journal, outcomes."""

    def acquire_lane(self, destination: str, *, owner: str, lease_seconds: float) -> bool:
        """Take or renew the lane's lease: one node uploads to a destination at a time."""
        now = self.clock()

        def run(conn: Connection) -> bool:
            exists = conn.execute(
                select(lanes.c.destination).where(lanes.c.destination == destination)
            ).one_or_none()
            if exists is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(lanes).values(destination=destination, updated_at=now))
                except IntegrityError:
                    pass
            result = conn.execute(
                update(lanes)
                .where(
                    lanes.c.destination == destination,
                    or_(
                        lanes.c.owner.is_(None), lanes.c.owner == owner, lanes.c.lease_expires < now
                    ),
                )
                .values(owner=owner, lease_expires=now + lease_seconds)
            )
            return bool(result.rowcount)

        return self._write(run)

    def release_lane(self, destination: str, *, owner: str) -> None:
        self._write(
            lambda c: c.execute(
                update(lanes)
                .where(lanes.c.destination == destination, lanes.c.owner == owner)
                .values(owner=None, lease_expires=None, current_file_id=None)
            )
        )

    def claim_next(
        self,
        destination: str,
        *,
        owner: str,
        lease_seconds: float,
        plan: Callable[[FileRow], str | None] | None = None,
        aging_seconds: float = 0.0,
    ) -> FileRow | None:
        """Move the next due ``queued`` file of this destination (see ``_next_in_order``) to
        ``uploading``, leased.

        ``plan`` names the key the file will most likely be written under; it is recorded in the
        same transaction (intent before effect, without a commit of its own) unless a key was
        planned before, or ``plan`` gives None.
        """
        claim = Claim(
            destination=destination,
            owner=owner,
            lease_seconds=lease_seconds,
            plan=plan,
            aging_seconds=aging_seconds,
        )
        return self._write(lambda conn: self._claim(conn, claim))

    def _claim(self, conn: Connection, claim: Claim) -> FileRow | None:
        now = self.clock()
        row = self._next_in_order(conn, claim, now)
        if row is None:
            return None
        values: dict[str, Any] = {
            "lease_owner": claim.owner,
            "lease_expires": now + claim.lease_seconds,
            "started_at": now,
            "bytes_sent": 0,
            "updated_at": now,
        }
        if claim.plan is not None and row.key is None and (key := claim.plan(row)) is not None:
            values["key"] = key
        self._transition(
            conn,
            row.id,
            FileState.UPLOADING,
            code="claimed",
            detail=f"by {claim.owner}",
            values=values,
            current=row.state,
        )
        conn.execute(stmts.LANE_CURRENT, {"p_dest": claim.destination, "p_id": row.id, "p_at": now})
        return replace(row, state=FileState.UPLOADING, **values)

    def _next_in_order(self, conn: Connection, claim: Claim, now: float) -> FileRow | None:
        """The queue's next due file: the highest priority, first come within it; but the
        oldest due file instead once it has waited ``aging_seconds`` (no priority starves the
        rest). Two index seeks (ix_files_lane_priority, ix_files_lane). On PostgreSQL both
        skip rows other transactions locked; the one not taken is unlocked at commit."""
        params = {"p_dest": claim.destination, "p_now": now}
        by_priority = (
            stmts.NEXT_DUE_BY_PRIORITY_SKIP_LOCKED if self._pg else stmts.NEXT_DUE_BY_PRIORITY
        )
        first = conn.execute(by_priority, params).one_or_none()
        if first is None:
            return None
        row = FileRow.from_row(first)
        if claim.aging_seconds <= 0:
            return row
        oldest_query = stmts.NEXT_DUE_SKIP_LOCKED if self._pg else stmts.NEXT_DUE
        oldest = conn.execute(oldest_query, params).one_or_none()
        if oldest is None or oldest.id == row.id:
            return row
        waited_since = oldest.queued_at if oldest.queued_at is not None else now
        if waited_since <= now - claim.aging_seconds:
            return FileRow.from_row(oldest)
        return row

    def renew(self, file_id: int, *, owner: str, lease_seconds: float, bytes_sent: int) -> bool:
        """Extend our lease and publish progress; False when the row is no longer ours."""
        now = self.clock()
        result = self._write(
            lambda c: c.execute(
                update(files)
                .where(
                    files.c.id == file_id,
                    files.c.lease_owner == owner,
                    files.c.state == FileState.UPLOADING.value,
                )
                .values(lease_expires=now + lease_seconds, bytes_sent=bytes_sent, updated_at=now)
            )
        )
        return bool(result.rowcount)

    def plan_key(self, file_id: int, key: str) -> None:
        """Record the object key before anything is written under it (intent before effect)."""
        self._write(lambda c: c.execute(update(files).where(files.c.id == file_id).values(key=key)))

    def upload_creating(self, file_id: int) -> None:
        """Intent before effect for CreateMultipartUpload: a timeline entry, committed before
        the request (its answer, the UploadId, is recorded by ``upload_started``)."""
        self.add_event(file_id, code="multipart_creating", detail="creating a multipart upload")

    def creation_unrecorded(self, file_id: int) -> bool:
        """True when the file's last multipart entry is ``multipart_creating``, not
        ``multipart_started``: a crash came between the request and the record of its
        UploadId."""
        with db.read_tx(self.engine) as conn:
            last = conn.execute(
                select(events.c.code)
                .where(
                    events.c.file_id == file_id,
                    events.c.code.in_(("multipart_creating", "multipart_started")),
                )
                .order_by(events.c.id.desc())
                .limit(1)
            ).scalar()
        return last == "multipart_creating"

    def upload_started(self, file_id: int, *, key: str, upload_id: str, part_size: int) -> None:
        def run(conn: Connection) -> None:
            conn.execute(delete(parts).where(parts.c.file_id == file_id))
            conn.execute(
                update(files)
                .where(files.c.id == file_id)
                .values(key=key, upload_id=upload_id, part_size=part_size)
            )
            conn.execute(
                insert(events).values(
                    file_id=file_id,
                    at=self.clock(),
                    code="multipart_started",
                    detail=f"upload id {upload_id}, parts of {part_size} bytes",
                )
            )

        self._write(run)

    def part_done(self, file_id: int, upload_id: str, part: PartRecord) -> None:
        self._write(
            lambda c: c.execute(
                insert(parts).values(
                    file_id=file_id,
                    part_number=part.part_number,
                    upload_id=upload_id,
                    size=part.size,
                    etag=part.etag,
                    md5=part.md5_hex,
                )
            )
        )

    def forget_upload(self, file_id: int) -> None:
        """The file's multipart upload is gone (completed, aborted, unknown to the server). A
        duplicate found during its upload also loses its key: nothing is stored under it."""

        def run(conn: Connection) -> None:
            conn.execute(delete(parts).where(parts.c.file_id == file_id))
            conn.execute(
                update(files).where(files.c.id == file_id).values(upload_id=None, part_size=None)
            )
            conn.execute(
                update(files)
                .where(files.c.id == file_id, files.c.state == FileState.DUPLICATE.value)
                .values(key=None)
            )

        self._write(run)

    def parts(self, file_id: int) -> dict[int, PartRecord]:
        with db.read_tx(self.engine) as conn:
            rows = conn.execute(
                select(parts).where(parts.c.file_id == file_id).order_by(parts.c.part_number)
            ).all()
        return {r.part_number: PartRecord(r.part_number, int(r.size), r.etag, r.md5) for r in rows}

    def mark_uploaded(
        self,
        file_id: int,
        *,
        key: str,
        seconds: float,
        bytes_sent: int,
        detail: str,
        post_done: bool = False,
        then_claim: Claim | None = None,
    ) -> FileRow | None:
        """The object is stored and verified. The post-action is still due, unless
        ``post_done`` says there is none (the source is kept): one transaction instead of two.

        ``then_claim``: claim the lane's next file in the same transaction and return it (None
        when nothing is due). A lane working through its queue thus commits once per file; the
        success is no less durable, and the claim of the next file is still recorded before
        anything of it is sent (docs/ARCHITECTURE.md, "The lane")."""

        def run(conn: Connection) -> FileRow | None:
            self._transition(
                conn,
                file_id,
                FileState.UPLOADED,
                expect={FileState.UPLOADING, FileState.QUEUED},
                code="uploaded",
                detail=detail,
                values={
                    "key": key,
                    "upload_seconds": seconds,
                    "bytes_sent": bytes_sent,
                    "upload_id": None,
                    "reason_code": None,
                    "reason": None,
                    "next_attempt_at": None,
                    "post_done": post_done,
                },
            )
            conn.execute(stmts.DELETE_PARTS, {"p_id": file_id})
            conn.execute(stmts.FINGERPRINT_KEY, {"p_id": file_id, "p_key": key})
            return None if then_claim is None else self._claim(conn, then_claim)

        return self._write(run)

    def retry_later(
        self,
        file_id: int,
        *,
        code: str,
        error: str,
        next_attempt_at: float | None,
        count_attempt: bool,
        max_attempts: int,
        owner: str | None = None,
        notice: Notice | None = None,
    ) -> FileState:
        """Put an uploading file back in the queue, or ``failed`` once attempts run out.

        With ``owner``, only while that owner still holds the lease: a node whose lease was
        reclaimed must not pull a file back that another node is uploading (StaleState).
        ``notice``: the notification of a failure, written in the failure's transaction.
        """

        def run(conn: Connection) -> FileState:
            query = select(files.c.attempts, files.c.state, files.c.lease_owner).where(
                files.c.id == file_id
            )
            if self._pg:
                query = query.with_for_update()
            row = conn.execute(query).one()
            if row.state != FileState.UPLOADING.value or (
                owner is not None and row.lease_owner != owner
            ):
                raise StaleState(f"file {file_id} is no longer uploading under {owner}")
            attempts = int(row.attempts) + (1 if count_attempt else 0)
            base = {
                "attempts": attempts,
                "reason_code": code,
                "reason": error,
                "lease_owner": None,
                "lease_expires": None,
            }
            if count_attempt and attempts >= max_attempts:
                self._transition(
                    conn,
                    file_id,
                    FileState.FAILED,
                    code=code,
                    detail=f"gave up after {attempts} attempts: {error}",
                    values=base,
                )
                announce(conn, self._get(conn, file_id), notice, now=self.clock())
                return FileState.FAILED
            self._transition(
                conn,
                file_id,
                FileState.QUEUED,
                code=code,
                detail=error,
                values={**base, "next_attempt_at": next_attempt_at},
            )
            return FileState.QUEUED

        return self._write(run)

    def record_content(
        self, file_id: int, *, sha256: str, owner: str, keeps_duplicate: bool
    ) -> tuple[int, str | None] | None:
        """The SHA-256 of an uploading file that was queued unhashed (hash_policy.py), taken
        by its upload before the object is completed: recorded, and its fingerprint claimed,
        in one transaction. Returns None when the upload may complete; else (after recording
        the file ``duplicate`` of the holder, its upload still recorded so that the lane, or
        the orphan sweep after a crash, aborts it) the holder's id and key.
        ``keeps_duplicate``: the inbox keeps a duplicate's source, so no post-action is due.

        Raises StaleState when the file is no longer this owner's upload, and SourceChanged
        when an earlier attempt recorded another digest (its content changed meanwhile)."""

        def run(conn: Connection) -> tuple[int, str | None] | None:
            row = self._get(conn, file_id, for_update=True)
            if row is None or row.state != FileState.UPLOADING or row.lease_owner != owner:
                raise StaleState(f"file {file_id} is no longer uploading for {owner}")
            if row.sha256 == sha256:
                return None  # recorded before a restart: the resumed upload completes
            if row.sha256 is not None:
                raise SourceChanged(
                    f"{row.source_path}: content hashed {sha256[:12]} during the upload, "
                    f"{row.sha256[:12]} before; taking it in again"
                )
            conn.execute(update(files).where(files.c.id == file_id).values(sha256=sha256))
            holder = None
            if row.dedup_scope is not None:
                holder = self._claim_fingerprint(conn, row.dedup_scope, sha256, file_id)
            if holder is None or holder[0] == file_id:
                conn.execute(
                    insert(events).values(
                        file_id=file_id,
                        at=self.clock(),
                        code="hashed",
                        detail=f"sha256 {sha256[:12]}, taken during the upload",
                    )
                )
                return None
            detail = f"same content as file {holder[0]}" + (f" ({holder[1]})" if holder[1] else "")
            self._transition(
                conn,
                file_id,
                FileState.DUPLICATE,
                current=FileState.UPLOADING,
                code="duplicate",
                detail=f"{detail}, found during the upload; upload abandoned",
                values={
                    "original_id": holder[0],
                    "reason_code": "duplicate",
                    "reason": detail,
                    "post_done": keeps_duplicate,
                    "next_attempt_at": None,
                },
            )
            return holder

        return self._write(run)

    def source_changed(self, file_id: int, *, detail: str) -> None:
        """The source changed after intake hashed it: back to ``discovered``, intake's again
        (it settles and hashes the file anew), without an attempt counted. A recorded
        multipart upload is forgotten with it: it holds parts of the old content, and a resume
        of it would store a mix (the lane aborts it first, where it can)."""

        def run(conn: Connection) -> None:
            self._transition(
                conn,
                file_id,
                FileState.DISCOVERED,
                code="changed",
                detail=detail,
                values={
                    "lease_owner": None,
                    "lease_expires": None,
                    "upload_id": None,
                    "part_size": None,
                },
            )
            conn.execute(stmts.DELETE_PARTS, {"p_id": file_id})

        self._write(run)

    def cancel_uploading(self, file_id: int) -> None:
        """The operator cancelled the file during its upload (its multipart upload already
        aborted and forgotten): ``cancelled``, the source left in place."""
        self.transition(
            file_id,
            FileState.CANCELLED,
            code="cancelled",
            detail="cancelled by the operator during upload; source left in place",
            values={
                "reason_code": "cancelled",
                "reason": "cancelled by the operator",
                "post_done": True,
            },
        )

    def reclaim_expired(self, *, owner: str, include_own: bool = True) -> list[int]:
        """Uploads whose lease expired (a node died), or with ``include_own`` that this node
        held before it restarted, go back to the queue; their recorded multipart upload is
        kept so they resume. Lanes call it periodically with ``include_own=False``."""
        now = self.clock()

        def run(conn: Connection) -> list[int]:
            lost = [files.c.lease_owner.is_(None), files.c.lease_expires < now]
            if include_own:
                lost.append(files.c.lease_owner == owner)
            query = select(files.c.id).where(files.c.state == FileState.UPLOADING.value, or_(*lost))
            if self._pg:
                # Other nodes may reclaim or renew these rows now: lock them, skip those they
                # hold (PostgreSQL re-checks state and lease of each row it locks).
                query = query.with_for_update(skip_locked=True)
            ids = conn.execute(query).scalars().all()
            for file_id in ids:
                self._transition(
                    conn,
                    file_id,
                    FileState.QUEUED,
                    code="resumed",
                    detail="upload interrupted (restart or lost lease); resuming",
                    values={"lease_owner": None, "lease_expires": None},
                )
            return list(ids)

        return self._write(run)
