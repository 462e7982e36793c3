"""Read side of the catalog: status, listings, reports. Never writes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, bindparam, func, select

from ingestd.catalog import db, stmts
from ingestd.catalog.schema import file_totals, files
from ingestd.catalog.shapes import file_dict, metadata_doc
from ingestd.states import FileState


class Total(NamedTuple):
    """Files and bytes of one inbox in one state (the ``file_totals`` table)."""

    inbox: str
    state: str
    files: int
    bytes: int


_TOTALS = select(file_totals).where(file_totals.c.files != 0)


def totals(conn: Connection) -> list[Total]:
    """Every non-empty (inbox, state): a few rows however large the catalog (triggers keep
    them exact, see migration 0006)."""
    return [Total(r.inbox, r.state, int(r.files), int(r.bytes)) for r in conn.execute(_TOTALS)]


def counts(engine: Engine, *, inbox: str | None = None) -> dict[str, int]:
    """Files per state, every state present (zero included)."""
    with db.read_tx(engine) as conn:
        rows = totals(conn)
    out = {s.value: 0 for s in FileState}
    for row in rows:
        if inbox is None or row.inbox == inbox:
            out[row.state] = out.get(row.state, 0) + row.files
    return out


def queue_gauges(engine: Engine) -> tuple[dict[str, int], int]:
    """(files per state, bytes waiting in ``queued`` and ``uploading``) for metrics."""
    with db.read_tx(engine) as conn:
        waiting = conn.execute(
            select(func.coalesce(func.sum(files.c.size - files.c.bytes_sent), 0)).where(
                files.c.state.in_([FileState.QUEUED.value, FileState.UPLOADING.value])
            )
        ).scalar_one()
    return counts(engine), int(waiting)


def failed_since(engine: Engine, since: float) -> int:
    """How many files ended ``failed`` at or after ``since`` (for ``scan --once`` exit codes)."""
    with db.read_tx(engine) as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(files)
                .where(files.c.state == FileState.FAILED.value, files.c.finished_at >= since)
            ).scalar_one()
        )


def list_files(
    engine: Engine,
    *,
    states: Iterable[str] | None = None,
    inbox: str | None = None,
    batch: int | None = None,
    since: float | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """Files matching every given filter, oldest first unless ``newest_first``; each with its
    ``metadata`` (None before migration 0011)."""
    query = select(files)
    if states:
        query = query.where(files.c.state.in_(list(states)))
    if inbox is not None:
        query = query.where(files.c.inbox == inbox)
    if batch is not None:
        query = query.where(files.c.batch_id == batch)
    if since is not None:
        query = query.where(files.c.discovered_at >= since)
    query = query.order_by(files.c.id.desc() if newest_first else files.c.id)
    if limit is not None:
        query = query.limit(limit)
    with db.read_tx(engine) as conn:
        return [{**file_dict(r), "metadata": metadata_doc(r)} for r in conn.execute(query)]


def orphaned_uploads(engine: Engine, destination: str) -> list[tuple[int, str, str]]:
    """(file id, key, upload id) of multipart uploads still recorded for files that will never
    resume them (cancelled, failed, or found a duplicate during the upload): the lane aborts
    them on the server."""
    with db.read_tx(engine) as conn:
        rows = conn.execute(
            select(files.c.id, files.c.key, files.c.upload_id).where(
                files.c.destination == destination,
                files.c.state.in_(
                    [FileState.CANCELLED.value, FileState.FAILED.value, FileState.DUPLICATE.value]
                ),
                files.c.upload_id.is_not(None),
            )
        ).all()
    return [(int(r.id), r.key, r.upload_id) for r in rows if r.key]


def lane_poll(engine: Engine, destination: str) -> tuple[bool, float | None]:
    """(paused, next_due): what an idle lane asks, in one statement. ``next_due`` is the epoch
    time its earliest queued file becomes due (0.0: due now), None when none is queued."""
    with db.read_tx(engine) as conn:
        paused, next_due = conn.execute(stmts.LANE_POLL, {"p_dest": destination}).one()
    return bool(paused), None if next_due is None else float(next_due)


_COUNT_IN_STATE = (
    select(func.count()).select_from(files).where(files.c.state == bindparam("p_state"))
)


def count_in_state(engine: Engine, state: FileState) -> int:
    """Rows in one state (an index range: cheap for the small states, such as ``queued``)."""
    with db.read_tx(engine) as conn:
        return int(conn.execute(_COUNT_IN_STATE, {"p_state": state.value}).scalar_one())
