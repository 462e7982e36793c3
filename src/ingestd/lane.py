"""The upload lane: one per destination, one file at a time, cooldown between files.

claim -> pick key -> upload (resumable) -> mark uploaded -> post-action -> cooldown.
Destination trouble holds the lane without burning attempts; file trouble retries with backoff.
"""

from __future__ import annotations

import itertools
import logging
import os
import select
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from ingestd.catalog import queries
from ingestd.catalog.changes import ChangeWatch, CommitSignal
from ingestd.catalog.repo import Catalog, FileRow, StaleState
from ingestd.config import DestinationConfig, QueueConfig, Settings
from ingestd.destinations.base import (
    Destination,
    PutResult,
    RemoteObject,
    SourceFile,
)
from ingestd.errors import (
    Cancelled,
    DestinationDown,
    DestinationMisconfigured,
    FileProblem,
    SourceChanged,
    SourceVanished,
    UploadGone,
)
from ingestd.events import LaneObserver
from ingestd.finisher import Finisher
from ingestd.gate import Gate
from ingestd.keys import KeyFields, render_key, with_suffix
from ingestd.lane_support import CatalogJournal, LeaseKeeper
from ingestd.logs import outcome_fields
from ingestd.retry import Backoff, backoff_delay
from ingestd.states import FileState

log = logging.getLogger("ingestd.lane")
MAX_KEY_SUFFIX = 1000
# Files cancelled or failed while queued rarely leave a multipart upload behind; a read every
# 30 s (as often as expired leases are reclaimed) costs an idle lane little.
ORPHAN_CHECK_SECONDS = 30.0
PAUSE_CHECK_SECONDS = 0.25
# Without a commit signal (PostgreSQL), an idle lane looks for commits this often: operator
# commands (retry, resume, cancel) take effect within it (the CLI promises "within 2 seconds").
IDLE_TICK_SECONDS = 1.5
PAUSED_RECHECK_SECONDS = 30.0
# While another process's write transaction is open, an idle lane looks for its end after these
# waits (then every last one): its commit shows once its fsync is done.
COMMIT_PUBLISH_WAITS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)


