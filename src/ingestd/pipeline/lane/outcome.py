"""What became of one upload: first an Outcome value, decided from the exception alone (pure);
then ``Outcomes.apply``, the one place that writes it through named catalog operations.

Destination trouble holds the lane without burning an attempt; file trouble retries with
backoff until ``max_attempts``; a failure's notification is committed with the failure
(docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ingestd.catalog.notices import Notice
from ingestd.catalog.repo import Catalog, Claim, FileRow, StaleState
from ingestd.config import QueueConfig, Settings
from ingestd.destinations.base import Destination, PutResult
from ingestd.errors import (
    Cancelled,
    DestinationDown,
    DestinationMisconfigured,
    DuplicateContent,
    FileProblem,
    SourceChanged,
    SourceVanished,
)
from ingestd.logs import file_fields, outcome_fields
from ingestd.observers import LaneObserver
from ingestd.pipeline.lane.hold import Hold
from ingestd.post_policy import keeps_source
from ingestd.retry import backoff_delay
from ingestd.states import FileState

log = logging.getLogger("ingestd.lane")


@dataclass(frozen=True)
class Uploaded:
    result: PutResult
    seconds: float


@dataclass(frozen=True)
class Interrupted:
    """Cancelled by the operator, paused, lease lost or daemon stopping."""


@dataclass(frozen=True)
class DestinationTrouble:
    error: DestinationDown | DestinationMisconfigured


@dataclass(frozen=True)
class Changed:
    """The source changed after intake hashed it: intake's again."""

    detail: str


@dataclass(frozen=True)
class Duplicated:
    """Hashed during its upload, the file holds content another file holds: the catalog
    recorded it a duplicate in the transaction that found it, and the upload was aborted."""

    original_id: int
    detail: str


@dataclass(frozen=True)
class FileError:
    code: str
    error: str  # what the catalog records: never empty
    message: str  # str(exc) as logged, possibly empty


Outcome = Uploaded | Interrupted | DestinationTrouble | Changed | Duplicated | FileError

# The exceptions an upload raises by design; any other is a bug (logged with its traceback).
EXPECTED = (
    Cancelled,
    DestinationDown,
    DestinationMisconfigured,
    DuplicateContent,
    FileProblem,
    OSError,
)


def classify(exc: Exception) -> Outcome:
    """What an exception raised by an upload means for the file (pure)."""
    if isinstance(exc, Cancelled):
        return Interrupted()
    if isinstance(exc, DestinationDown | DestinationMisconfigured):
        return DestinationTrouble(exc)
    if isinstance(exc, SourceChanged):
        return Changed(str(exc))
    if isinstance(exc, DuplicateContent):
        return Duplicated(exc.original_id, str(exc))
    code = getattr(exc, "code", None) or (
        "vanished" if isinstance(exc, SourceVanished) else "file_error"
    )
    return FileError(code=code, error=str(exc) or type(exc).__name__, message=str(exc))


