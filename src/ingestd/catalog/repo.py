"""The catalog repository: the only code that writes a file's state.

Every transition is checked against ``states.ALLOWED`` and written together with its event row in
one short transaction. Reads live in ``catalog.queries``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Row, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ingestd.catalog import db
from ingestd.catalog.schema import batches, events, files, fingerprints, lanes, nodes, parts
from ingestd.destinations.base import PartRecord
from ingestd.states import HOLDS_FINGERPRINT, TERMINAL, FileState, check_transition

Clock = Callable[[], float]
T = TypeVar("T")


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


class Catalog:
    """Durable state of every file, the upload lanes and the nodes."""

    def __init__(self, engine: Engine, *, clock: Clock = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self._pg = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, clock: Clock = time.time) -> Catalog:
        """Connect, and (unless ``migrate`` is False) apply pending migrations first."""
        if not migrate:
            db.require_existing(url)
        engine = db.make_engine(url)
        if migrate:
            db.migrate(engine)
        return cls(engine, clock=clock)

    def close(self) -> None:
        self.engine.dispose()

    def _write(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            with db.write_tx(self.engine) as conn:
                return fn(conn)

        return db.retry_locked(run)

    # ------------------------------------------------------------------ transitions

    def _transition(
        self,
        conn: Connection,
        file_id: int,
        to: FileState,
        *,
        expect: Iterable[FileState] | None = None,
        code: str | None = None,
        detail: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> FileState:
        query = select(files.c.state).where(files.c.id == file_id)
        if self._pg:
            query = query.with_for_update()
        current = conn.execute(query).scalar_one_or_none()
        if current is None:
            raise KeyError(file_id)
        old = FileState(current)
        if expect is not None and old not in set(expect):
            raise StaleState(f"file {file_id} is {old}, expected one of {sorted(expect)}")
        check_transition(file_id, old, to)
        now = self.clock()
        vals: dict[str, Any] = {"state": to.value, "updated_at": now}
        if to in TERMINAL or to == FileState.FAILED:
            vals["finished_at"] = now
            vals["lease_owner"] = None
            vals["lease_expires"] = None
        vals.update(values or {})
        if old in HOLDS_FINGERPRINT and to not in HOLDS_FINGERPRINT:
            conn.execute(delete(fingerprints).where(fingerprints.c.file_id == file_id))
        conn.execute(update(files).where(files.c.id == file_id).values(**vals))
        conn.execute(
            insert(events).values(
                file_id=file_id,
                at=now,
                from_state=old.value,
                to_state=to.value,
                code=code,
                detail=detail,
            )
        )
        return old

    def transition(
        self,
        file_id: int,
        to: FileState,
        *,
        expect: Iterable[FileState] | None = None,
        code: str | None = None,
        detail: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> FileState:
        """Move one file to ``to`` with an event row; return the state it left.

        Raises IllegalTransition for a move the table forbids (a bug) and StaleState when the row
        is not in ``expect`` (someone else acted first).
        """
        return self._write(
            lambda c: self._transition(
                c, file_id, to, expect=expect, code=code, detail=detail, values=values
            )
        )

    def add_event(self, file_id: int, *, code: str, detail: str) -> None:
        """A timeline entry that changes no state (e.g. a retried part, a reconnect)."""
        self._write(
            lambda c: c.execute(
                insert(events).values(file_id=file_id, at=self.clock(), code=code, detail=detail)
            )
        )

    # ------------------------------------------------------------------ intake

    def observe(
        self,
        *,
        inbox: str,
        relpath: str,
        source_path: str,
        size: int,
        mtime_ns: int,
        owner: str = "",
        batch_idle_seconds: float = 120.0,
    ) -> Seen:
        """Record that ``relpath`` exists in ``inbox`` with this size and mtime.

        First sight creates a ``discovered`` row; an unchanged file already taken (kept, failed,
        rejected in place) is left alone; a changed file at a finished path is a new version.
        """
        key = source_key(inbox, relpath, postgres=self._pg)

        def run(conn: Connection) -> Seen:
            row = conn.execute(
                select(files.c.id, files.c.state, files.c.size, files.c.mtime_ns).where(
                    files.c.source_key == key
                )
            ).one_or_none()
            if row is not None:
                state = FileState(row.state)
                same = row.size == size and row.mtime_ns == mtime_ns
                if state == FileState.DISCOVERED and not same:
                    conn.execute(
                        update(files)
                        .where(files.c.id == row.id)
                        .values(size=size, mtime_ns=mtime_ns, updated_at=self.clock())
                    )
                if same or state not in (TERMINAL | {FileState.FAILED}):
                    return Seen(row.id, state, new=False)
                # A finished row keeps its history; the new version takes over the path.
                conn.execute(update(files).where(files.c.id == row.id).values(source_key=None))
            new_id = self._insert_discovered(
                conn,
                inbox=inbox,
                relpath=relpath,
                key=key,
                source_path=source_path,
                size=size,
                mtime_ns=mtime_ns,
                owner=owner,
                batch_idle=batch_idle_seconds,
            )
            return Seen(new_id, FileState.DISCOVERED, new=True)

        try:
            result: Seen = self._write(run)
        except IntegrityError:
            # Another node inserted the same path first; it owns the file.
            return self._write(run)
        return result

    def _insert_discovered(
        self,
        conn: Connection,
        *,
        inbox: str,
        relpath: str,
        key: str,
        source_path: str,
        size: int,
        mtime_ns: int,
        owner: str,
        batch_idle: float,
    ) -> int:
        now = self.clock()
        batch_id = self._batch_for(conn, inbox, now, batch_idle)
        new_id = conn.execute(
            insert(files)
            .values(
                inbox=inbox,
                relpath=relpath,
                source_path=source_path,
                source_key=key,
                owner=owner,
                size=size,
                mtime_ns=mtime_ns,
                state=FileState.DISCOVERED.value,
                discovered_at=now,
                updated_at=now,
                batch_id=batch_id,
            )
            .returning(files.c.id)
        ).scalar_one()
        conn.execute(
            insert(events).values(
                file_id=new_id,
                at=now,
                to_state=FileState.DISCOVERED.value,
                code="discovered",
                detail=f"{size} bytes at {source_path}",
            )
        )
        return int(new_id)

    def _batch_for(self, conn: Connection, inbox: str, now: float, idle: float) -> int:
        open_batch = conn.execute(
            select(batches.c.id, batches.c.last_arrival_at)
            .where(batches.c.inbox == inbox, batches.c.closed_at.is_(None))
            .order_by(batches.c.id.desc())
            .limit(1)
        ).one_or_none()
        if open_batch is not None and now - open_batch.last_arrival_at <= idle:
            conn.execute(
                update(batches).where(batches.c.id == open_batch.id).values(last_arrival_at=now)
            )
            return int(open_batch.id)
        if open_batch is not None:
            conn.execute(
                update(batches)
                .where(batches.c.id == open_batch.id)
                .values(closed_at=open_batch.last_arrival_at + idle)
            )
        return int(
            conn.execute(
                insert(batches)
                .values(inbox=inbox, opened_at=now, last_arrival_at=now)
                .returning(batches.c.id)
            ).scalar_one()
        )

    def queue(
        self,
        file_id: int,
        *,
        sha256: str,
        size: int,
        mtime_ns: int,
        detected_type: str | None,
        content_type: str,
        destination: str,
        dedup_scope: str | None,
    ) -> QueueOutcome:
        """Queue a hashed, valid file, or mark it ``duplicate`` if its content is already held.

        The fingerprint insert and the transition share one transaction; the unique key on
        (scope, sha256) decides races, so two copies arriving together yield one upload.
        """
        values = {
            "sha256": sha256,
            "size": size,
            "mtime_ns": mtime_ns,
            "detected_type": detected_type,
            "content_type": content_type,
            "destination": destination,
            "reason_code": None,
            "dedup_scope": dedup_scope,
            "reason": None,
            "next_attempt_at": None,
        }

        def run(conn: Connection) -> QueueOutcome:
            current = self._get(conn, file_id, for_update=self._pg)
            if current is None or current.state != FileState.DISCOVERED:
                raise StaleState(f"file {file_id} was taken by another node")
            if dedup_scope is not None:
                holder = self._claim_fingerprint(conn, dedup_scope, sha256, file_id)
                if holder is not None and holder[0] != file_id:
                    original_id, original_key = holder
                    detail = f"same content as file {original_id}" + (
                        f" ({original_key})" if original_key else ""
                    )
                    self._transition(
                        conn,
                        file_id,
                        FileState.DUPLICATE,
                        expect={FileState.DISCOVERED},
                        code="duplicate",
                        detail=detail,
                        values={
                            **values,
                            "original_id": original_id,
                            "reason_code": "duplicate",
                            "reason": detail,
                        },
                    )
                    return QueueOutcome(FileState.DUPLICATE, original_id, original_key)
            self._transition(
                conn,
                file_id,
                FileState.QUEUED,
                expect={FileState.DISCOVERED},
                code="queued",
                detail=f"sha256 {sha256[:12]}, {detected_type or 'unknown type'}",
                values={**values, "queued_at": self.clock()},
            )
            return QueueOutcome(FileState.QUEUED)

        return self._write(run)

    def _claim_fingerprint(
        self, conn: Connection, scope: str, sha256: str, file_id: int
    ) -> tuple[int, str | None] | None:
        """Insert (scope, sha256) for this file; return the holder if another file has it."""
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(fingerprints).values(
                        scope=scope, sha256=sha256, file_id=file_id, created_at=self.clock()
                    )
                )
            return None
        except IntegrityError:
            row = conn.execute(
                select(fingerprints.c.file_id, fingerprints.c.key).where(
                    fingerprints.c.scope == scope, fingerprints.c.sha256 == sha256
                )
            ).one()
            return int(row.file_id), row.key

    def reject(
        self,
        file_id: int,
        *,
        code: str,
        reason: str,
        sha256: str | None,
        detected_type: str | None,
        size: int,
        mtime_ns: int,
    ) -> None:
        """Mark a file ``rejected`` by validation; its post-action (quarantine) is still due.
        Raises StaleState when another node took the file meanwhile."""
        self.transition(
            file_id,
            FileState.REJECTED,
            expect={FileState.DISCOVERED},
            code=code,
            detail=reason,
            values={
                "reason_code": code,
                "reason": reason,
                "sha256": sha256,
                "detected_type": detected_type,
                "size": size,
                "mtime_ns": mtime_ns,
            },
        )

    def drop_vanished(self, file_id: int, *, detail: str) -> None:
        """A file that disappeared before it was taken: cancelled, nothing left to do."""
        self.transition(
            file_id,
            FileState.CANCELLED,
            code="vanished",
            detail=detail,
            values={
                "reason_code": "vanished",
                "reason": detail,
                "source_key": None,
                "post_done": True,
            },
        )

    def plan_post(self, file_id: int, post_path: str) -> None:
        """Record where the source is about to be moved, before moving it."""
        self._write(
            lambda c: c.execute(
                update(files).where(files.c.id == file_id).values(post_path=post_path)
            )
        )

    def find_by_path(self, inbox: str, relpath: str) -> FileRow | None:
        """The row that currently owns this path, if any."""
        with db.read_tx(self.engine) as conn:
            row = conn.execute(
                select(files).where(
                    files.c.source_key == source_key(inbox, relpath, postgres=self._pg)
                )
            ).one_or_none()
        return FileRow.from_row(row) if row is not None else None

    def finish_post(self, file_id: int, *, post_path: str | None, source_gone: bool) -> None:
        """The post-action is confirmed: the row is finished. A moved source frees its path."""
        values: dict[str, Any] = {
            "post_done": True,
            "post_path": post_path,
            "updated_at": self.clock(),
        }
        if source_gone:
            values["source_key"] = None
        detail = f"moved to {post_path}" if post_path else ("deleted" if source_gone else "kept")

        def run(conn: Connection) -> None:
            conn.execute(update(files).where(files.c.id == file_id).values(**values))
            conn.execute(
                insert(events).values(
                    file_id=file_id, at=self.clock(), code="post_action", detail=detail
                )
            )

        self._write(run)

    # ------------------------------------------------------------------ upload lane

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

    def claim_next(self, destination: str, *, owner: str, lease_seconds: float) -> FileRow | None:
        """Move the oldest due ``queued`` file of this destination to ``uploading``, leased."""
        now = self.clock()

        def run(conn: Connection) -> FileRow | None:
            query = (
                select(files.c.id)
                .where(
                    files.c.destination == destination,
                    files.c.state == FileState.QUEUED.value,
                    or_(files.c.next_attempt_at.is_(None), files.c.next_attempt_at <= now),
                )
                .order_by(files.c.id)
                .limit(1)
            )
            if self._pg:
                query = query.with_for_update(skip_locked=True)
            file_id = conn.execute(query).scalar_one_or_none()
            if file_id is None:
                return None
            self._transition(
                conn,
                file_id,
                FileState.UPLOADING,
                code="claimed",
                detail=f"by {owner}",
                values={
                    "lease_owner": owner,
                    "lease_expires": now + lease_seconds,
                    "started_at": now,
                    "bytes_sent": 0,
                },
            )
            conn.execute(
                update(lanes)
                .where(lanes.c.destination == destination)
                .values(current_file_id=file_id, updated_at=now)
            )
            return self._get(conn, file_id)

        return self._write(run)

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
        def run(conn: Connection) -> None:
            conn.execute(delete(parts).where(parts.c.file_id == file_id))
            conn.execute(
                update(files).where(files.c.id == file_id).values(upload_id=None, part_size=None)
            )

        self._write(run)

    def parts(self, file_id: int) -> dict[int, PartRecord]:
        with db.read_tx(self.engine) as conn:
            rows = conn.execute(
                select(parts).where(parts.c.file_id == file_id).order_by(parts.c.part_number)
            ).all()
        return {r.part_number: PartRecord(r.part_number, int(r.size), r.etag, r.md5) for r in rows}

    def mark_uploaded(
        self, file_id: int, *, key: str, seconds: float, bytes_sent: int, detail: str
    ) -> None:
        """The object is stored and verified. The post-action is still due."""

        def run(conn: Connection) -> None:
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
                },
            )
            conn.execute(delete(parts).where(parts.c.file_id == file_id))
            conn.execute(
                update(fingerprints).where(fingerprints.c.file_id == file_id).values(key=key)
            )

        self._write(run)

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
    ) -> FileState:
        """Put an uploading file back in the queue, or ``failed`` once attempts run out.

        With ``owner``, only while that owner still holds the lease: a node whose lease was
        reclaimed must not pull a file back that another node is uploading (StaleState).
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

    # ------------------------------------------------------------------ control and health

    def set_lane_health(
        self, destination: str, *, up: bool, error: str | None = None, hold: str | None = None
    ) -> None:
        """Record whether the destination answers; ``down_since`` keeps the first failure time."""
        now = self.clock()

        def run(conn: Connection) -> None:
            row = conn.execute(
                select(lanes.c.up, lanes.c.down_since).where(lanes.c.destination == destination)
            ).one_or_none()
            if row is None:
                self._ensure_lane(conn, destination, now)
                row_up, since = True, None
            else:
                row_up, since = bool(row.up), row.down_since
            conn.execute(
                update(lanes)
                .where(lanes.c.destination == destination)
                .values(
                    up=up,
                    last_error=error if not up else None,
                    hold_reason=hold,
                    down_since=None if up else (since if not row_up and since else now),
                    updated_at=now,
                )
            )

        self._write(run)

    def _ensure_lane(self, conn: Connection, destination: str, now: float) -> None:
        """Create the lane row unless it exists (another node may create it at the same time)."""
        try:
            with conn.begin_nested():
                conn.execute(insert(lanes).values(destination=destination, updated_at=now))
        except IntegrityError:
            pass

    def set_cooldown(self, destination: str, until: float | None) -> None:
        self._write(
            lambda c: c.execute(
                update(lanes)
                .where(lanes.c.destination == destination)
                .values(cooldown_until=until, current_file_id=None, updated_at=self.clock())
            )
        )

    def set_paused(self, destinations: Iterable[str], paused: bool) -> None:
        now = self.clock()

        def run(conn: Connection) -> None:
            for dest in destinations:
                done = conn.execute(
                    update(lanes)
                    .where(lanes.c.destination == dest)
                    .values(paused=paused, updated_at=now)
                ).rowcount
                if not done:
                    self._ensure_lane(conn, dest, now)
                    conn.execute(
                        update(lanes).where(lanes.c.destination == dest).values(paused=paused)
                    )

        self._write(run)

    def is_paused(self, destination: str) -> bool:
        with db.read_tx(self.engine) as conn:
            value = conn.execute(
                select(lanes.c.paused).where(lanes.c.destination == destination)
            ).scalar_one_or_none()
        return bool(value)

    def request_cancel(self, file_id: int) -> FileState:
        """Cancel a file: queued/failed/discovered ones at once; an uploading one is flagged and
        the lane aborts it. Returns the state the file was in."""

        def run(conn: Connection) -> FileState:
            row = self._get(conn, file_id, for_update=True)
            if row is None:
                raise KeyError(file_id)
            if row.state == FileState.UPLOADING:
                conn.execute(
                    update(files)
                    .where(files.c.id == file_id)
                    .values(cancel_requested=True, updated_at=self.clock())
                )
                return row.state
            self._transition(
                conn,
                file_id,
                FileState.CANCELLED,
                code="cancelled",
                detail="cancelled by the operator",
                values={
                    "reason_code": "cancelled",
                    "post_done": True,
                    "reason": "cancelled by the operator",
                },
            )
            return row.state

        return self._write(run)

    def retry(self, file_id: int) -> FileState:
        """Operator retry of a failed file: back to the queue with attempts reset (or to intake
        when it never got hashed). A copy uploaded meanwhile makes it a duplicate instead."""

        def run(conn: Connection) -> FileState:
            row = self._get(conn, file_id, for_update=True)
            if row is None:
                raise KeyError(file_id)
            reset = {"attempts": 0, "reason_code": None, "reason": None, "next_attempt_at": None}
            if row.sha256 is None or row.destination is None:
                self._transition(
                    conn,
                    file_id,
                    FileState.DISCOVERED,
                    expect={FileState.FAILED},
                    code="retry",
                    detail="retry requested by the operator",
                    values=reset,
                )
                return FileState.DISCOVERED
            if row.dedup_scope is not None:
                holder = self._claim_fingerprint(conn, row.dedup_scope, row.sha256, file_id)
                if holder is not None and holder[0] != file_id:
                    detail = f"same content as file {holder[0]}, uploaded meanwhile"
                    self._transition(
                        conn,
                        file_id,
                        FileState.DUPLICATE,
                        expect={FileState.FAILED},
                        code="duplicate",
                        detail=detail,
                        values={
                            **reset,
                            "original_id": holder[0],
                            "reason_code": "duplicate",
                            "reason": detail,
                        },
                    )
                    return FileState.DUPLICATE
            self._transition(
                conn,
                file_id,
                FileState.QUEUED,
                expect={FileState.FAILED},
                code="retry",
                detail="retry requested by the operator",
                values={**reset, "queued_at": self.clock()},
            )
            return FileState.QUEUED

        return self._write(run)

    def heartbeat(
        self,
        *,
        node: str,
        pid: int,
        host: str,
        version: str,
        started_at: float,
        detail: str | None = None,
        stopped: bool = False,
    ) -> None:
        now = self.clock()
        values = {
            "pid": pid,
            "host": host,
            "version": version,
            "started_at": started_at,
            "beat_at": now,
            "detail": detail,
            "stopped_at": now if stopped else None,
        }

        def run(conn: Connection) -> None:
            done = conn.execute(update(nodes).where(nodes.c.node == node).values(**values))
            if not done.rowcount:
                conn.execute(insert(nodes).values(node=node, **values))

        self._write(run)

    # ------------------------------------------------------------------ reads used by workers

    def _get(self, conn: Connection, file_id: int, *, for_update: bool = False) -> FileRow | None:
        # for_update: PostgreSQL locks the row until commit, as SQLite's BEGIN IMMEDIATE does.
        query = select(files).where(files.c.id == file_id)
        if for_update and self._pg:
            query = query.with_for_update()
        row = conn.execute(query).one_or_none()
        return FileRow.from_row(row) if row is not None else None

    def get(self, file_id: int) -> FileRow | None:
        with db.read_tx(self.engine) as conn:
            return self._get(conn, file_id)

    def by_state(
        self, state: FileState, *, inbox: str | None = None, limit: int | None = None
    ) -> list[FileRow]:
        query = select(files).where(files.c.state == state.value).order_by(files.c.id)
        if inbox is not None:
            query = query.where(files.c.inbox == inbox)
        if limit is not None:
            query = query.limit(limit)
        with db.read_tx(self.engine) as conn:
            return [FileRow.from_row(r) for r in conn.execute(query)]

    def pending_post(self) -> list[FileRow]:
        """Finished files whose archive/delete/quarantine is not yet confirmed."""
        done_states = [s.value for s in TERMINAL]
        with db.read_tx(self.engine) as conn:
            rows = conn.execute(
                select(files)
                .where(files.c.state.in_(done_states), files.c.post_done.is_(False))
                .order_by(files.c.id)
            ).all()
        return [FileRow.from_row(r) for r in rows]

    def unfinished_count(self, inboxes: Iterable[str] | None = None) -> int:
        """Rows that still need work: not terminal, or terminal with the post-action due."""
        done_states = [s.value for s in TERMINAL]
        query = (
            select(func.count())
            .select_from(files)
            .where(
                or_(
                    files.c.state.not_in([*done_states, FileState.FAILED.value]),
                    files.c.post_done.is_(False) & files.c.state.in_(done_states),
                )
            )
        )
        if inboxes is not None:
            query = query.where(files.c.inbox.in_(list(inboxes)))
        with db.read_tx(self.engine) as conn:
            return int(conn.execute(query).scalar_one())

    def counts(self) -> dict[str, int]:
        """Files per state, every state present (zero included)."""
        with db.read_tx(self.engine) as conn:
            rows = conn.execute(select(files.c.state, func.count()).group_by(files.c.state)).all()
        out = {s.value: 0 for s in FileState}
        out.update({state: int(n) for state, n in rows})
        return out
