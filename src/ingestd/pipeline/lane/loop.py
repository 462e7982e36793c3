"""The upload lane: one file at a time, cooldown between files; a destination runs
``transfers`` of them (group.py), one with the default of 1.

This module is the lane's loop: when to claim, how an idle lane waits (eventfd doorbell plus
the catalog's commit signal), the lane lease, reclaiming uploads other nodes lost and aborting
orphaned multipart uploads. One file's upload is upload.py, what its end means is outcome.py,
why the lane waits is hold.py (docs/ARCHITECTURE.md).

claim -> pick key -> upload (resumable) -> mark uploaded (the post-action stage is rung) ->
cooldown. Without a cooldown or anything else that holds the lane between files, "mark
uploaded" and the next claim are one transaction: one commit per file.

About 470 lines: the loop's turn, its idle wait (eventfd plus commit signal) and its periodic
duties (lease, reclaim, orphans) read the same timers; the upload, its outcome and the holds
already live apart.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import select
import threading
import time
from collections.abc import Callable

from ingestd.catalog import queries
from ingestd.catalog.changes import ChangeWatch, CommitSignal
from ingestd.catalog.notices import Notice
from ingestd.catalog.repo import Catalog, Claim, FileRow
from ingestd.config import DestinationConfig, QueueConfig, Settings
from ingestd.destinations.base import Destination
from ingestd.observers import LaneObserver
from ingestd.pipeline.lane.hold import Hold
from ingestd.pipeline.lane.lease import LeaseKeeper
from ingestd.pipeline.lane.outcome import (
    EXPECTED,
    Interrupted,
    Outcome,
    Outcomes,
    Uploaded,
    classify,
)
from ingestd.pipeline.lane.reserved import ReservedKeys
from ingestd.pipeline.lane.upload import (
    Upload,
    describes_objects,
    keeps_duplicates,
    planned_key,
)
from ingestd.pipeline.worker import Worker
from ingestd.tags import merged

log = logging.getLogger("ingestd.lane")
# Files cancelled or failed while queued rarely leave a multipart upload behind; a read every
# 30 s (as often as expired leases are reclaimed) costs an idle lane little.
ORPHAN_CHECK_SECONDS = 30.0
# Without a commit signal (PostgreSQL), an idle lane looks for commits this often: operator
# commands (retry, resume, cancel) take effect within it (the CLI promises "within 2 seconds").
IDLE_TICK_SECONDS = 1.5
PAUSED_RECHECK_SECONDS = 30.0
LANE_TAKEN_RETRY_SECONDS = 2.0  # another node runs this lane
DRAINED_PAUSE_SECONDS = 1.0
# While another process's write transaction is open, an idle lane looks for its end after these
# waits (then every last one): its commit shows once its fsync is done.
COMMIT_PUBLISH_WAITS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)


def _nothing() -> None:
    return None


def _no_post(_file_id: int) -> None:
    return None


class Lane(Worker):
    """Uploads the queued files of one destination, sequentially."""

    def __init__(
        self,
        *,
        name: str,
        destination: Destination,
        catalog: Catalog,
        settings: Settings,
        owner: str,
        observer: LaneObserver,
        failure_notice: Notice | None = None,
        notice_written: Callable[[], None] = _nothing,
        rediscovered: Callable[[], None] = _nothing,
        drained: Callable[[], None] = _nothing,
        post_due: Callable[[int], None] = _no_post,
        slot: int = 0,
        releases_lease: bool = True,
        reserved: ReservedKeys | None = None,
    ) -> None:
        """``failure_notice`` builds the notification committed with a failure and
        ``notice_written`` rings its sender; ``rediscovered`` rings intake when a file went back
        to it (changed since hashed); ``drained`` hears that the queue ran dry (the one-shot
        scan checks then whether it is done); ``post_due`` rings the post-action stage for an
        uploaded file.

        ``reserved``: the keys the destination's lanes are writing (shared by a LaneGroup's
        slots). ``slot``: which of the destination's ``transfers`` this loop is (0 for the
        first, whose thread is ``lane-NAME``; the others are ``lane-NAME-2``...); with
        ``releases_lease`` False the lane lease outlives this loop (its siblings still upload:
        see LaneGroup)."""
        suffix = f"-{slot + 1}" if slot else ""
        super().__init__(name=f"lane-{name}{suffix}")
        self.destination_name = name
        self._dest = destination
        self._catalog = catalog
        self._settings = settings
        self._owner = owner
        self._observer = observer
        self._drained = drained
        self._cancel = threading.Event()
        self.hold = Hold(
            name=name,
            catalog=catalog,
            settings=settings,
            destination=destination,
            observer=observer,
        )
        self._outcomes = Outcomes(
            name=name,
            catalog=catalog,
            owner=owner,
            hold=self.hold,
            observer=observer,
            failure_notice=failure_notice,
            notice_written=notice_written,
            rediscovered=rediscovered,
            post_due=post_due,
        )
        self._next_orphan_check = 0.0
        self._next_reclaim = 0.0
        self._lane_renew_at = 0.0
        self.current: FileRow | None = None
        self.sent = 0
        self._next: FileRow | None = None  # claimed with the last file's success
        self._releases_lease = releases_lease
        self._reserved = reserved or ReservedKeys()
        self._keeper = LeaseKeeper(
            name=f"lease-{name}{suffix}", must_stop=self._lease_check, interrupt=self.interrupt
        )
        self._draining = False
        self._idle_until: float | None = None  # set by a step that asks for an idle wait
        self._changes = ChangeWatch.of(catalog.engine)
        self._commits: CommitSignal | None = None  # opened by the lane's thread
        # wake() rings this too, so an idle lane can wait on it and on the commit signal at once.
        self._eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._eventfd_lock = threading.Lock()

    @property
    def _q(self) -> QueueConfig:
        return self._settings.queue

    def _dest_cfg(self) -> DestinationConfig:
        return self._settings.destinations[self.destination_name]

    def reconfigure(self, *, settings: Settings, destination: Destination) -> None:
        """Take a new configuration between files (SIGHUP); the upload in progress goes on."""
        self._settings = settings
        self._dest = destination
        self.hold.reconfigure(settings=settings, destination=destination)
        self.wake()

    @property
    def down_reason(self) -> str | None:
        return self.hold.down_reason

    @property
    def draining(self) -> bool:
        """The lane is working through its queue (its last claim found a file)."""
        return self._draining

    @property
    def destination(self) -> Destination:
        return self._dest

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def interrupt(self) -> None:
        """Stop the current upload after the parts in flight (cancel, pause or lost lease)."""
        self._cancel.set()

    def paused_now(self) -> bool:
        return self._catalog.is_paused(self.destination_name)

    # ----------------------------------------------------------------- worker life

    def wake(self) -> None:
        super().wake()
        with self._eventfd_lock:
            if self._eventfd >= 0:  # -1 once the lane stopped: its number may be reused
                os.eventfd_write(self._eventfd, 1)

    def start(self) -> None:
        self._keeper.start()
        super().start()

    def request_stop(self) -> None:
        """Stop taking files; the upload in progress stops after its parts in flight."""
        self._cancel.set()
        super().request_stop()

    def stop(self, *, timeout: float) -> None:
        """Stop taking files; parts in flight may finish within ``timeout``; then persist."""
        never_started = self._thread is None
        super().stop(timeout=timeout)
        if never_started:
            self._close_descriptors()
        self._keeper.stop(timeout=5.0)

    def on_start(self) -> None:
        self._commits = self._changes.signal()

    def on_stop(self) -> None:
        self.hold.end_cooldown()
        if self._next is not None:  # claimed, not started: back to the queue, no attempt spent
            self._outcomes.apply(
                self._next, Interrupted(), settings=self._settings, destination=self._dest
            )
            self._next = None
        if self._releases_lease:
            self._catalog.release_lane(self.destination_name, owner=self._owner)
        self._close_descriptors()

    def _close_descriptors(self) -> None:
        self._changes.close()
        if self._commits is not None:
            self._commits.close()
        with self._eventfd_lock:
            if self._eventfd >= 0:
                os.close(self._eventfd)
                self._eventfd = -1

    # ----------------------------------------------------------------- one turn

    def step(self) -> float | None:
        self._idle_until = None
        if (chained := self._next) is not None:
            self._next = None
            return self._upload(chained)
        cooling = self.hold.cooldown_wait()
        if cooling is not None:
            return cooling
        # Idle (the queue ran dry): one read answers both "paused?" and "when is a file due?".
        # After a claim, go straight for the next one; the pause flag is then read from its cache.
        if self._draining:
            paused, due, next_due = self.hold.paused(), True, None
        else:
            paused, next_due = queries.lane_poll(self._catalog.engine, self.destination_name)
            due = next_due is not None and next_due <= time.time()
            self.hold.note_paused(paused)
        if paused:
            self._observer.lane_paused(self.destination_name, True)
            return self._idle(until=time.monotonic() + PAUSED_RECHECK_SECONDS)  # resume: a commit
        self._observer.lane_paused(self.destination_name, False)
        if not self._hold_lane():
            return LANE_TAKEN_RETRY_SECONDS
        if (backoff := self.hold.probe_wait()) is not None:
            return backoff
        self._abort_orphans()
        self._reclaim_lost()
        if not due:
            until = min(self._lane_renew_at, self._next_orphan_check, self._next_reclaim)
            if next_due is not None:
                until = min(until, time.monotonic() + next_due - time.time())
            return self._idle(until=until)
        if (busy := self.hold.gate_wait()) is not None:
            return busy
        row = self._catalog.claim_next(
            self.destination_name,
            owner=self._owner,
            lease_seconds=self._q.lease_seconds,
            plan=functools.partial(planned_key, dest_cfg=self._dest_cfg()),
            aging_seconds=self._q.aging_minutes * 60.0,
        )
        self._draining = row is not None
        if row is None:
            self._drained()
            return DRAINED_PAUSE_SECONDS
        return self._upload(row)

    def _upload(self, row: FileRow) -> float:
        chain = self._chained_claim()
        outcome = self._handle(row, then_claim=chain)
        if not isinstance(outcome, Uploaded):
            return 0.0
        if chain is not None and self._next is None:
            # The claim made with the success found the queue empty.
            self._draining = False
            self._drained()
            return DRAINED_PAUSE_SECONDS
        return self.hold.start_cooldown() or 0.0

    def _chained_claim(self) -> Claim | None:
        """The claim to make in the transaction that records this file's success, when
        nothing would hold the lane between the two (see Hold.holds_between_files) and no
        periodic duty of the loop (lease renewal, reclaim, orphans) is due."""
        if self.stopping or self.hold.holds_between_files():
            return None
        duties = (self._lane_renew_at, self._next_orphan_check, self._next_reclaim)
        if time.monotonic() >= min(duties):
            return None
        return Claim(
            destination=self.destination_name,
            owner=self._owner,
            lease_seconds=self._q.lease_seconds,
            plan=functools.partial(planned_key, dest_cfg=self._dest_cfg()),
            aging_seconds=self._q.aging_minutes * 60.0,
        )

    def _handle(self, row: FileRow, *, then_claim: Claim | None = None) -> Outcome:
        self.current, self.sent = row, 0
        started = time.monotonic()
        self._keeper.watch(row)
        # After watch(): an interrupt the keeper raised for the previous file is cleared here.
        self._cancel.clear()
        upload = Upload(
            catalog=self._catalog,
            destination=self._dest,
            dest_cfg=self._dest_cfg(),
            progress=self._progress,
            cancel=self._cancel,
            tags=self._tag_templates(row.inbox),
            describe=describes_objects(self._settings, row.inbox),
            reserved=self._reserved,
            keeps_duplicate=keeps_duplicates(self._settings, row.inbox),
        )
        outcome: Outcome
        try:
            outcome = Uploaded(upload.run(row), 0.0)
        except Exception as exc:
            if not isinstance(exc, EXPECTED):
                log.exception("lane %s: bug while uploading file %s", self.destination_name, row.id)
            outcome = classify(exc)
        finally:
            self._keeper.unwatch()
            self.current = None
        if isinstance(outcome, Uploaded):
            outcome = Uploaded(outcome.result, time.monotonic() - started)
        try:
            self._next = self._outcomes.apply(
                row, outcome, settings=self._settings, destination=self._dest, then_claim=then_claim
            )
        finally:
            # The outcome is recorded (and the object stored, or not): the key is free to choose.
            self._reserved.release(row.id)
        return outcome

    def _tag_templates(self, inbox: str) -> dict[str, str]:
        """The destination's tags with the inbox's laid over them (S3 destinations only)."""
        dest_tags = getattr(self._dest_cfg(), "tags", {})
        try:
            inbox_tags = self._settings.inbox(inbox).tags
        except KeyError:  # an inbox no longer configured: the destination's tags still apply
            inbox_tags = {}
        return merged(dest_tags, inbox_tags)

    def _progress(self, nbytes: int) -> None:
        self.sent += nbytes
        self._observer.bytes_sent(self.destination_name, nbytes)

    # ----------------------------------------------------------------- during an upload

    def _lease_check(self, row: FileRow) -> bool:
        """The lease keeper's check, once a second while ``row`` uploads: renew, publish
        progress; True when the upload must stop (lease lost, cancelled or paused)."""
        ours = self.renew_lease(row.id)
        fresh = self._catalog.get(row.id)
        # One upload is one loop turn: show the watchdog the lane is alive, not stuck.
        self.last_loop_at = time.monotonic()
        return not ours or (fresh is not None and fresh.cancel_requested) or self.paused_now()

    def renew_lease(self, file_id: int) -> bool:
        """Extend the claims on the lane and on the file being uploaded, and publish progress.
        False when either was lost (another node took over): the upload must stop."""
        # The same renewal rule as between files: a write only when a third of the lease passed.
        lane_ok = self._hold_lane()
        if not lane_ok:
            self._lane_renew_at = 0.0
        file_ok = self._catalog.renew(
            file_id, owner=self._owner, lease_seconds=self._q.lease_seconds, bytes_sent=self.sent
        )
        return lane_ok and file_ok

    # ----------------------------------------------------------------- lease, reclaim, orphans

    def _hold_lane(self) -> bool:
        """Take or renew the lane lease, writing only when a third of it has passed (an idle
        lane must not commit, and fsync, every second)."""
        now = time.monotonic()
        if now < self._lane_renew_at:
            return True
        if not self._catalog.acquire_lane(
            self.destination_name, owner=self._owner, lease_seconds=self._q.lease_seconds
        ):
            return False
        self._lane_renew_at = now + self._q.lease_seconds / 3
        return True

    def _reclaim_lost(self) -> None:
        """Files another node was uploading when it died (lease expired) go back to the queue,
        so this node resumes them."""
        now = time.monotonic()
        if now < self._next_reclaim:
            return
        self._next_reclaim = now + min(30.0, self._q.lease_seconds / 2)
        ids = self._catalog.reclaim_expired(owner=self._owner, include_own=False)
        if ids:
            log.info(
                "lane %s: took over %d upload(s) whose lease expired: %s",
                self.destination_name,
                len(ids),
                ids,
            )

    def _abort_orphans(self) -> None:
        """Abort server-side uploads of files cancelled or failed while queued."""
        now = time.monotonic()
        if now < self._next_orphan_check:
            return
        self._next_orphan_check = now + ORPHAN_CHECK_SECONDS
        for file_id, key, upload_id in queries.orphaned_uploads(
            self._catalog.engine, self.destination_name
        ):
            self._dest.abort(key, upload_id)
            self._catalog.forget_upload(file_id)
            log.info("file %s: aborted its abandoned multipart upload %s", file_id, upload_id)

    # ----------------------------------------------------------------- waiting

    def _idle(self, *, until: float) -> float:
        """Ask the loop for an idle wait until ``until`` (monotonic); see ``wait``."""
        self._idle_until = until
        return max(0.0, until - time.monotonic())

    def wait(self, seconds: float | None) -> None:
        """A plain wait (a hold, a backoff) ends at a wake or stop. An idle wait (the step
        asked for one) also ends at a commit by anyone (an operator's retry, resume or
        cancel), without reading the queue: an idle lane must cost next to nothing. With a
        commit signal it sleeps until one of those happens; without, it looks at the
        catalog's change counter every IDLE_TICK_SECONDS."""
        until = self._idle_until
        if until is None:
            super().wait(seconds)
            return
        commits = self._commits
        if commits is None:
            while (remaining := until - time.monotonic()) > 0:
                if self._doorbell.wait(min(IDLE_TICK_SECONDS, remaining)):
                    self._doorbell.clear()
                    return
                if self._changes.changed():
                    return
            return
        while (remaining := until - time.monotonic()) > 0:
            if self._changes.changed():
                return
            ready, _, _ = select.select([commits.fileno(), self._eventfd], [], [], remaining)
            if self._eventfd in ready:
                os.eventfd_read(self._eventfd)
                self._doorbell.clear()
                return
            if ready:
                commits.drain()
                self._await_writer(commits, until)

    def _await_writer(self, commits: CommitSignal, until: float) -> None:
        """A writer appends its frames (what inotify reports), syncs them and only then
        publishes the commit, holding the WAL write lock throughout: while another process
        holds it, wait (growing steps), so the look that follows sees its commit. Writes drained
        before this either show by then or belong to the lock holder; later ones report anew.
        (This process's own commits that matter to the lane wake it directly.)"""
        waits = itertools.chain(COMMIT_PUBLISH_WAITS, itertools.repeat(COMMIT_PUBLISH_WAITS[-1]))
        for delay in waits:
            if not commits.writer_busy() or time.monotonic() >= until:
                return
            if self._doorbell.wait(delay):
                return
