"""Housekeeping on the catalog: batch closing, retention, which uploads we own."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Engine, delete, func, insert, select, update

from ingestd.catalog import db
from ingestd.catalog.schema import batches, events, files, inbox_health, parts
from ingestd.states import TERMINAL


@dataclass(frozen=True)
class RetentionResult:
    files: int
    events: int


def close_idle_batches(engine: Engine, *, now: float, idle_seconds: float) -> list[int]:
    """Close open batches without an arrival for ``idle_seconds``; return their ids."""
    with db.write_tx(engine) as conn:
        ids = [
            int(i)
            for i in conn.execute(
                select(batches.c.id).where(
                    batches.c.closed_at.is_(None), batches.c.last_arrival_at < now - idle_seconds
                )
            ).scalars()
        ]
        if ids:
            conn.execute(
                update(batches)
                .where(batches.c.id.in_(ids))
                .values(closed_at=batches.c.last_arrival_at + idle_seconds)
            )
    return ids


def owned_upload_ids(engine: Engine, destination: str) -> set[str]:
    """Multipart upload ids the catalog still records for this destination."""
    with db.read_tx(engine) as conn:
        return {
            r
            for r in conn.execute(
                select(files.c.upload_id).where(
                    files.c.destination == destination, files.c.upload_id.is_not(None)
                )
            ).scalars()
        }


def prunable(engine: Engine, *, before: float) -> int:
    """How many file rows retention would remove now."""
    with db.read_tx(engine) as conn:
        return int(
            conn.execute(select(func.count()).select_from(files).where(*_old(before))).scalar_one()
        )


def prune(engine: Engine, *, before: float, batch: int = 500) -> RetentionResult:
    """Delete finished file rows (and their timeline) that ended before ``before``.

    Rows that still own their source path (``keep`` post-actions) stay, or the file would be
    taken in again on the next scan; dedup fingerprints stay, so old content is still known.
    Works in small transactions so the daemon's writers are never held up for long.
    """
    removed_files = removed_events = 0
    while True:
        with db.write_tx(engine) as conn:
            ids = list(conn.execute(select(files.c.id).where(*_old(before)).limit(batch)).scalars())
            if not ids:
                break
            removed_events += conn.execute(delete(events).where(events.c.file_id.in_(ids))).rowcount
            conn.execute(delete(parts).where(parts.c.file_id.in_(ids)))
            removed_files += conn.execute(delete(files).where(files.c.id.in_(ids))).rowcount
    return RetentionResult(files=removed_files, events=removed_events)


def _old(before: float) -> tuple[ColumnElement[bool], ...]:
    return (
        files.c.state.in_([s.value for s in TERMINAL]),
        files.c.post_done.is_(True),
        files.c.source_key.is_(None),
        files.c.finished_at < before,
    )


def record_inbox_health(
    engine: Engine,
    inbox: str,
    *,
    up: bool,
    down_since: float | None,
    error: str | None,
    now: float,
) -> None:
    """Publish whether a remote inbox's server answers (shown by status, /readyz, metrics)."""
    values = {
        "up": up,
        "down_since": None if up else down_since,
        "last_error": None if up else error,
        "updated_at": now,
    }
    with db.write_tx(engine) as conn:
        done = conn.execute(
            update(inbox_health).where(inbox_health.c.inbox == inbox).values(**values)
        ).rowcount
        if not done:
            conn.execute(insert(inbox_health).values(inbox=inbox, **values))
