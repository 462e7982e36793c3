"""Catalog operations of intake: first sight, queueing with dedup, rejects.

Slightly over 400 lines: intake's operations come in a one-file and a batched form (one
transaction for many sightings or hashes), each beside the transition it guards; dedup is the
fingerprint's unique constraint, never a read-then-write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ingestd.catalog import db, stmts
from ingestd.catalog.base import CatalogBase
from ingestd.catalog.notices import Notice, announce
from ingestd.catalog.rows import (
    FileRow,
    QueueOutcome,
    Seen,
    StaleState,
    source_key,
)
from ingestd.catalog.schema import batches, events, files
from ingestd.states import TERMINAL, FileState

# How long after a file is finished a sighting of the same path, size and mtime counts as late.
LATE_SIGHTING_SECONDS = 120.0
_VANISHED = select(
    files.c.state, files.c.inbox, files.c.relpath, files.c.size, files.c.mtime_ns, files.c.batch_id
)
_BY_KEY = select(files.c.id, files.c.state, files.c.size, files.c.mtime_ns, files.c.source_key)


@dataclass(frozen=True)
class Sighting:
    """One file found on disk, as intake hands it to ``observe_many``."""

    inbox: str
    relpath: str
    source_path: str
    size: int
    mtime_ns: int
    owner: str = ""


@dataclass(frozen=True)
class Hashed:
    """A settled file, fingerprinted and valid, as intake hands it to ``queue_many``."""

    file_id: int
    sha256: str | None  # None: its upload hashes it (hash_policy.py); no dedup until then
    size: int
    mtime_ns: int
    detected_type: str | None
    content_type: str
    destination: str
    dedup_scope: str | None
    md5: str | None = None
    ctime_ns: int | None = None
    # Its inbox keeps a duplicate's source as it is: then a duplicate has no post-action, and
    # is marked done in the transaction that finds it (one transaction instead of two).
    keeps_duplicate: bool = False
    priority: int = 0  # the inbox's
    # What validation read off the content (pages, size in pixels...: ingestd.metadata);
    # None when nothing was read. Stored as the row's ``metadata``.
    metadata: Mapping[str, Any] | None = None


def _stored(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``metadata`` column's value: a plain dict, its keys sorted (one row, one text)."""
    return None if metadata is None else dict(sorted(metadata.items()))


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class IntakeOps(CatalogBase):
    """Catalog operations of intake: first sight, queueing with dedup, rejects."""

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
        sighting = Sighting(inbox, relpath, source_path, size, mtime_ns, owner)
        return self.observe_many([sighting], batch_idle_seconds=batch_idle_seconds)[0]

    def observe_many(
        self, sightings: Sequence[Sighting], *, batch_idle_seconds: float = 120.0
    ) -> list[Seen]:
        """``observe`` for many files in one read and at most one write transaction: a scan of
        a backlog must not commit (and fsync) once per file."""
        keys = [source_key(s.inbox, s.relpath, postgres=self._pg) for s in sightings]
        # Rescans see every kept file again: answer those from a read, without a write lock.
        known: dict[str, Any] = {}
        with db.read_tx(self.engine) as conn:
            for chunk in _chunks(keys, 500):
                for hit in conn.execute(_BY_KEY.where(files.c.source_key.in_(chunk))):
                    known[hit.source_key] = hit
        out: list[Seen | None] = []
        for s, key in zip(sightings, keys, strict=True):
            row = known.get(key)
            if row is not None and (row.size, row.mtime_ns) == (s.size, s.mtime_ns):
                out.append(Seen(int(row.id), FileState(row.state), new=False))
            else:
                out.append(None)
        todo = [i for i, seen in enumerate(out) if seen is None]
        if todo:

            def run(conn: Connection) -> None:
                for i in todo:
                    out[i] = self._observe_one(conn, sightings[i], keys[i], batch_idle_seconds)

            self._write(run)
        return [seen for seen in out if seen is not None]

    def _observe_one(self, conn: Connection, s: Sighting, key: str, batch_idle: float) -> Seen:
        try:
            # A savepoint per file: another node inserting the same path first fails only this
            # file's insert, and the second try finds its row (that node owns the file).
            with conn.begin_nested():
                return self._observe_in(conn, s, key, batch_idle)
        except IntegrityError:
            return self._observe_in(conn, s, key, batch_idle)

    def _observe_in(self, conn: Connection, s: Sighting, key: str, batch_idle: float) -> Seen:
        row = conn.execute(stmts.BY_SOURCE_KEY, {"p_key": key}).one_or_none()
        if row is not None:
            state = FileState(row.state)
            same = row.size == s.size and row.mtime_ns == s.mtime_ns
            if state == FileState.DISCOVERED and not same:
                conn.execute(
                    update(files)
                    .where(files.c.id == row.id)
                    .values(size=s.size, mtime_ns=s.mtime_ns, updated_at=self.clock())
                )
            if same or state not in (TERMINAL | {FileState.FAILED}):
                return Seen(row.id, state, new=False)
            # A finished row keeps its history; the new version takes over the path.
            conn.execute(update(files).where(files.c.id == row.id).values(source_key=None))
        new_id = self._insert_discovered(
            conn,
            inbox=s.inbox,
            relpath=s.relpath,
            key=key,
            source_path=s.source_path,
            size=s.size,
            mtime_ns=s.mtime_ns,
            owner=s.owner,
            batch_idle=batch_idle,
        )
        return Seen(new_id, FileState.DISCOVERED, new=True)

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
            stmts.INSERT_FILE_RETURNING_ID,
            {
                "inbox": inbox,
                "relpath": relpath,
                "source_path": source_path,
                "source_key": key,
                "owner": owner,
                "size": size,
                "mtime_ns": mtime_ns,
                "state": FileState.DISCOVERED.value,
                "discovered_at": now,
                "updated_at": now,
                "batch_id": batch_id,
            },
        ).scalar_one()
        conn.execute(
            stmts.INSERT_EVENT,
            {
                "file_id": new_id,
                "at": now,
                "from_state": None,
                "to_state": FileState.DISCOVERED.value,
                "code": "discovered",
                "detail": f"{size} bytes at {source_path}",
            },
        )
        return int(new_id)

    def _batch_for(self, conn: Connection, inbox: str, now: float, idle: float) -> int:
        open_batch = conn.execute(stmts.OPEN_BATCH, {"p_inbox": inbox}).one_or_none()
        if open_batch is not None and now - open_batch.last_arrival_at <= idle:
            conn.execute(stmts.BATCH_ARRIVAL, {"p_id": open_batch.id, "p_at": now})
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
        sha256: str | None,
        size: int,
        mtime_ns: int,
        detected_type: str | None,
        content_type: str,
        destination: str,
        dedup_scope: str | None,
        md5: str | None = None,
        ctime_ns: int | None = None,
        priority: int = 0,
        metadata: Mapping[str, Any] | None = None,
    ) -> QueueOutcome:
        """Queue a hashed, valid file, or mark it ``duplicate`` if its content is already held.

        Raises StaleState when the file is no longer ``discovered`` (another node took it).
        """
        item = Hashed(
            file_id,
            sha256=sha256,
            size=size,
            mtime_ns=mtime_ns,
            detected_type=detected_type,
            content_type=content_type,
            destination=destination,
            dedup_scope=dedup_scope,
            md5=md5,
            ctime_ns=ctime_ns,
            priority=priority,
            metadata=metadata,
        )
        outcome = self.queue_many([item])[0]
        if outcome is None:
            raise StaleState(f"file {file_id} was taken by another node")
        return outcome

    def queue_many(self, items: Sequence[Hashed]) -> list[QueueOutcome | None]:
        """``queue`` for many files in one transaction (a backlog must not commit, and fsync,
        once per file); None for a file no longer ``discovered``.

        The fingerprint insert and the transition share the transaction; the unique key on
        (scope, sha256) decides races, so two copies arriving together yield one upload.
        """
        return self._write(lambda conn: [self._queue_one(conn, item) for item in items])

    def _queue_one(self, conn: Connection, item: Hashed) -> QueueOutcome | None:
        if self._state(conn, item.file_id) != FileState.DISCOVERED:
            return None
        values: dict[str, Any] = {
            "sha256": item.sha256,
            "md5": item.md5,
            "ctime_ns": item.ctime_ns,
            "size": item.size,
            "mtime_ns": item.mtime_ns,
            "detected_type": item.detected_type,
            "content_type": item.content_type,
            "destination": item.destination,
            "reason_code": None,
            "dedup_scope": item.dedup_scope,
            "reason": None,
            "next_attempt_at": None,
            "priority": item.priority,
            "metadata": _stored(item.metadata),
            # Taken in anew: an upload recorded for the file as it was holds old bytes, and
            # resuming it would store a mix (left to the stale-upload sweep if still open; its
            # part rows are ignored without the id, and go with the next upload's start).
            "upload_id": None,
            "part_size": None,
        }
        holder = None
        if item.dedup_scope is not None and item.sha256 is not None:
            holder = self._claim_fingerprint(conn, item.dedup_scope, item.sha256, item.file_id)
        if holder is None or holder[0] == item.file_id:
            outcome = QueueOutcome(FileState.QUEUED)
            code = "queued"
            digest = item.sha256[:12] if item.sha256 else "to be taken during the upload"
            detail = f"sha256 {digest}, {item.detected_type or 'unknown type'}"
            values["queued_at"] = self.clock()
        else:
            outcome = QueueOutcome(FileState.DUPLICATE, *holder)
            code = "duplicate"
            detail = f"same content as file {holder[0]}" + (f" ({holder[1]})" if holder[1] else "")
            values.update(
                original_id=holder[0],
                reason_code=code,
                reason=detail,
                post_done=item.keeps_duplicate,
            )
        self._transition(
            conn,
            item.file_id,
            outcome.state,
            current=FileState.DISCOVERED,
            code=code,
            detail=detail,
            values=values,
        )
        return outcome

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
        notice: Notice | None = None,
        post_done: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Mark a file ``rejected`` by validation; its post-action (quarantine) is still due
        unless ``post_done`` says there is none (the source is kept in place). ``notice``: the
        rejection's notification, written in the same transaction. ``metadata``: what
        validation read off the content, if anything. Raises StaleState when another node took
        the file meanwhile."""

        def run(conn: Connection) -> None:
            self._transition(
                conn,
                file_id,
                FileState.REJECTED,
                expect={FileState.DISCOVERED},
                code=code,
                detail=reason,
                values={
                    "reason_code": code,
                    "reason": reason,
                    "sha256": sha256,
                    "md5": None,
                    "ctime_ns": None,
                    "detected_type": detected_type,
                    "size": size,
                    "mtime_ns": mtime_ns,
                    "post_done": post_done,
                    "metadata": _stored(metadata),
                },
            )
            announce(conn, self._get(conn, file_id), notice, now=self.clock())

        self._write(run)

    def drop_vanished(self, file_id: int, *, detail: str) -> bool:
        """A file that disappeared before it was taken: cancelled, nothing left to do.

        Except a late sighting of a file already finished: another node (or this one) uploaded
        it and moved it away just after this node listed it, so the row was made for a file
        that no longer exists. Such a row, identical in path, size and mtime to a row finished
        moments ago, is deleted rather than kept as a cancelled file that never was; returns
        False then.
        """

        def run(conn: Connection) -> bool:
            row = conn.execute(_VANISHED.where(files.c.id == file_id)).one_or_none()
            twin = None
            if row is not None and row.state == FileState.DISCOVERED.value:
                twin = conn.execute(
                    select(files.c.id)
                    .where(
                        files.c.state.in_([s.value for s in TERMINAL]),
                        files.c.updated_at >= self.clock() - LATE_SIGHTING_SECONDS,
                        files.c.inbox == row.inbox,
                        files.c.relpath == row.relpath,
                        files.c.size == row.size,
                        files.c.mtime_ns == row.mtime_ns,
                        files.c.source_key.is_(None),
                        files.c.id != file_id,
                    )
                    .limit(1)
                ).first()
            if twin is None:
                self._transition(
                    conn,
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
                return True
            assert row is not None
            conn.execute(delete(events).where(events.c.file_id == file_id))
            conn.execute(delete(files).where(files.c.id == file_id))
            if row.batch_id is not None:  # a batch opened for this row alone goes with it
                conn.execute(
                    delete(batches).where(
                        batches.c.id == row.batch_id,
                        ~select(files.c.id).where(files.c.batch_id == row.batch_id).exists(),
                    )
                )
            return False

        return self._write(run)

    def find_by_path(self, inbox: str, relpath: str) -> FileRow | None:
        """The row that currently owns this path, if any."""
        with db.read_tx(self.engine) as conn:
            row = conn.execute(
                select(files).where(
                    files.c.source_key == source_key(inbox, relpath, postgres=self._pg)
                )
            ).one_or_none()
        return FileRow.from_row(row) if row is not None else None
