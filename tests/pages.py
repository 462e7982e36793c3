"""Catalogs for the dashboard's tests and for scripts/screenshots: a real catalog (``Catalog.open``,
every migration) filled with rows as the daemon writes them (files with their events and
parts, batches, a lane, a node), and the ``PageSource`` the daemon would hand the pages."""

from __future__ import annotations

import hashlib
import os
import random
import socket
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from ingestd.catalog.repo import Catalog
from ingestd.catalog.rows import source_key
from ingestd.catalog.schema import batches, events, files, lanes, nodes, parts
from ingestd.config import Settings
from ingestd.page.source import PageSource

MIB = 1024 * 1024


def settings_for(
    tmp: Path, inboxes: list[str], destination: str = "main", catalog_url: str | None = None
) -> Settings:
    extra = {"catalog_url": catalog_url} if catalog_url else {}
    return Settings(
        **extra,
        state_dir=tmp / "state",
        destinations={destination: {"type": "directory", "path": str(tmp / "bucket")}},
        inboxes=[
            {"name": name, "path": str(tmp / "in" / name), "destination": destination}
            for name in inboxes
        ],
    )


def open_source(settings: Settings, *, now: float | None = None) -> tuple[Catalog, PageSource]:
    """The catalog (every migration) and the PageSource the daemon would hand the pages; with
    ``now``, the pages' clock stands still there."""
    catalog = Catalog.open(settings.effective_catalog_url)
    if now is None:
        return catalog, PageSource(engine=catalog.engine, settings=settings, catalog=catalog)
    return catalog, PageSource(
        engine=catalog.engine, settings=settings, catalog=catalog, clock=lambda: now
    )


_counter = [0]


def add_file(engine: Engine, *, at: float, **values: Any) -> int:
    """One ``files`` row as intake and the lane leave it (``at``: its arrival), with the
    events of its path through the states; returns its id."""
    _counter[0] += 1
    n = _counter[0]
    state = values.get("state", "uploaded")
    inbox = values.get("inbox", "scanner")
    relpath = values.get("relpath", f"scan-{n:06d}.pdf")
    size = values.get("size", 200_000)
    done = state in ("uploaded", "duplicate", "rejected", "failed", "cancelled")
    finished = values.pop("finished_at", at + 4.0 if done else None)
    row: dict[str, Any] = {
        "inbox": inbox,
        "relpath": relpath,
        "source_path": f"/srv/drop/{inbox}/{relpath}",
        "source_key": None
        if done
        else source_key(inbox, f"{relpath}#{n}", postgres=engine.dialect.name == "postgresql"),
        "size": size,
        "mtime_ns": int((at - 10) * 1e9),
        "sha256": hashlib.sha256(f"{relpath}{n}".encode("utf-8", "surrogateescape")).hexdigest(),
        "detected_type": "pdf",
        "content_type": "application/pdf",
        "dedup_scope": "*",
        "state": state,
        "attempts": 1 if state == "uploaded" else 0,
        "destination": "main",
        "key": f"{inbox}/{relpath}" if state == "uploaded" else None,
        "discovered_at": at,
        "queued_at": at + 1.0,
        "started_at": at + 2.0 if state in ("uploaded", "uploading") else None,
        "finished_at": finished,
        "updated_at": finished or at + 1.0,
        "post_done": done,
        "bytes_sent": size if state == "uploaded" else 0,
        "upload_seconds": 2.0 if state == "uploaded" else None,
    }
    row.update({k: v for k, v in values.items() if k in files.c})
    with engine.begin() as conn:
        file_id = int(conn.execute(insert(files).returning(files.c.id), row).scalar_one())
        path = (
            ["discovered", "queued", "uploading", state]
            if state == "uploaded"
            else (
                ["discovered", state]
                if state in ("rejected", "duplicate")
                else ["discovered", "queued", state]
            )
        )
        when = {
            "discovered": at,
            "queued": row["queued_at"],
            "uploading": row["started_at"] or at + 2.0,
        }
        steps = [
            {
                "file_id": file_id,
                "at": when.get(b) or finished or at + i,
                "from_state": a,
                "to_state": b,
                "code": row.get("reason_code") if b in ("rejected", "failed") else None,
                "detail": row.get("reason") if b in ("rejected", "failed") else None,
            }
            for i, (a, b) in enumerate(zip([None, *path], path, strict=False))
            if a != b
        ]
        conn.execute(insert(events), steps)
    return file_id


def add_batch(
    engine: Engine, *, inbox: str, opened: float, last: float, closed: float | None = None
) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(batches).returning(batches.c.id),
                {"inbox": inbox, "opened_at": opened, "last_arrival_at": last, "closed_at": closed},
            ).scalar_one()
        )


