"""Housekeeping jobs: stale multipart sweep, retention, batch closing and the daily summary.

Each job is a plain function of its inputs (catalog engine, destinations, settings, now), so
``ingestd cleanup`` and the scheduler run the same code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from ingestd.catalog import db, maintenance, queries
from ingestd.catalog.repo import FileRow
from ingestd.catalog.schema import batches, files
from ingestd.config import Settings
from ingestd.destinations.base import Destination, StaleUpload
from ingestd.errors import DestinationDown, DestinationMisconfigured
from ingestd.webhooks import BatchInfo, Outbox, daily_summary, on_batch_closed

log = logging.getLogger("ingestd.housekeeping")


@dataclass(frozen=True)
class SweepResult:
    destination: str
    aborted: list[StaleUpload]
    kept_own: int
    kept_young: int
    error: str | None = None


def is_stale(upload: StaleUpload, *, owned: set[str], now: datetime, max_age: timedelta) -> bool:
    """A multipart upload we do not own and that is older than ``max_age`` (pure)."""
    initiated = upload.initiated
    if initiated.tzinfo is None:
        initiated = initiated.replace(tzinfo=UTC)
    return upload.upload_id not in owned and now - initiated > max_age


def sweep_stale_uploads(
    engine: Engine,
    destinations: Mapping[str, Destination],
    *,
    stale_hours: float,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[SweepResult]:
    """Abort multipart uploads the catalog does not own and that are older than
    ``stale_hours``, so abandoned parts never cost storage. Our own uploads are never touched."""
    now = now or datetime.now(UTC)
    results = []
    for name, dest in destinations.items():
        aborted: list[StaleUpload] = []
        kept_own = kept_young = 0
        try:
            # List first, then read what we own: an upload created meanwhile is recorded by
            # then (the UploadId is journalled right after CreateMultipartUpload).
            listed = list(dest.list_uploads())
            owned = maintenance.owned_upload_ids(engine, name)
            for upload in listed:
                if upload.upload_id in owned:
                    kept_own += 1
                elif is_stale(upload, owned=owned, now=now, max_age=timedelta(hours=stale_hours)):
                    if not dry_run:
                        dest.abort(upload.key, upload.upload_id)
                    aborted.append(upload)
                else:
                    kept_young += 1
        except (DestinationDown, DestinationMisconfigured) as exc:
            results.append(SweepResult(name, aborted, kept_own, kept_young, error=str(exc)))
            continue
        results.append(SweepResult(name, aborted, kept_own, kept_young))
    return results


def retention(
    engine: Engine, *, days: float, dry_run: bool = False, now: float | None = None
) -> int:
    """Prune finished rows older than ``days`` (0 keeps everything); return how many."""
    if days <= 0:
        return 0
    before = (time.time() if now is None else now) - days * 86400
    if dry_run:
        return maintenance.prunable(engine, before=before)
    return maintenance.prune(engine, before=before).files


def close_batches(
    engine: Engine,
    outbox: Outbox | None,
    *,
    idle_seconds: float,
    node: str,
    now: float | None = None,
) -> list[int]:
    """Close idle batches and enqueue a ``batch_closed`` notification for each."""
    now = time.time() if now is None else now
    closed = maintenance.close_idle_batches(engine, now=now, idle_seconds=idle_seconds)
    for batch_id in closed:
        info, rows = _batch(engine, batch_id)
        log.info("batch %s of inbox %s closed: %d file(s)", batch_id, info.inbox, len(rows))
        if outbox is not None:
            outbox.enqueue("batch_closed", on_batch_closed(info, rows, node=node))
    return closed


def _batch(engine: Engine, batch_id: int) -> tuple[BatchInfo, list[FileRow]]:
    with db.read_tx(engine) as conn:
        row = conn.execute(select(batches).where(batches.c.id == batch_id)).one()
        members = conn.execute(
            select(files).where(files.c.batch_id == batch_id).order_by(files.c.id)
        ).all()
    return BatchInfo(**row._mapping), [FileRow.from_row(m) for m in members]


def summary(
    engine: Engine, outbox: Outbox | None, settings: Settings, *, now: float | None = None
) -> dict[str, Any]:
    """The last 24 hours in numbers: logged, and sent as ``daily_summary``."""
    now = time.time() if now is None else now
    day_start = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    with db.read_tx(engine) as conn:
        rows = conn.execute(
            select(files).where(files.c.finished_at >= day_start.timestamp()).order_by(files.c.id)
        ).all()
    finished = [FileRow.from_row(r) for r in rows]
    backlog = {
        k: v
        for k, v in queries.counts(engine).items()
        if k in ("discovered", "queued", "uploading", "failed")
    }
    payload = daily_summary(
        day_start.date(), finished, backlog=backlog, node=settings.node_name, at=now
    )
    totals = payload["totals"]["by_state"]
    log.info(
        "daily summary for %s: %d file(s) finished (%s); backlog %s",
        day_start.date(),
        len(finished),
        ", ".join(f"{k} {v}" for k, v in totals.items()) or "none",
        ", ".join(f"{k} {v}" for k, v in backlog.items()),
    )
    if outbox is not None:
        outbox.enqueue("daily_summary", payload)
    return payload
