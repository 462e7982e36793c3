"""Catalog operations of operators and health: pause, cancel, retry, prioritize, lane health,
heartbeat."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ingestd.catalog import db
from ingestd.catalog.base import CatalogBase
from ingestd.catalog.schema import events, files, lanes, nodes
from ingestd.states import FileState

# Prebuilt: an idle lane reads it every turn (see catalog/stmts.py for why prebuilt).
_PAUSED = select(lanes.c.paused).where(lanes.c.destination == bindparam("p_dest"))


class ControlOps(CatalogBase):
    """Catalog operations of operators and health: pause, cancel, retry, lane health, heartbeat."""

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

    def record_key_check(self, destination: str, *, conditional: bool, reason: str) -> None:
        """Record how the destination checks a key is free (decided at the daemon's start)."""
        now = self.clock()

        def run(conn: Connection) -> None:
            self._ensure_lane(conn, destination, now)
            conn.execute(
                update(lanes)
                .where(lanes.c.destination == destination)
                .values(conditional_writes=conditional, key_check=reason, updated_at=now)
            )

        self._write(run)

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
            value = conn.execute(_PAUSED, {"p_dest": destination}).scalar_one_or_none()
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

    def prioritize(self, file_ids: list[int]) -> dict[int, int]:
        """Move queued files to the front of their destination's queue: each gets a priority
        above every other queued file of its destination (ids of one call keep their order
        among themselves: first come). Files not ``queued`` are left alone. Returns the new
        priority of each file moved; the timeline records it ("prioritized")."""

        def run(conn: Connection) -> dict[int, int]:
            query = select(files.c.id, files.c.destination).where(
                files.c.id.in_(file_ids), files.c.state == FileState.QUEUED.value
            )
            if self._pg:
                query = query.with_for_update()
            moving = conn.execute(query).all()
            top: dict[str, int] = {}
            for dest in {r.destination for r in moving}:
                highest = conn.execute(
                    select(func.max(files.c.priority)).where(
                        files.c.destination == dest, files.c.state == FileState.QUEUED.value
                    )
                ).scalar_one()
                top[dest] = int(highest or 0) + 1
            now = self.clock()
            moved: dict[int, int] = {}
            for r in moving:
                priority = top[r.destination]
                conn.execute(
                    update(files)
                    .where(files.c.id == r.id)
                    .values(priority=priority, updated_at=now)
                )
                conn.execute(
                    insert(events).values(
                        file_id=r.id,
                        at=now,
                        code="prioritized",
                        detail=f"moved to the front of {r.destination}'s queue by the operator"
                        f" (priority {priority})",
                    )
                )
                moved[int(r.id)] = priority
            return moved

        return self._write(run)

    def retry(self, file_id: int) -> FileState:
        """Operator retry of a failed file: back to the queue with attempts reset (or to intake
        when it never got hashed, unless it was queued unhashed and its multipart upload is
        recorded: it resumes that, hashing during it). A copy uploaded meanwhile makes it a
        duplicate instead."""

        def run(conn: Connection) -> FileState:
            row = self._get(conn, file_id, for_update=True)
            if row is None:
                raise KeyError(file_id)
            reset = {"attempts": 0, "reason_code": None, "reason": None, "next_attempt_at": None}
            if row.destination is None or (row.sha256 is None and row.upload_id is None):
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
            if row.dedup_scope is not None and row.sha256 is not None:
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