class Lane:
    """Uploads the queued files of one destination, sequentially."""

    def __init__(
        self,
        *,
        name: str,
        destination: Destination,
        catalog: Catalog,
        settings: Settings,
        finisher: Finisher,
        owner: str,
        observer: LaneObserver,
    ) -> None:
        self.name = name
        self._dest = destination
        self._catalog = catalog
        self._settings = settings
        self._finisher = finisher
        self._owner = owner
        self._observer = observer
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._probe = Backoff(cap=settings.queue.probe_max_seconds)
        self._down = False
        self.down_reason: str | None = None
        self.last_loop_at = time.monotonic()
        self._next_orphan_check = 0.0
        self._next_reclaim = 0.0
        self._lane_renew_at = 0.0
        self._gate_busy = False
        self.current: FileRow | None = None
        self.sent = 0
        self._keeper = LeaseKeeper(self)
        self._draining = False
        self._pause_cached = False
        self._pause_checked_at = -PAUSE_CHECK_SECONDS
        self._changes = ChangeWatch.of(catalog.engine)
        self._commits: CommitSignal | None = None  # opened by the lane's thread
        # wake() rings this too, so an idle lane can wait on it and on the commit signal at once.
        self._doorbell = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._doorbell_lock = threading.Lock()

    @property
    def _q(self) -> QueueConfig:
        return self._settings.queue

    def reconfigure(
        self, *, settings: Settings, destination: Destination, finisher: Finisher
    ) -> None:
        """Take a new configuration between files (SIGHUP); the upload in progress goes on."""
        self._settings = settings
        self._dest = destination
        self._finisher = finisher
        self.wake()

    def wake(self) -> None:
        self._wake.set()
        with self._doorbell_lock:
            if self._doorbell >= 0:  # -1 once the lane stopped: its number may be reused
                os.eventfd_write(self._doorbell, 1)

    def interrupt(self) -> None:
        """Stop the current upload after the parts in flight (cancel, pause or lost lease)."""
        self._cancel.set()

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

    def paused_now(self) -> bool:
        return self._catalog.is_paused(self.name)

    def start(self) -> None:
        self._keeper.start()
        self._thread = threading.Thread(target=self._run, name=f"lane-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float) -> None:
        """Stop taking files; parts in flight may finish within ``timeout``; then persist."""
        self._stopping.set()
        self._cancel.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._close_descriptors()
        self._keeper.close()

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(max(0.0, seconds))
        self._wake.clear()

    # ----------------------------------------------------------------- loop

    def _run(self) -> None:
        self._commits = self._changes.signal()
        while not self._stopping.is_set():
            self.last_loop_at = time.monotonic()
            try:
                self._step()
            except Exception:
                log.exception("lane %s: unexpected error; continuing", self.name)
                self._sleep(1.0)
        self._catalog.release_lane(self.name, owner=self._owner)
        self._close_descriptors()

    def _close_descriptors(self) -> None:
        self._changes.close()
        if self._commits is not None:
            self._commits.close()
        with self._doorbell_lock:
            if self._doorbell >= 0:
                os.close(self._doorbell)
                self._doorbell = -1

    def _step(self) -> None:
        # Idle (the queue ran dry): one read answers both "paused?" and "when is a file due?".
        # After a claim, go straight for the next one; the pause flag is then read from its cache.
        if self._draining:
            paused, due, next_due = self._paused(), True, None
        else:
            paused, next_due = queries.lane_poll(self._catalog.engine, self.name)
            due = next_due is not None and next_due <= time.time()
            self._pause_cached, self._pause_checked_at = paused, time.monotonic()
        if paused:
            self._observer.lane_paused(self.name, True)
            self._idle(until=time.monotonic() + PAUSED_RECHECK_SECONDS)  # resume is a commit
            return
        self._observer.lane_paused(self.name, False)
        if not self._hold_lane():
            self._sleep(2.0)  # another node runs this lane
            return
        if self._down and not self._probe_ok():
            return
        self._abort_orphans()
        self._reclaim_lost()
        if not due:
            until = min(self._lane_renew_at, self._next_orphan_check, self._next_reclaim)
            if next_due is not None:
                until = min(until, time.monotonic() + next_due - time.time())
            self._idle(until=until)
            return
        if not self._gate_open():
            return
        row = self._catalog.claim_next(
            self.name, owner=self._owner, lease_seconds=self._q.lease_seconds, plan=self._plan
        )
        self._draining = row is not None
        if row is None:
            self._observer.drained(self.name)
            self._sleep(1.0)
            return
        self._handle(row)

    def _idle(self, *, until: float) -> None:
        """Wait until ``until`` (monotonic: a retry falls due, housekeeping is due), a wake
        (intake queued a file, stop) or a commit by anyone (an operator's retry, resume or
        cancel), whichever comes first, without reading the queue: an idle lane must cost next
        to nothing. With a commit signal it sleeps until one of those happens; without, it
        looks at the catalog's change counter every IDLE_TICK_SECONDS."""
        commits = self._commits
        if commits is None:
            while (remaining := until - time.monotonic()) > 0:
                if self._wake.wait(min(IDLE_TICK_SECONDS, remaining)):
                    self._wake.clear()
                    return
                if self._changes.changed():
                    return
            return
        while (remaining := until - time.monotonic()) > 0:
            if self._changes.changed():
                return
            ready, _, _ = select.select([commits.fileno(), self._doorbell], [], [], remaining)
            if self._doorbell in ready:
                os.eventfd_read(self._doorbell)
                self._wake.clear()
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
            if self._wake.wait(delay):
                return

    def _paused(self) -> bool:
        """The operator's pause flag, read at most every PAUSE_CHECK_SECONDS between files (an
        upload in progress is watched by the lease keeper)."""
        now = time.monotonic()
        # A paused lane reads the flag on every (one-second) turn, so a resume is seen at once.
        if self._pause_cached or now >= self._pause_checked_at + PAUSE_CHECK_SECONDS:
            self._pause_cached = self._catalog.is_paused(self.name)
            self._pause_checked_at = now
        return self._pause_cached

    def _gate_open(self) -> bool:
        """Ask the downstream gate, when one is configured (``_step`` calls this only when a
        file is waiting)."""
        gate = self._gate()
        if not gate.enabled:
            return True
        result = gate.check()
        if result.ready:
            if self._gate_busy:
                log.info("lane %s: downstream ready again", self.name)
                self._catalog.set_lane_health(self.name, up=True)
            self._gate_busy = False
            return True
        if not self._gate_busy:
            log.info("lane %s: downstream busy (%s); waiting", self.name, result.reason)
        self._gate_busy = True
        self._catalog.set_lane_health(self.name, up=True, hold=f"downstream busy: {result.reason}")
        self._sleep(self._dest_cfg().gate_poll_seconds)
        return False

    def _dest_cfg(self) -> DestinationConfig:
        return self._settings.destinations[self.name]

    def _gate(self) -> Gate:
        cfg = self._dest_cfg()
        return Gate(
            ready_command=tuple(cfg.ready_command),
            ready_url=cfg.ready_url,
            timeout=cfg.gate_timeout_seconds,
            env=(("INGESTD_DESTINATION", self.name),),
        )

    def _hold_lane(self) -> bool:
        """Take or renew the lane lease, writing only when a third of it has passed (an idle
        lane must not commit, and fsync, every second)."""
        now = time.monotonic()
        if now < self._lane_renew_at:
            return True
        if not self._catalog.acquire_lane(
            self.name, owner=self._owner, lease_seconds=self._q.lease_seconds
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
                "lane %s: took over %d upload(s) whose lease expired: %s", self.name, len(ids), ids
            )

    def _abort_orphans(self) -> None:
        """Abort server-side uploads of files cancelled or failed while queued."""
        now = time.monotonic()
        if now < self._next_orphan_check:
            return
        self._next_orphan_check = now + ORPHAN_CHECK_SECONDS
        for file_id, key, upload_id in queries.orphaned_uploads(self._catalog.engine, self.name):
            self._dest.abort(key, upload_id)
            self._catalog.forget_upload(file_id)
            log.info("file %s: aborted its abandoned multipart upload %s", file_id, upload_id)

    def _probe_ok(self) -> bool:
        try:
            self._dest.probe()
        except (DestinationDown, DestinationMisconfigured) as exc:
            self._mark_down(exc)
            self._sleep(self._probe.failed())
            return False
        self._mark_up()
        return True

    def _mark_down(self, exc: Exception) -> None:
        hold = "misconfigured" if isinstance(exc, DestinationMisconfigured) else "down"
        if not self._down:
            log.warning("destination %s %s: %s; holding the lane", self.name, hold, exc)
        self._down = True
        self.down_reason = f"{hold}: {exc}"
        self._catalog.set_lane_health(self.name, up=False, error=str(exc), hold=hold)
        self._observer.destination_up(self.name, False)

    def _mark_up(self) -> None:
        if self._down:
            log.info("destination %s is reachable again; resuming", self.name)
        self._down = False
        self.down_reason = None
        self._probe.reset()
        self._catalog.set_lane_health(self.name, up=True)
        self._observer.destination_up(self.name, True)

    # ----------------------------------------------------------------- one file

    def _handle(self, row: FileRow) -> None:
        self.current, self.sent = row, 0
        started = time.monotonic()
        keeper = self._keeper
        keeper.watch(row)
        # After watch(): an interrupt the keeper raised for the previous file is cleared here.
        self._cancel.clear()
        try:
            result = self._upload(row)
        except Cancelled:
            keeper.unwatch()
            self._after_cancel(row)
            return
        except (DestinationDown, DestinationMisconfigured) as exc:
            keeper.unwatch()
            self._requeue(row, code="destination_down", error=str(exc), count=False)
            self._mark_down(exc)
            self._observer.retry(self.name, "destination")
            return
        except SourceChanged as exc:
            keeper.unwatch()
            self._catalog.transition(
                row.id,
                FileState.DISCOVERED,
                code="changed",
                detail=str(exc),
                values={"lease_owner": None, "lease_expires": None},
            )
            self._observer.changed(self.name, row)
            return
        except (FileProblem, OSError) as exc:
            keeper.unwatch()
            self._file_error(row, exc)
            return
        except Exception as exc:
            keeper.unwatch()
            log.exception("lane %s: bug while uploading file %s", self.name, row.id)
            self._file_error(row, exc)
            return
        finally:
            keeper.unwatch()
            self.current = None
        self._succeeded(row, result, time.monotonic() - started)

    def _upload(
        self, row: FileRow, *, retry_key: bool = True, look_first: bool | None = None
    ) -> PutResult:
        assert row.sha256 is not None
        if look_first is None:
            look_first = not self._dest.refuses_overwrite(row.size)
        if look_first:
            key, existing = self._choose_key(row)
            if existing:
                return PutResult(key, row.size, etag=None, parts=0, bytes_sent=0, reused=True)
        else:
            # The write itself refuses a taken key (If-None-Match): no lookup before it.
            key = self._planned_key(row)
        src = SourceFile(
            path=Path(row.source_path),
            size=row.size,
            mtime_ns=row.mtime_ns,
            sha256=row.sha256,
            md5=row.md5,
            ctime_ns=row.ctime_ns,
            content_type=row.content_type or "application/octet-stream",
            metadata={
                "sha256": row.sha256,
                "original-name": Path(row.relpath).name,
                "inbox": row.inbox,
            },
        )
        journal = CatalogJournal(self._catalog, row)
        try:
            return self._dest.put(
                src, key, journal=journal, progress=self._progress, cancel=self._cancel
            )
        except UploadGone:
            journal.upload_forgotten()
            return self._dest.put(
                src, key, journal=journal, progress=self._progress, cancel=self._cancel
            )
        except FileExistsError:
            if not look_first:
                # Taken: by this file (sent before a crash, its answer lost) or by another;
                # look, and reuse it or pick the next free key, as when looking first.
                return self._upload(row, retry_key=retry_key, look_first=True)
            # Another writer took the key between lookup and write: pick the next free key.
            if retry_key:
                return self._upload(_without_key(row), retry_key=False, look_first=True)
            raise

    def _choose_key(self, row: FileRow, *, taken: str | None = None) -> tuple[str, bool]:
        """The key to write (recorded before the write) and whether identical content is there.
        ``taken``: a key just found holding other content (not looked up again)."""
        candidates: Iterable[str]
        if row.key is not None:
            first = row.key
            candidates = [row.key]  # planned before a crash: resume under the same key
        else:
            first = self._render_key(row)
            # Lazily: the suffixed alternatives are needed only on a collision.
            candidates = itertools.chain(
                [first], (with_suffix(first, n) for n in range(1, MAX_KEY_SUFFIX))
            )
        for key in candidates:
            if key == taken:
                continue
            remote = self._dest.lookup(key)
            if remote is None:
                if row.key != key:
                    self._catalog.plan_key(row.id, key)
                return key, False
            if self._same_content(key, remote, row):
                # Also when our own upload completed but its answer (or the catalog commit
                # that followed) was lost: the object is there, nothing is sent twice.
                if row.upload_id:
                    self._dest.abort(key, row.upload_id)
                return key, True
            if row.key == key:  # our planned key was taken by other content meanwhile
                if row.upload_id:
                    self._dest.abort(key, row.upload_id)
                    self._catalog.forget_upload(row.id)
                return self._choose_key(_without_key(row), taken=key)
        raise FileProblem(f"no free key after {MAX_KEY_SUFFIX} attempts for {first}")

    def _planned_key(self, row: FileRow) -> str:
        """The key recorded with the claim (or an earlier attempt); rendered and recorded now
        if the claim could not render it."""
        if row.key is not None:
            return row.key
        key = self._render_key(row)
        self._catalog.plan_key(row.id, key)
        return key

    def _same_content(self, key: str, remote: RemoteObject, row: FileRow) -> bool:
        """Whether the object under ``key`` holds exactly this file. Without sha256 metadata
        (some servers lose it on restart) an object of the same size is read back and hashed:
        rare, and cheaper than a second copy under another key."""
        if remote.size != row.size:
            return False
        if remote.sha256 is not None:
            return remote.sha256 == row.sha256
        return self._dest.content_sha256(key) == row.sha256

    def _plan(self, row: FileRow) -> str | None:
        """The first key to try, recorded with the claim; None when it cannot be rendered (the
        upload then fails on it as a file error, outside the claim)."""
        try:
            return self._render_key(row)
        except Exception:
            return None

    def _render_key(self, row: FileRow) -> str:
        dest_cfg = self._dest_cfg()
        fields = KeyFields(
            inbox=row.inbox,
            relpath=row.relpath,
            sha256=row.sha256 or "",
            arrived=datetime.fromtimestamp(row.discovered_at),
            owner=row.owner,
        )
        return render_key(dest_cfg.key_template, fields, prefix=dest_cfg.prefix)

    def _progress(self, nbytes: int) -> None:
        self.sent += nbytes
        self._observer.bytes_sent(self.name, nbytes)

    # ----------------------------------------------------------------- outcomes

    def _succeeded(self, row: FileRow, result: PutResult, seconds: float) -> None:
        detail = (
            f"{'already there as' if result.reused else 'stored as'} {result.key}"
            f" ({result.size} bytes, {result.parts or 1} part(s), {seconds:.2f}s)"
        )
        kept = self._finisher.keeps_source(row.inbox, FileState.UPLOADED)
        self._catalog.mark_uploaded(
            row.id,
            key=result.key,
            seconds=seconds,
            bytes_sent=result.bytes_sent,
            detail=detail,
            post_done=kept,
        )
        if self._down:
            self._mark_up()
        self._observer.uploaded(self.name, row, seconds)
        log.info(
            "file %s %s/%s: uploaded to %s:%s (%d bytes, sha256 %s, %.2fs)",
            row.id,
            row.inbox,
            row.relpath,
            self.name,
            result.key,
            row.size,
            (row.sha256 or "")[:12],
            seconds,
            extra=outcome_fields(row, "uploaded", seconds=seconds, key=result.key),
        )
        done = None if kept else self._catalog.get(row.id)
        if done is not None:
            try:
                self._finisher.finish(done)
            except OSError as exc:
                log.error("file %s: post-action failed: %s (will retry)", row.id, exc)
        self._cooldown()

    def _cooldown(self) -> None:
        seconds = self._q.cooldown_seconds
        if seconds <= 0:
            return
        until = time.time() + seconds
        self._catalog.set_cooldown(self.name, until)
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            self._stopping.wait(left)
        self._catalog.set_cooldown(self.name, None)

    def _after_cancel(self, row: FileRow) -> None:
        fresh = self._catalog.get(row.id)
        if fresh is not None and fresh.cancel_requested:
            if fresh.upload_id and fresh.key:
                self._dest.abort(fresh.key, fresh.upload_id)
            self._catalog.forget_upload(row.id)
            self._catalog.transition(
                row.id,
                FileState.CANCELLED,
                code="cancelled",
                detail="cancelled by the operator during upload; source left in place",
                values={
                    "reason_code": "cancelled",
                    "reason": "cancelled by the operator",
                    "post_done": True,
                },
            )
            log.info("file %s: cancelled during upload", row.id)
            return
        why = "paused by the operator" if self.paused_now() else "daemon stopping"
        self._requeue(row, code="interrupted", error=f"{why}; will resume", count=False)

    def _requeue(self, row: FileRow, *, code: str, error: str, count: bool) -> None:
        try:
            self._catalog.retry_later(
                row.id,
                code=code,
                error=error,
                next_attempt_at=None,
                count_attempt=count,
                max_attempts=self._q.max_attempts,
                owner=self._owner,
            )
        except StaleState:
            log.info("file %s: no longer ours (lease lost); leaving it to its new owner", row.id)

    def _file_error(self, row: FileRow, exc: BaseException) -> None:
        code = getattr(exc, "code", None) or (
            "vanished" if isinstance(exc, SourceVanished) else "file_error"
        )
        attempt = row.attempts + 1
        delay = backoff_delay(
            attempt, base=self._q.backoff_base_seconds, cap=self._q.backoff_max_seconds
        )
        try:
            state = self._catalog.retry_later(
                row.id,
                code=code,
                error=str(exc) or type(exc).__name__,
                next_attempt_at=time.time() + delay,
                count_attempt=True,
                max_attempts=self._q.max_attempts,
                owner=self._owner,
            )
        except StaleState:
            log.info("file %s: no longer ours (lease lost); leaving it to its new owner", row.id)
            return
        self._observer.retry(self.name, "file")
        if state == FileState.FAILED:
            self._observer.failed(self.name, row)
            log.error(
                "file %s %s/%s: failed after %d attempts: %s",
                row.id,
                row.inbox,
                row.relpath,
                attempt,
                exc,
            )
        else:
            log.warning(
                "file %s %s/%s: attempt %d failed (%s); retrying in %.0fs",
                row.id,
                row.inbox,
                row.relpath,
                attempt,
                exc,
                delay,
            )


def _without_key(row: FileRow) -> FileRow:
    from dataclasses import replace

    return replace(row, key=None, upload_id=None)
