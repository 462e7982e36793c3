"""The catalog's core: connections, write transactions and the one guarded transition."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, insert, or_, select

from ingestd.catalog import db, queries, stmts
from ingestd.catalog.rows import (
    FileRow,
    StaleState,
)
from ingestd.catalog.schema import events, files
from ingestd.states import HOLDS_FINGERPRINT, TERMINAL, FileState, check_transition

Clock = Callable[[], float]
T = TypeVar("T")


class CatalogBase:
    """Shared by the operation groups: ``_write`` and ``_transition`` are the only writers."""

    def __init__(self, engine: Engine, *, clock: Clock = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self._pg = engine.dialect.name == "postgresql"

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
        current: FileState | None = None,
    ) -> FileState:
        # ``current``: the state the caller read in this transaction, under its lock (SQLite's
        # BEGIN IMMEDIATE, PostgreSQL's FOR UPDATE), so reading it again would tell nothing new.
        old = current or self._state(conn, file_id)
        if old is None:
            raise KeyError(file_id)
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
            conn.execute(stmts.DELETE_FINGERPRINT, {"p_id": file_id})
        conn.execute(*stmts.update_file(file_id, vals))
        conn.execute(
            stmts.INSERT_EVENT,
            {
                "file_id": file_id,
                "at": now,
                "from_state": old.value,
                "to_state": to.value,
                "code": code,
                "detail": detail,
            },
        )
        return old

    def _state(self, conn: Connection, file_id: int) -> FileState | None:
        """The file's state, locked until commit (PostgreSQL; SQLite's write transaction holds
        the whole database); None when there is no such file."""
        query = stmts.FILE_STATE_FOR_UPDATE if self._pg else stmts.FILE_STATE
        found = conn.execute(query, {"p_id": file_id}).scalar_one_or_none()
        return None if found is None else FileState(found)

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

    def _claim_fingerprint(
        self, conn: Connection, scope: str, sha256: str, file_id: int
    ) -> tuple[int, str | None] | None:
        """Insert (scope, sha256) for this file; return the holder if another file has it."""
        claim = stmts.claim_fingerprint(self._pg)
        inserted = conn.execute(
            claim,
            {"scope": scope, "sha256": sha256, "file_id": file_id, "created_at": self.clock()},
        )
        if inserted.rowcount == 1:
            return None
        row = conn.execute(stmts.FINGERPRINT_HOLDER, {"p_scope": scope, "p_sha": sha256}).one()
        return int(row.file_id), row.key

    # ------------------------------------------------------------------ reads used by workers

    def _get(self, conn: Connection, file_id: int, *, for_update: bool = False) -> FileRow | None:
        # for_update: PostgreSQL locks the row until commit, as SQLite's BEGIN IMMEDIATE does.
        query = stmts.FILE_ROW_FOR_UPDATE if for_update and self._pg else stmts.FILE_ROW
        row = conn.execute(query, {"p_id": file_id}).one_or_none()
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

    def outstanding_count(self, inboxes: Iterable[str] | None = None) -> int:
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
        return queries.counts(self.engine)
