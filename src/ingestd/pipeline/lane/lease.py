"""The lease keeper: while a file uploads, renew its lease (and the lane's), publish progress
and notice a cancel, a pause or a lost lease, which interrupt the upload.

One worker per lane for the daemon's life, idle between files: a thread started per file cost
more CPU than a small file's whole upload. The keeper knows nothing of the lane: it is given a
check to run once per ``interval`` and the interrupt to call when that check says stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ingestd.catalog.repo import FileRow
from ingestd.pipeline.worker import Worker

log = logging.getLogger("ingestd.lane")


class LeaseKeeper(Worker):
    """``watch`` a row when its upload starts, ``unwatch`` when it ends; the first check comes
    ``interval`` seconds after ``watch``."""

    def __init__(
        self,
        *,
        name: str,
        must_stop: Callable[[FileRow], bool],
        interrupt: Callable[[], None],
        interval: float = 1.0,
    ) -> None:
        super().__init__(name=name)
        self._must_stop = must_stop
        self._interrupt = interrupt
        self._interval = interval
        self._lock = threading.Lock()
        self._row: FileRow | None = None
        self._due = 0.0
        self._asleep = False  # waiting without a deadline (no row watched)

    def watch(self, row: FileRow) -> None:
        with self._lock:
            self._row = row
            self._due = time.monotonic() + self._interval
            if self._asleep:
                # Only a keeper asleep without a deadline needs waking; one still timing an
                # earlier file wakes at that deadline and re-times (no wake-up per small file).
                self._asleep = False
                self.wake()

    def unwatch(self) -> None:
        with self._lock:
            self._row = None

    def step(self) -> float | None:
        with self._lock:
            row, wait = self._row, self._due - time.monotonic()
            if row is None:
                self._asleep = True
                return None
            if wait > 0:
                return wait
            self._due = time.monotonic() + self._interval
        try:
            stop = self._must_stop(row)
        except Exception:
            log.exception("lease keeper for file %s", row.id)
            return self._interval
        with self._lock:
            # Under the lock: an upload that ended meanwhile is not interrupted, and the next
            # one clears any interrupt only after watch() (see Lane._handle).
            if stop and self._row is row:
                self._interrupt()
        return self._interval