def add_parts(engine: Engine, file_id: int, sizes: list[int]) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(parts),
            [
                {
                    "file_id": file_id,
                    "part_number": i + 1,
                    "upload_id": "upload-1",
                    "size": size,
                    "etag": hashlib.md5(str(i).encode(), usedforsecurity=False).hexdigest(),
                    "md5": hashlib.md5(str(i).encode(), usedforsecurity=False).hexdigest(),
                }
                for i, size in enumerate(sizes)
            ],
        )


def add_lane(engine: Engine, *, now: float, destination: str = "main", **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(insert(lanes), {"destination": destination, "updated_at": now, **values})


def add_node(engine: Engine, *, now: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(nodes),
            {
                "node": "node-1",
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "version": "0.1.0",
                "started_at": now - 7200,
                "beat_at": now,
            },
        )


def demo(engine: Engine, *, now: float, seed: int = 20) -> None:
    """A scanner room's week: three inboxes, arrivals over 7 days and the last hour, batches,
    rejections and a failure, one upload in flight, a queue and a cooldown (the screenshots'
    catalog, and the one the Chromium tests look at)."""
    rng = random.Random(seed)
    inboxes = ["scanner-1", "office", "partner-sftp"]
    for hour in range(168, 0, -1):
        busy = 9 <= (int((now - hour * 3600) // 3600) % 24) <= 17
        for _ in range(rng.randint(2, 10) if busy else rng.randint(0, 2)):
            at = now - hour * 3600 + rng.uniform(0, 3600)
            add_file(engine, at=at, inbox=rng.choice(inboxes), size=int(rng.uniform(0.1, 8) * MIB))
    batch = add_batch(engine, inbox="scanner-1", opened=now - 3000, last=now - 30)
    for i in range(60):
        at = now - 3000 + i * 49
        state = "uploaded" if i < 44 else ("queued" if i < 54 else "uploaded")
        if i in (7, 23):
            add_file(
                engine,
                at=at,
                inbox="scanner-1",
                state="rejected",
                batch_id=batch,
                relpath=f"batch-17/page-{i:03d}.pdf",
                reason_code="truncated",
                reason="PDF without %EOF: the scan was interrupted",
            )
            continue
        if i == 31:
            add_file(
                engine,
                at=at,
                inbox="scanner-1",
                state="duplicate",
                batch_id=batch,
                relpath=f"batch-17/page-{i:03d}.pdf",
                original_id=1,
            )
            continue
        add_file(
            engine,
            at=at,
            inbox="scanner-1",
            state=state,
            batch_id=batch,
            relpath=f"batch-17/page-{i:03d}.pdf",
            size=int(rng.uniform(0.5, 4) * MIB),
            finished_at=at + 20 if state == "uploaded" else None,
        )
    for i in range(20):
        at = now - 3500 + i * 170
        add_file(
            engine,
            at=at,
            inbox="office",
            relpath=f"invoices/2026-12/inv-{4100 + i}.pdf",
            finished_at=at + 30,
        )
    closed = add_batch(
        engine, inbox="office", opened=now - 90000, last=now - 86000, closed=now - 85800
    )
    for i in range(12):
        add_file(
            engine,
            at=now - 90000 + i * 300,
            inbox="office",
            batch_id=closed,
            relpath=f"contracts/c-{i:02d}.pdf",
        )
    add_file(
        engine,
        at=now - 5000,
        inbox="partner-sftp",
        state="rejected",
        relpath="orders/order-991.docx",
        reason_code="type_not_allowed",
        reason="type docx is not in allowed_types (pdf, tiff)",
        detected_type="docx",
    )
    add_file(
        engine,
        at=now - 4000,
        inbox="office",
        state="failed",
        relpath="invoices/2026-12/inv-big.pdf",
        reason_code="attempts",
        reason="gave up after 8 attempts: the server closed the connection",
        attempts=8,
    )
    current = add_file(
        engine,
        at=now - 40,
        inbox="scanner-1",
        state="uploading",
        relpath="batch-17/page-060-colour.tiff",
        detected_type="tiff",
        content_type="image/tiff",
        size=96 * MIB,
        bytes_sent=40 * MIB,
        started_at=now - 20,
        upload_id="upload-1",
        part_size=8 * MIB,
    )
    add_parts(engine, current, [8 * MIB] * 5)
    add_lane(engine, now=now, current_file_id=current)
    add_node(engine, now=now)


class CatalogServed:
    """The daemon's ``Served`` over a catalog without the pipeline: what the HTTP server reads,
    from the same catalog code the daemon uses (status.collect, the PageSource)."""

    def __init__(self, source: PageSource) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        self.page_source = source

    def healthy(self) -> bool:
        return True

    def readiness_problems(self) -> list[str]:
        return []

    def status_snapshot(self) -> dict[str, Any]:
        from ingestd import status

        with self.page_source.reader() as reader:
            return status.collect(reader, self.page_source.settings, now=self.page_source.now())
