"""What runs beside an upload: the journal that records remote resources in the catalog, and
the lease keeper that renews claims, publishes progress and notices cancel or pause."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ingestd.catalog.repo import Catalog, FileRow
from ingestd.destinations.base import PartRecord

if TYPE_CHECKING:
    from ingestd.lane import Lane

log = logging.getLogger("ingestd.lane")


class CatalogJournal:
    """UploadJournal backed by the catalog: each record is its own committed transaction."""

    def __init__(self, catalog: Catalog, row: FileRow) -> None:
        self._catalog = catalog
        self._file_id = row.id
        self._upload: tuple[str, int] | None = (
            (row.upload_id, int(row.part_size or 0)) if row.upload_id else None
        )
        self.reused_parts = 0

    def known_upload(self) -> tuple[str, int] | None:
        return self._upload

    def known_parts(self) -> dict[int, PartRecord]:
        return self._catalog.parts(self._file_id) if self._upload else {}

    def upload_started(self, *, key: str, upload_id: str, part_size: int) -> None:
        self._catalog.upload_started(
            self._file_id, key=key, upload_id=upload_id, part_size=part_size
        )
        self._upload = (upload_id, part_size)

    def part_done(self, part: PartRecord) -> None:
        if self._upload is None:
            raise RuntimeError("part acknowledged before the upload was recorded")
        self._catalog.part_done(self._file_id, self._upload[0], part)

    def upload_forgotten(self) -> None:
        self._catalog.forget_upload(self._file_id)
        self._upload = None


class LeaseKeeper:
    """While a file uploads: renew the lease, publish progress, notice cancel and stop.

    One thread per lane for the daemon's life, idle between files: a thread started per file
    cost more CPU than a small file's whole upload. ``watch`` a row when its upload starts and
    ``unwatch`` when it ends; the first renewal comes ``interval`` seconds after ``watch``.
    """

    def __init__(self, lane: Lane, interval: float = 1.0) -> None:
        self._lane = lane
        self._interval = interval
        self._cond = threading.Condition()
        self._row: FileRow | None = None
        self._due = 0.0
        self._closed = False
        self._asleep = False  # waiting without a deadline (no row watched)
        self._thread = threading.Thread(target=self._run, name=f"lease-{lane.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    def watch(self, row: FileRow) -> None:
        with self._cond:
            self._row = row
            self._due = time.monotonic() + self._interval
            if self._asleep:
                # Only a keeper asleep without a deadline needs waking; one still timing an
                # earlier file wakes at that deadline and re-times (no wake-up per small file).
                self._cond.notify()

    def unwatch(self) -> None:
        with self._cond:
            self._row = None

    def _next(self) -> FileRow | None:
        """Wait until a watched row is due for renewal (None: closed)."""
        with self._cond:
            while not self._closed:
                row, wait = self._row, self._due - time.monotonic()
                if row is not None and wait <= 0:
                    self._due = time.monotonic() + self._interval
                    return row
                self._asleep = row is None
                self._cond.wait(wait if row is not None else None)
                self._asleep = False
            return None

    def _run(self) -> None:
        lane = self._lane
        while (row := self._next()) is not None:
            try:
                ours = lane.renew_lease(row.id)
                fresh = lane.catalog.get(row.id)
                # One upload is one loop turn: show the watchdog the lane is alive, not stuck.
                lane.last_loop_at = time.monotonic()
            except Exception:
                log.exception("lease keeper for file %s", row.id)
                continue
            stop = not ours or (fresh is not None and fresh.cancel_requested) or lane.paused_now()
            with self._cond:
                # Under the lock: an upload that ended meanwhile is not interrupted, and the
                # next one clears any interrupt only after watch() (see Lane._handle).
                if stop and self._row is row:
                    lane.interrupt()
