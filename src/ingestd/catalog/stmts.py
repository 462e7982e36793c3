"""Prebuilt statements for the per-file hot paths.

Building a SQLAlchemy statement per call (``update(files).where(files.c.id == 7).values(...)``)
costs more CPU than SQLite spends executing it: coercing every literal and computing a cache key
took about 250 µs per UPDATE here, against about 60 µs for a statement built once with bind
parameters and executed with a parameter dict. A small file passes through a dozen statements,
so the difference is most of the catalog's share of its cost. Statements here are built once, at
import (or once per set of columns, for updates), and only ever executed with parameters.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import (
    Delete,
    Insert,
    Select,
    Update,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from ingestd.catalog.schema import batches, events, files, fingerprints, lanes, parts
from ingestd.states import FileState

# Parameter names must differ from column names: SQLAlchemy reserves those for SET/VALUES.
FILE_STATE = select(files.c.state).where(files.c.id == bindparam("p_id"))
FILE_STATE_FOR_UPDATE = FILE_STATE.with_for_update()
FILE_ROW = select(files).where(files.c.id == bindparam("p_id"))
FILE_ROW_FOR_UPDATE = FILE_ROW.with_for_update()

INSERT_EVENT: Insert = insert(events)
INSERT_FILE_RETURNING_ID: Insert = insert(files).returning(files.c.id)


# ON CONFLICT DO NOTHING instead of a savepoint around a plain INSERT: the first copy of some
# content inserts a row, a duplicate inserts none (rowcount 0), and no SAVEPOINT/RELEASE pair
# is spent per file. Both dialects spell it the same way.
@cache
def claim_fingerprint(postgres: bool) -> Insert:
    # Built on first use: the PostgreSQL dialect costs 40 ms to import, and CLI commands on a
    # SQLite catalog never need it.
    if postgres:
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(fingerprints).on_conflict_do_nothing(
            index_elements=[fingerprints.c.scope, fingerprints.c.sha256]
        )
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(fingerprints).on_conflict_do_nothing(
        index_elements=[fingerprints.c.scope, fingerprints.c.sha256]
    )


DELETE_FINGERPRINT: Delete = delete(fingerprints).where(fingerprints.c.file_id == bindparam("p_id"))
FINGERPRINT_HOLDER = select(fingerprints.c.file_id, fingerprints.c.key).where(
    fingerprints.c.scope == bindparam("p_scope"), fingerprints.c.sha256 == bindparam("p_sha")
)
FINGERPRINT_KEY: Update = (
    update(fingerprints)
    .where(fingerprints.c.file_id == bindparam("p_id"))
    .values(key=bindparam("p_key"))
)
DELETE_PARTS: Delete = delete(parts).where(parts.c.file_id == bindparam("p_id"))

BY_SOURCE_KEY = select(
    files.c.id, files.c.state, files.c.size, files.c.mtime_ns, files.c.source_key
).where(files.c.source_key == bindparam("p_key"))

OPEN_BATCH = (
    select(batches.c.id, batches.c.last_arrival_at)
    .where(batches.c.inbox == bindparam("p_inbox"), batches.c.closed_at.is_(None))
    .order_by(batches.c.id.desc())
    .limit(1)
)
BATCH_ARRIVAL: Update = (
    update(batches)
    .where(batches.c.id == bindparam("p_id"))
    .values(last_arrival_at=bindparam("p_at"))
)

_DUE = (
    files.c.destination == bindparam("p_dest"),
    files.c.state == FileState.QUEUED.value,
    or_(files.c.next_attempt_at.is_(None), files.c.next_attempt_at <= bindparam("p_now")),
)
# The whole row: the claim plans the file's key from it and hands it to the lane, and it
# knows the state it moves the row from without reading it again.
NEXT_DUE: Select[Any] = select(files).where(*_DUE).order_by(files.c.id).limit(1)
# The queue's order: priority first (ix_files_lane_priority), first come within a priority.
NEXT_DUE_BY_PRIORITY: Select[Any] = (
    select(files).where(*_DUE).order_by(files.c.priority.desc(), files.c.id).limit(1)
)
# An idle lane's one question per turn: is it paused, and when is its next file due (0 for a
# file due at once, NULL for none queued)? One statement in one read transaction: the turn's
# cost is the round trip, not the database's work.
LANE_POLL: Select[Any] = select(
    select(lanes.c.paused)
    .where(lanes.c.destination == bindparam("p_dest"))
    .scalar_subquery()
    .label("paused"),
    select(func.min(func.coalesce(files.c.next_attempt_at, 0.0)))
    .where(files.c.destination == bindparam("p_dest"), files.c.state == FileState.QUEUED.value)
    .scalar_subquery()
    .label("next_due"),
)
NEXT_DUE_SKIP_LOCKED: Select[Any] = NEXT_DUE.with_for_update(skip_locked=True)
NEXT_DUE_BY_PRIORITY_SKIP_LOCKED: Select[Any] = NEXT_DUE_BY_PRIORITY.with_for_update(
    skip_locked=True
)
LANE_CURRENT: Update = (
    update(lanes)
    .where(lanes.c.destination == bindparam("p_dest"))
    .values(current_file_id=bindparam("p_id"), updated_at=bindparam("p_at"))
)


@cache
def _update_file(columns: frozenset[str]) -> Update:
    return (
        update(files)
        .where(files.c.id == bindparam("p_id"))
        .values({name: bindparam(f"v_{name}") for name in sorted(columns)})
    )


def update_file(file_id: int, values: dict[str, Any]) -> tuple[Update, dict[str, Any]]:
    """An UPDATE of one ``files`` row setting ``values``, and its parameters (statements are
    built once per set of columns: the callers use a handful of sets)."""
    params = {f"v_{name}": value for name, value in values.items()}
    params["p_id"] = file_id
    return _update_file(frozenset(values)), params
