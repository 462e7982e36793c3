"""The post-action stage's loop: rows in a terminal state with ``post_done`` false ->
``post_done``, in batches, on its own thread, so an archive (possibly a cross-filesystem copy)
never delays an upload (docs/ARCHITECTURE.md, "post-actions").

Intake and the lanes ring ``due(file_id)`` after they commit a terminal state (the daemon
passes it to them as a plain callback). What this process was told about is done at once; a
row nobody here was told about (left by a crash of this node, or by another node that died)
is done on the first pass after start, or once it has waited ``ADOPT_SECONDS``: a row another
live node just finished is that node's to do, and two nodes must not move one file twice.
A failed post-action is retried with a backoff, logged, and never holds up the other rows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ingestd.catalog.repo import Catalog, FileRow
from ingestd.config import Settings
from ingestd.pipeline.post.perform import PostActions, RemoteInbox
from ingestd.pipeline.worker import Worker
from ingestd.retry import backoff_delay

log = logging.getLogger("ingestd.post")
BATCH = 64  # rows per catalog read, and per confirming transaction
# How long a due row nobody here was told about waits before this node adopts it (as often as
# the daemon's retry job used to look).
ADOPT_SECONDS = 30.0
RETRY_BASE_SECONDS = 2.0
RETRY_CAP_SECONDS = 300.0


@dataclass(frozen=True)
class _Retry:
    attempts: int
    at: float  # monotonic


class PostWorker(Worker):
    """Performs due post-actions, a batch per step."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        settings: Settings,
        remotes: Mapping[str, RemoteInbox],
        batch: int = BATCH,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name="post")
        self._catalog = catalog
        self._batch = batch
        self._clock = clock
        self._wall = wall
        self._actions = self._build(settings, remotes)
        self._lock = threading.Lock()
        self._told: set[int] = set()  # rows intake or a lane of this process finished
        self._retries: dict[int, _Retry] = {}
        self._after = 0  # the id the next page starts after
        self._swept = False  # the first full pass after start is done
        self._told_before: set[int] = set()  # told when the current pass began
        self._seen: set[int] = set()  # due rows the current pass read

    def _build(self, settings: Settings, remotes: Mapping[str, RemoteInbox]) -> PostActions:
        return PostActions(
            catalog=self._catalog, settings=settings, remotes=remotes, progress=self._alive
        )

    def _alive(self) -> None:
        self.last_loop_at = time.monotonic()

    # ------------------------------------------------------------- called from other threads

    def due(self, file_id: int) -> None:
        """A row reached a terminal state with its post-action due: do it now."""
        with self._lock:
            self._told.add(file_id)
        self.wake()

    def reconfigure(self, *, settings: Settings, remotes: Mapping[str, RemoteInbox]) -> None:
        """Swap the configuration (SIGHUP); takes effect at the next batch."""
        self._actions = self._build(settings, remotes)
        self.wake()

    @property
    def busy(self) -> bool:
        """Rows this process finished still wait for their post-action."""
        with self._lock:
            return bool(self._told)

    # ------------------------------------------------------------- the loop

    def step(self) -> float | None:
        if self._after == 0:  # a pass over every due row begins
            with self._lock:
                self._told_before = set(self._told)
            self._seen = set()
        page = self._catalog.pending_post(after_id=self._after, limit=self._batch)
        self._seen.update(row.id for row in page)
        last_page = len(page) < self._batch
        self._after = 0 if last_page else page[-1].id
        now = self._clock()
        todo = [row for row in page if self._takes(row, now)]
        if todo:
            self._perform(todo, now)
        if not last_page:
            return 0.0
        self._swept = True
        with self._lock:
            # Told about before this pass, yet not due in it: done by another node.
            self._told -= self._told_before - self._seen
        # A row that failed here and is no longer due (another node did it, or the operator
        # changed it) has nothing left to retry: its backoff must not keep waking the loop.
        self._retries = {i: r for i, r in self._retries.items() if i in self._seen}
        return self._pause(self._clock())

    def on_stop(self) -> None:
        """What this process finished just before stopping still gets its post-action."""
        with self._lock:
            told = bool(self._told)
        if not told:
            return
        try:
            now = self._clock()
            rows = self._catalog.pending_post(limit=None)
            todo = [r for r in rows if r.id in self._told and self._takes(r, now)]
            if todo:
                self._perform(todo, now)
        except Exception:
            log.exception("post-actions at stop failed; they are done at the next start")

    def _takes(self, row: FileRow, now: float) -> bool:
        retry = self._retries.get(row.id)
        if retry is not None:
            return retry.at <= now  # tried here before: ours to try again once it is due
        with self._lock:
            told = row.id in self._told
        return told or not self._swept or self._wall() - row.updated_at >= ADOPT_SECONDS

    def _perform(self, rows: list[FileRow], now: float) -> None:
        failures = self._actions.perform(rows)
        failed = {f.file_id for f in failures}
        for failure in failures:
            attempts = self._retries.get(failure.file_id, _Retry(0, now)).attempts + 1
            delay = backoff_delay(attempts, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS)
            self._retries[failure.file_id] = _Retry(attempts, now + delay)
            log.error(
                "file %s: post-action failed: %s (attempt %d; retrying in %.0fs)",
                failure.file_id,
                failure.error,
                attempts,
                delay,
                extra={"file_id": failure.file_id},
            )
        with self._lock:
            for row in rows:
                if row.id not in failed:
                    self._told.discard(row.id)
                    self._retries.pop(row.id, None)

    def _pause(self, now: float) -> float:
        """Until the next retry falls due, or the next look for rows to adopt."""
        soonest = ADOPT_SECONDS
        for retry in self._retries.values():
            soonest = min(soonest, max(0.0, retry.at - now))
        return soonest