class Outcomes:
    """Applies outcomes of one lane's uploads to the catalog (and tells metrics)."""

    def __init__(
        self,
        *,
        name: str,
        catalog: Catalog,
        owner: str,
        hold: Hold,
        observer: LaneObserver,
        failure_notice: Notice | None,
        notice_written: Callable[[], None],
        rediscovered: Callable[[], None],
        post_due: Callable[[int], None],
    ) -> None:
        """``post_due`` rings the post-action stage for an uploaded file whose source is
        not simply kept (the lane never waits for an archive)."""
        self._name = name
        self._catalog = catalog
        self._owner = owner
        self._hold = hold
        self._observer = observer
        self._notice = failure_notice
        self._notice_written = notice_written
        self._rediscovered = rediscovered
        self._post_due = post_due

    def apply(
        self,
        row: FileRow,
        outcome: Outcome,
        *,
        settings: Settings,
        destination: Destination,
        then_claim: Claim | None = None,
    ) -> FileRow | None:
        """Record ``outcome``. ``then_claim``: after a success, the lane's next claim, made in
        the same transaction; the file it claimed (None: not asked, or nothing due)."""
        queue = settings.queue
        if isinstance(outcome, Uploaded):
            return self._succeeded(row, outcome, settings=settings, then_claim=then_claim)
        if isinstance(outcome, Interrupted):
            self._after_cancel(row, queue=queue, destination=destination)
        elif isinstance(outcome, DestinationTrouble):
            self._requeue(
                row, code="destination_down", error=str(outcome.error), count=False, queue=queue
            )
            self._hold.mark_down(outcome.error)
            self._observer.retry(self._name, "destination")
        elif isinstance(outcome, Changed):
            self._catalog.source_changed(row.id, detail=outcome.detail)
            # Intake looks at the file now, not at its next rescan (a minute by default).
            self._rediscovered()
        elif isinstance(outcome, Duplicated):
            self._duplicated(row, outcome)
        else:
            self._file_error(row, outcome, queue=queue)
        return None

    def _succeeded(
        self, row: FileRow, outcome: Uploaded, *, settings: Settings, then_claim: Claim | None
    ) -> FileRow | None:
        result, seconds = outcome.result, outcome.seconds
        detail = (
            f"{'already there as' if result.reused else 'stored as'} {result.key}"
            f" ({result.size} bytes, {result.parts or 1} part(s), {seconds:.2f}s)"
        )
        try:
            kept = keeps_source(settings.inbox(row.inbox), FileState.UPLOADED)
        except KeyError:
            kept = False  # an inbox no longer configured: the post-action stage says so
        claimed = self._catalog.mark_uploaded(
            row.id,
            key=result.key,
            seconds=seconds,
            bytes_sent=result.bytes_sent,
            detail=detail,
            post_done=kept,
            then_claim=then_claim,
        )
        if self._hold.down:
            self._hold.mark_up()
        if row.sha256 is None:  # hashed during the upload: the catalog has the digest now
            row = self._catalog.get(row.id) or row
        self._observer.uploaded(self._name, row, seconds)
        log.info(
            "file %s %s/%s: uploaded to %s:%s (%d bytes, sha256 %s, %.2fs)",
            row.id,
            row.inbox,
            row.relpath,
            self._name,
            result.key,
            row.size,
            (row.sha256 or "")[:12],
            seconds,
            extra=outcome_fields(row, "uploaded", seconds=seconds, key=result.key),
        )
        if not kept:
            self._post_due(row.id)
        return claimed

    def _duplicated(self, row: FileRow, outcome: Duplicated) -> None:
        """Already recorded (catalog.record_content): tell metrics and the log, ring the
        post-action stage unless the inbox keeps a duplicate's source."""
        fresh = self._catalog.get(row.id) or row
        self._observer.duplicate(self._name, fresh)
        log.info(
            "file %s %s/%s: duplicate (%d bytes, sha256 %s): %s, found during its upload; "
            "upload aborted",
            row.id,
            row.inbox,
            row.relpath,
            row.size,
            (fresh.sha256 or "-")[:12],
            outcome.detail,
            extra=outcome_fields(fresh, "duplicate"),
        )
        if not fresh.post_done:
            self._post_due(row.id)

    def _after_cancel(self, row: FileRow, *, queue: QueueConfig, destination: Destination) -> None:
        fresh = self._catalog.get(row.id)
        if fresh is not None and fresh.cancel_requested:
            if fresh.upload_id and fresh.key:
                destination.abort(fresh.key, fresh.upload_id)
            self._catalog.forget_upload(row.id)
            self._catalog.cancel_uploading(row.id)
            log.info("file %s: cancelled during upload", row.id)
            return
        why = "paused by the operator" if self._catalog.is_paused(self._name) else "daemon stopping"
        self._requeue(
            row, code="interrupted", error=f"{why}; will resume", count=False, queue=queue
        )

    def _requeue(
        self, row: FileRow, *, code: str, error: str, count: bool, queue: QueueConfig
    ) -> None:
        try:
            self._catalog.retry_later(
                row.id,
                code=code,
                error=error,
                next_attempt_at=None,
                count_attempt=count,
                max_attempts=queue.max_attempts,
                owner=self._owner,
            )
        except StaleState:
            log.info("file %s: no longer ours (lease lost); leaving it to its new owner", row.id)

    def _file_error(self, row: FileRow, outcome: FileError, *, queue: QueueConfig) -> None:
        attempt = row.attempts + 1
        delay = backoff_delay(
            attempt, base=queue.backoff_base_seconds, cap=queue.backoff_max_seconds
        )
        try:
            state = self._catalog.retry_later(
                row.id,
                code=outcome.code,
                error=outcome.error,
                next_attempt_at=time.time() + delay,
                count_attempt=True,
                max_attempts=queue.max_attempts,
                owner=self._owner,
                notice=self._notice,
            )
        except StaleState:
            log.info("file %s: no longer ours (lease lost); leaving it to its new owner", row.id)
            return
        self._observer.retry(self._name, "file")
        if state == FileState.FAILED:
            self._notice_written()
            self._observer.failed(self._name, row)
            log.error(
                "file %s %s/%s: failed after %d attempts: %s",
                row.id,
                row.inbox,
                row.relpath,
                attempt,
                outcome.message,
                extra=file_fields(
                    file_id=row.id,
                    inbox=row.inbox,
                    path=row.relpath,
                    state=FileState.FAILED.value,
                    reason_code=outcome.code,
                ),
            )
        else:
            log.warning(
                "file %s %s/%s: attempt %d failed (%s); retrying in %.0fs",
                row.id,
                row.inbox,
                row.relpath,
                attempt,
                outcome.message,
                delay,
                extra=file_fields(
                    file_id=row.id,
                    inbox=row.inbox,
                    path=row.relpath,
                    state=str(state),
                    reason_code=outcome.code,
                ),
            )
