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
    """While a file uploads: renew the lease, publish progress, notice cancel and stop."""

    def __init__(self, lane: Lane, row: FileRow, interval: float = 1.0) -> None:
        self._lane = lane
        self._row = row
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{row.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    def _run(self) -> None:
        lane = self._lane
        while not self._done.wait(self._interval):
            try:
                ours = lane.renew_lease(self._row.id)
                fresh = lane.catalog.get(self._row.id)
                # One upload is one loop turn: show the watchdog the lane is alive, not stuck.
                lane.last_loop_at = time.monotonic()
            except Exception:
                log.exception("lease keeper for file %s", self._row.id)
                continue
            if not ours or (fresh is not None and fresh.cancel_requested) or lane.paused_now():
                lane.interrupt()
