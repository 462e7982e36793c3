"""Intake: from "a path changed" to a catalog row that is queued, duplicate or rejected.

One worker (pipeline/worker.py). Sources and rescans feed it hints; it settles files, hashes,
validates and hands them to the catalog, which is the only hand-off to the upload lanes; a lane
hands a file back the same way (``discovered`` again) and rings ``rediscover``
(docs/ARCHITECTURE.md).

Over 400 lines: the settle -> hash -> validate -> queue ladder of one file reads top to bottom
here, with the batching that keeps a backlog from costing a commit per file.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from ingestd.antivirus import AntivirusUnavailable, ClamdScanner, ScanFailed
from ingestd.catalog.intake_ops import Hashed, Sighting
from ingestd.catalog.notices import Notice
from ingestd.catalog.repo import Catalog, StaleState
from ingestd.config import InboxConfig, Settings
from ingestd.hash_policy import intake_defers
from ingestd.hashing import Fingerprint, fingerprint
from ingestd.logs import outcome_fields
from ingestd.observers import IntakeObserver
from ingestd.pipeline.worker import Worker
from ingestd.post_policy import keeps_source
from ingestd.settle import SettleTracker
from ingestd.sources.build import Source
from ingestd.sources.local import Found
from ingestd.states import FileState
from ingestd.validate import Rejection, Verdict, validate_file

log = logging.getLogger("ingestd.intake")
AV_RETRY_SECONDS = 30.0
# Files a scan records per catalog transaction: a backlog must not cost a commit per file.
SCAN_BATCH = 256
# Settled files queued per catalog transaction, and how long the first of them may wait for the
# rest: a backlog must not cost a commit (and fsync) per file, and the first file of a burst
# must not keep the lane waiting long.
QUEUE_BATCH = 64
QUEUE_BATCH_SECONDS = 0.2
QUIET_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class _Hint:
    inbox: str
    relpath: str


@dataclass(frozen=True)
class _Rescan:
    inbox: str | None  # None: every inbox


@dataclass(frozen=True)
class _Rediscover:
    """Files went back to ``discovered`` (an upload lane found them changed)."""


@dataclass(frozen=True)
class _Wake:
    """The doorbell: look at the settling files now (or notice a stop)."""


_Item = _Hint | _Rescan | _Rediscover | _Wake


@dataclass
class _Pending:
    inbox: str
    relpath: str


def dedup_scope(inbox: InboxConfig) -> str | None:
    """The fingerprint scope a file from ``inbox`` is de-duplicated in (pure)."""
    if inbox.dedup == "off":
        return None
    return "*" if inbox.dedup == "global" else f"inbox:{inbox.name}"


def _nothing() -> None:
    return None


def _no_post(_file_id: int) -> None:
    return None


class Intake(Worker):
    """Settles, hashes, validates and de-duplicates files, then queues them in the catalog."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        settings: Settings,
        sources: dict[str, Source],
        on_queued: Callable[[str], None],
        observer: IntakeObserver,
        md5_below: Mapping[str, int],
        rejection_notice: Notice | None = None,
        notice_written: Callable[[], None] = _nothing,
        post_due: Callable[[int], None] = _no_post,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``md5_below``: per destination, the size below which intake computes the MD5 too
        (the destination's policy, decided by whoever builds intake); ``rejection_notice``
        builds the notification committed with a rejection, ``notice_written`` rings its
        sender; ``post_due`` rings the post-action stage for a duplicate or rejected file
        whose source is not simply kept."""
        super().__init__(name="intake")
        self._catalog = catalog
        self._settings = settings
        self._sources = sources
        self._on_queued = on_queued
        self._observer = observer
        self._md5_below = md5_below
        self._notice = rejection_notice
        self._notice_written = notice_written
        self._post_due = post_due
        self._clock = clock
        self._hints: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._taken: _Item | None = None  # what wait() took off the queue, for step()
        self._tracker = SettleTracker()
        self._pending: dict[int, _Pending] = {}
        self.scans_completed = 0
        self._working = False
        self._hold_until: dict[int, float] = {}

    # ------------------------------------------------------------- called from other threads

    def hint(self, inbox: str, relpath: str) -> None:
        """Something happened at ``relpath`` (watchdog thread): cheap, never blocks."""
        self._hints.put(_Hint(inbox, relpath))

    def rescan(self, inbox: str | None = None) -> None:
        """Ask for a full scan of one inbox, or all of them."""
        self._hints.put(_Rescan(inbox))

    def rediscover(self) -> None:
        """Files went back to ``discovered`` in the catalog: settle them again now, not at the
        next rescan."""
        self._hints.put(_Rediscover())

    def wake(self) -> None:
        super().wake()
        self._hints.put(_Wake())

    def reconfigure(
        self,
        *,
        settings: Settings,
        sources: dict[str, Source],
        md5_below: Mapping[str, int],
    ) -> None:
        """Swap the configuration (SIGHUP); takes effect at the next loop."""
        self._settings = settings
        self._sources = sources
        self._md5_below = md5_below
        self.rescan()

    @property
    def busy(self) -> bool:
        """Files are settling or hints are waiting to be looked at."""
        return bool(self._pending) or not self._hints.empty() or self._working

    # ------------------------------------------------------------- the loop

    def on_start(self) -> None:
        self._resume_discovered()

    def wait(self, seconds: float | None) -> None:
        """Sleep until a hint (or the doorbell) arrives or ``seconds`` pass; the item that
        ended the wait is kept for the next step."""
        try:
            item = self._hints.get(timeout=max(seconds or QUIET_WAIT_SECONDS, 0.001))
        except queue.Empty:
            return
        self._working = True
        self._taken = item

    def step(self) -> float:
        try:
            if self._taken is not None:
                self._working = True
                item, self._taken = self._taken, None
                self._drain(item)
            self._process_settled()
        finally:
            self._working = False
        return self._wait_time()

    def _wait_time(self) -> float:
        now = self._clock()
        # Hints wake the queue at once; this only bounds a quiet wait (the watchdog health
        # check wants a turn of this loop at least every minute).
        soonest = QUIET_WAIT_SECONDS
        for held_until in self._hold_until.values():
            soonest = min(soonest, max(0.0, held_until - now))
        for file_id, p in self._pending.items():
            due = self._tracker.due_at(
                file_id, self._inbox(p.inbox).settle_seconds, now=now, wall_now=time.time()
            )
            if due is not None:
                soonest = min(soonest, max(0.0, due - now))
        return soonest

    def _drain(self, item: _Item) -> None:
        """Act on ``item`` and on every hint waiting behind it."""
        while True:
            if isinstance(item, _Hint):
                self._look_at(item.inbox, item.relpath)
            elif isinstance(item, _Rescan):
                self._scan(item.inbox)
            elif isinstance(item, _Rediscover):
                self._resume_discovered()
            try:
                item = self._hints.get_nowait()
            except queue.Empty:
                return

    def _resume_discovered(self) -> None:
        """Files in ``discovered`` that intake does not track (caught settling by a restart,
        or handed back by a lane) are settled again from scratch."""
        for row in self._catalog.by_state(FileState.DISCOVERED):
            if row.inbox in self._sources and row.id not in self._pending:
                self._look_at(row.inbox, row.relpath)

    def _scan(self, inbox: str | None) -> None:
        names: Iterable[str] = [inbox] if inbox is not None else list(self._sources)
        for name in names:
            source = self._sources.get(name)
            if source is None:
                continue
            problem = source.root_ok()
            if problem:
                log.warning("inbox %s: %s", name, problem, extra={"inbox": name})
                continue
            batch: list[Found] = []
            for found in source.scan():
                if self.stopping:
                    return
                batch.append(found)
                if len(batch) >= SCAN_BATCH:
                    self._record_many(name, batch)
                    batch = []
            self._record_many(name, batch)
        self.scans_completed += 1

    def _look_at(self, inbox: str, relpath: str) -> None:
        source = self._sources.get(inbox)
        if source is None:
            return
        found = source.stat(relpath)
        if found is None:
            self._gone(inbox, relpath)
            return
        self._record(inbox, found)

    def _gone(self, inbox: str, relpath: str) -> None:
        row = self._catalog.find_by_path(inbox, relpath)
        if row is not None and row.state == FileState.DISCOVERED:
            self._tracker.forget(row.id)
            self._pending.pop(row.id, None)
            kept = self._catalog.drop_vanished(
                row.id, detail=f"{relpath} disappeared before it settled"
            )
            if not kept:
                log.debug("inbox %s: %s was a late sighting of a finished file", inbox, relpath)

    def _record(self, inbox: str, found: Found) -> None:
        self._record_many(inbox, [found])

    def _record_many(self, inbox: str, founds: list[Found]) -> None:
        """Record sightings in the catalog (one transaction) and track those still settling."""
        # Every name is storable, non-UTF-8 ones included: the catalog keeps them exactly
        # (catalog.schema.NameText; docs/ARCHITECTURE.md, "File names").
        storable = founds
        if not storable:
            return
        sightings = [
            Sighting(inbox, f.relpath, str(f.path), f.size, f.mtime_ns, f.owner) for f in storable
        ]
        seens = self._catalog.observe_many(
            sightings, batch_idle_seconds=self._settings.batch_idle_seconds
        )
        for found, seen in zip(storable, seens, strict=True):
            if seen.new:
                self._observer.discovered(inbox)
            if seen.state != FileState.DISCOVERED:
                continue
            self._pending[seen.file_id] = _Pending(inbox, found.relpath)
            self._tracker.observe(
                seen.file_id,
                size=found.size,
                mtime_ns=found.mtime_ns,
                now=self._clock(),
                unchanged_for=found.unchanged_for,
            )

    def _antivirus(self) -> ClamdScanner | None:
        av = self._settings.antivirus
        if not av.enabled:
            return None
        return ClamdScanner(
            socket_path=av.clamd_socket or None,
            host=av.clamd_host or None,
            port=av.clamd_port if av.clamd_host else None,
            timeout=av.timeout_seconds,
        )

    def _inbox(self, name: str) -> InboxConfig:
        return self._settings.inbox(name)

    # ------------------------------------------------------------- settled files

    def _process_settled(self) -> None:
        batch: list[tuple[Hashed, _Pending]] = []
        started = 0.0
        try:
            for file_id, p, inbox in self._settled():
                hashed = self._take(file_id, p, inbox)
                if hashed is None:
                    continue
                if not batch:
                    started = self._clock()
                batch.append((hashed, p))
                if len(batch) >= QUEUE_BATCH or self._clock() - started >= QUEUE_BATCH_SECONDS:
                    full, batch = batch, []
                    self._queue(full)
        finally:
            self._queue(batch)

    def _settled(self) -> Iterator[tuple[int, _Pending, InboxConfig]]:
        """The pending files that have settled, each taken out of the pending set as it is
        yielded; the others are looked at again (restat) when their settle time is due."""
        now = self._clock()
        for file_id, p in list(self._pending.items()):
            if self.stopping:
                return
            try:
                inbox = self._inbox(p.inbox)
            except KeyError:  # inbox removed by a reload
                self._pending.pop(file_id)
                self._tracker.forget(file_id)
                continue
            if self._hold_until.get(file_id, 0.0) > now:
                continue
            self._hold_until.pop(file_id, None)
            if not self._tracker.is_settled(
                file_id, now=now, settle_seconds=inbox.settle_seconds, wall_now=time.time()
            ):
                self._restat(file_id, p)
                continue
            self._pending.pop(file_id)
            self._tracker.forget(file_id)
            yield file_id, p, inbox

    def _queue(self, batch: list[tuple[Hashed, _Pending]]) -> None:
        """Queue hashed files in one transaction, then report each outcome."""
        if not batch:
            return
        try:
            outcomes = self._catalog.queue_many([hashed for hashed, _ in batch])
        except Exception:
            # Settle them again rather than leave them to the next rescan.
            self._pending.update((hashed.file_id, p) for hashed, p in batch)
            raise
        woken: set[str] = set()
        for (hashed, _), outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                log.debug("file %s: taken by another node meanwhile", hashed.file_id)
            elif outcome.state == FileState.DUPLICATE:
                self._report(hashed.file_id, "duplicate")
            elif hashed.destination not in woken:
                woken.add(hashed.destination)
                self._on_queued(hashed.destination)

    def _restat(self, file_id: int, p: _Pending) -> None:
        now = self._clock()
        due = self._tracker.due_at(
            file_id, self._inbox(p.inbox).settle_seconds, now=now, wall_now=time.time()
        )
        if due is not None and due > now:
            return
        found = self._sources[p.inbox].stat(p.relpath)
        if found is None:
            self._gone(p.inbox, p.relpath)
            return
        self._tracker.observe(
            file_id,
            size=found.size,
            mtime_ns=found.mtime_ns,
            now=self._clock(),
            unchanged_for=found.unchanged_for,
        )

    def _take(self, file_id: int, p: _Pending, inbox: InboxConfig) -> Hashed | None:
        """Hash and validate one settled file: what to queue, or None when it was rejected,
        went away or must settle again."""
        source = self._sources[p.inbox]
        found = source.stat(p.relpath)
        if found is None:
            self._gone(p.inbox, p.relpath)
            return None
        try:
            verdict = validate_file(
                found.path,
                name=found.path.name,
                size=found.size,
                min_size_bytes=inbox.min_size_bytes,
                max_size_bytes=inbox.max_size_bytes,
                allowed_types=frozenset(inbox.allowed_types),
                antivirus=self._antivirus(),
            )
        except AntivirusUnavailable as exc:
            # Not the file's fault: look at it again later, without a verdict.
            log.warning(
                "file %s: antivirus unavailable (%s); retrying in %.0fs",
                file_id,
                exc,
                AV_RETRY_SECONDS,
                extra={"file_id": file_id, "inbox": p.inbox, "path": p.relpath},
            )
            self._pending[file_id] = p
            self._hold_until[file_id] = self._clock() + AV_RETRY_SECONDS
            self._tracker.observe(
                file_id,
                size=found.size,
                mtime_ns=found.mtime_ns,
                now=self._clock(),
                unchanged_for=found.unchanged_for,
            )
            return None
        except ScanFailed as exc:
            verdict = Verdict(
                detected_type=None,
                content_type="application/octet-stream",
                rejections=(Rejection("scan_failed", str(exc)),),
            )
        size_rejected = any(r.code in ("too_large",) for r in verdict.rejections)
        fp: Fingerprint | None = None
        if not size_rejected and not _unreadable(verdict):
            try:
                fp = fingerprint(
                    found.path,
                    md5_below=self._md5_below.get(inbox.destination, 0),
                    # A rejected file is hashed here, whatever its size: its row keeps it.
                    content=not (
                        verdict.ok and intake_defers(self._settings, inbox, size=found.size)
                    ),
                )
            except ValueError:
                self._retrack(file_id, p, found)
                return None
            except FileNotFoundError:
                self._gone(p.inbox, p.relpath)
                return None
            except OSError as exc:
                verdict = _with_unreadable(verdict, exc)
            else:
                if (fp.size, fp.mtime_ns) != (found.size, found.mtime_ns):
                    self._retrack(file_id, p, found)
                    return None
        if not verdict.ok or fp is None:
            self._reject(file_id, verdict, fp.sha256 if fp else None, found, inbox=inbox)
            return None
        return Hashed(
            file_id,
            sha256=fp.sha256,
            size=found.size,
            mtime_ns=found.mtime_ns,
            detected_type=verdict.detected_type,
            content_type=verdict.content_type,
            destination=inbox.destination,
            dedup_scope=dedup_scope(inbox),
            md5=fp.md5,
            ctime_ns=fp.ctime_ns,
            keeps_duplicate=keeps_source(inbox, FileState.DUPLICATE),
            priority=inbox.priority,
            metadata=verdict.metadata,
        )

    def _retrack(self, file_id: int, p: _Pending, found: Found) -> None:
        """It changed while being read: settle it again from its new state."""
        self._pending[file_id] = p
        self._tracker.forget(file_id)
        now_found = self._sources[p.inbox].stat(p.relpath) or found
        self._tracker.observe(
            file_id,
            size=now_found.size,
            mtime_ns=now_found.mtime_ns,
            now=self._clock(),
            unchanged_for=now_found.unchanged_for,
        )

    def _reject(
        self,
        file_id: int,
        verdict: Verdict,
        sha256: str | None,
        found: Found,
        *,
        inbox: InboxConfig,
    ) -> None:
        codes = ",".join(r.code for r in verdict.rejections) or "unreadable"
        reason = "\n".join(r.message for r in verdict.rejections) or "could not be read"
        try:
            self._catalog.reject(
                file_id,
                code=codes,
                reason=reason,
                sha256=sha256,
                detected_type=verdict.detected_type,
                size=found.size,
                mtime_ns=found.mtime_ns,
                notice=self._notice,
                post_done=keeps_source(inbox, FileState.REJECTED),
                metadata=verdict.metadata,
            )
        except StaleState:
            log.debug("file %s: taken by another node meanwhile", file_id)
            return
        self._notice_written()
        self._report(file_id, "rejected")

    def _report(self, file_id: int, outcome: str) -> None:
        """Tell metrics and the log that a file ended here; ring the post-action stage."""
        row = self._catalog.get(file_id)
        if row is None:
            return
        self._observer.processed(row.inbox, outcome, row.reason_code, file_id)
        why = (row.reason or "").replace("\n", " ")
        log.info(
            "file %s %s/%s: %s (%d bytes, sha256 %s, %.2fs)%s",
            file_id,
            row.inbox,
            row.relpath,
            outcome,
            row.size,
            (row.sha256 or "-")[:12],
            row.updated_at - row.discovered_at,
            f": {row.reason_code}: {why}" if why else "",
            extra=outcome_fields(row, outcome),
        )
        if not row.post_done:
            self._post_due(file_id)


def _unreadable(verdict: Verdict) -> bool:
    return any(r.code == "unreadable" for r in verdict.rejections)


def _with_unreadable(verdict: Verdict, exc: OSError) -> Verdict:
    msg = f"The file could not be read ({exc.strerror or exc}); check its permissions."
    return Verdict(
        detected_type=verdict.detected_type,
        content_type=verdict.content_type,
        rejections=(*verdict.rejections, Rejection("unreadable", msg)),
        metadata=verdict.metadata,
    )
