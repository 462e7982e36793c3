"""Webhook notifications: payload builders (pure), one delivery attempt, and an outbox worker.

Events are written to a durable outbox in the catalog in the same breath as the change they
report, and a ``WebhookWorker`` thread delivers them: so a notification survives restarts and
receiver outages. Delivery is at-least-once (a crash between the receiver's 2xx and
``mark_delivered`` sends it again): every payload carries a stable ``id``, also sent as the
``Idempotency-Key`` header, for receivers to drop repeats.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath
from typing import Any, Literal, Protocol

from ingestd import __version__, names
from ingestd.catalog.repo import FileRow
from ingestd.catalog.rows import OutboxItem
from ingestd.catalog.shapes import metadata_doc
from ingestd.pipeline.worker import Worker
from ingestd.probes import describe_failure, excerpt, parse_retry_after, url_problem
from ingestd.redact import mask_hook_url, redact_text, scrub_url_parts
from ingestd.retry import backoff_delay
from ingestd.timefmt import iso_utc
from ingestd.untrusted import shown

log = logging.getLogger("ingestd.webhooks")
PAYLOAD_VERSION = 1
EVENTS = ("batch_closed", "file_failed", "daily_summary")
MAX_LISTED_FILES = 500
Outcome = Literal["ok", "retry", "permanent"]


# ---------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class BatchInfo:
    """One ``batches`` row (build it from the row: ``BatchInfo(**row._mapping)``)."""

    id: int
    inbox: str
    opened_at: float
    last_arrival_at: float
    closed_at: float | None


def file_doc(f: FileRow) -> dict[str, Any]:
    """One file as it appears in every payload (a name that is not UTF-8 as its shown form
    plus ``relpath_b64``/``name_b64`` with the exact bytes: names.json_exact)."""
    doc = {
        "id": f.id,
        "inbox": f.inbox,
        "relpath": f.relpath,
        "name": PurePosixPath(f.relpath).name,
        "size": f.size,
        "sha256": f.sha256,
        "type": f.detected_type,
        "state": str(f.state),
        "destination": f.destination,
        "key": f.key,
        "duplicate_of": f.original_id,
        "reason_code": f.reason_code,
        "reason": f.reason,
        "attempts": f.attempts,
        "batch_id": f.batch_id,
        "discovered_at": iso_utc(f.discovered_at, zulu=True),
        "finished_at": iso_utc(f.finished_at, zulu=True),
        "metadata": metadata_doc(f),
    }
    return names.json_exact(doc)  # type: ignore[no-any-return]


def _envelope(event: str, event_id: str, node: str, at: float) -> dict[str, Any]:
    return {
        "event": event,
        "id": event_id,
        "version": PAYLOAD_VERSION,
        "node": node,
        "occurred_at": iso_utc(at, zulu=True),
    }


def _totals(files: Sequence[FileRow]) -> dict[str, Any]:
    by_state = Counter(str(f.state) for f in files)
    uploaded = sum(f.size for f in files if str(f.state) == "uploaded")
    return {
        "files": len(files),
        "bytes": sum(f.size for f in files),
        "uploaded_bytes": uploaded,
        "by_state": dict(sorted(by_state.items())),
    }


def on_batch_closed(
    batch: BatchInfo, files: Sequence[FileRow], *, node: str, max_files: int = MAX_LISTED_FILES
) -> dict[str, Any]:
    """``batch_closed``: a batch of an inbox went quiet. Lists its files (by id, at most
    ``max_files``; ``files_truncated`` says when more exist) with totals per state, so the
    system behind the bucket can pick up exactly the objects of this batch."""
    closed = batch.closed_at if batch.closed_at is not None else batch.last_arrival_at
    doc = _envelope("batch_closed", f"batch_closed:{batch.id}", node, closed)
    ordered = sorted(files, key=lambda f: f.id)
    doc["batch"] = {
        "id": batch.id,
        "inbox": batch.inbox,
        "opened_at": iso_utc(batch.opened_at, zulu=True),
        "last_arrival_at": iso_utc(batch.last_arrival_at, zulu=True),
        "closed_at": iso_utc(batch.closed_at, zulu=True),
    }
    doc["totals"] = _totals(ordered)
    doc["files"] = [file_doc(f) for f in ordered[:max_files]]
    doc["files_truncated"] = len(ordered) > max_files
    return doc


def on_failure(f: FileRow, *, node: str, at: float) -> dict[str, Any]:
    """``file_failed``: a file gave up (``failed`` after max_attempts) or was rejected. The
    id includes the attempt count, so a file retried by an operator that fails again is
    reported again."""
    doc = _envelope("file_failed", f"file_failed:{f.id}:{f.attempts}", node, at)
    doc["file"] = file_doc(f)
    return doc


def daily_summary(
    day: date,
    finished: Sequence[FileRow],
    *,
    backlog: Mapping[str, int],
    node: str,
    at: float,
    max_problems: int = 100,
) -> dict[str, Any]:
    """``daily_summary`` for ``day``: totals of the files that finished that day, the
    current backlog (counts of non-terminal states) and the failed/rejected files of the day.
    The id is the day alone: several nodes sharing a catalog produce one summary."""
    doc = _envelope("daily_summary", f"daily_summary:{day.isoformat()}", node, at)
    problems = sorted(
        (f for f in finished if str(f.state) in ("failed", "rejected")), key=lambda f: f.id
    )
    doc["day"] = day.isoformat()
    doc["totals"] = _totals(finished)
    doc["inboxes"] = {
        inbox: _totals([f for f in finished if f.inbox == inbox])
        for inbox in sorted({f.inbox for f in finished})
    }
    doc["backlog"] = dict(sorted(backlog.items()))
    doc["problems"] = [file_doc(f) for f in problems[:max_problems]]
    doc["problems_truncated"] = len(problems) > max_problems
    return doc


# ---------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class DeliveryResult:
    """One POST's outcome: ``ok`` (2xx), ``retry`` (network, 5xx, 408, 429) or ``permanent``
    (any other answer: the receiver will never take this payload as it is)."""

    outcome: Outcome
    status: int | None
    detail: str
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET without the body: report it instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# Deliveries and the doctor's HEAD (doctor/webhook.py) go through this one opener.
OPENER = urllib.request.build_opener(_NoRedirect)


def encode(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed): compact JSON, keys sorted, UTF-8."""
    doc = names.json_exact(payload)
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def signature(body: bytes, secret: str) -> str:
    """``X-Ingestd-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def classify_status(status: int) -> Outcome:
    """2xx ok; 408, 429 and 5xx retry; everything else (3xx, 4xx) permanent."""
    if 200 <= status < 300:
        return "ok"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "permanent"


def deliver(
    url: str,
    payload: Mapping[str, Any],
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    secret: str | None = None,
) -> DeliveryResult:
    """POST ``payload`` as JSON to ``url`` once; never raises. Redirects are not followed.

    The failure text (logged, stored in the outbox) never holds the URL past its host, nor a
    credential or a control character the receiver's answer quotes."""
    problem = url_problem(url)
    if problem:
        where = shown(mask_hook_url(url))
        return DeliveryResult("permanent", None, f"webhook url '{where}': {_safe(problem, url)}")
    body = encode(payload)
    sent = {
        "Content-Type": "application/json",
        "User-Agent": f"ingestd/{__version__}",
        "X-Ingestd-Event": str(payload.get("event", "")),
        "Idempotency-Key": str(payload.get("id", "")),
        **({"X-Ingestd-Signature": signature(body, secret)} if secret else {}),
        **(headers or {}),
    }
    # The scheme is checked above: only http(s).
    request = urllib.request.Request(url, data=body, headers=sent, method="POST")  # noqa: S310
    try:
        with OPENER.open(request, timeout=timeout) as answer:
            answer.read(4096)
            return DeliveryResult("ok", answer.status, f"HTTP {answer.status}")
    except urllib.error.HTTPError as exc:
        text = _safe(excerpt(exc.read(1024).decode(errors="replace")), url) if exc.fp else ""
        detail = f"HTTP {exc.code}" + (f": {text}" if text else "")
        after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        return DeliveryResult(classify_status(exc.code), exc.code, detail, after)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        return DeliveryResult("retry", None, _safe(describe_failure(exc, timeout), url))


def _safe(text: str, url: str) -> str:
    # Parse errors and answers may quote parts of the URL (its token) or hostile bytes.
    return shown(redact_text(scrub_url_parts(text, url)))


def next_retry_delay(
    attempt: int,
    *,
    base: float = 10.0,
    cap: float = 300.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before retrying after the ``attempt``-th consecutive failure (from 1):
    exponential from ``base`` with jitter, at most ``cap``."""
    return backoff_delay(max(1, attempt), base=base, cap=cap, rand=rand)


# ---------------------------------------------------------------------------- outbox


class Outbox(Protocol):
    """What the catalog provides for notifications (a table, e.g. ``webhook_outbox``)."""

    def enqueue(self, event: str, payload: Mapping[str, Any]) -> int | None:
        """Store a notification durably; return its id, or None when one with the same
        ``payload["id"]`` exists already (unique: several nodes may report one batch)."""

    def due(self, now: float, limit: int) -> list[OutboxItem]:
        """Up to ``limit`` undelivered, not-dead items whose next attempt is at or before
        ``now``, oldest first. With several nodes, claim them (e.g. push their next attempt
        a lease ahead with FOR UPDATE SKIP LOCKED) so two workers never post one item."""

    def mark_delivered(self, item_id: int) -> None:
        """The receiver acknowledged it: never hand it out again."""

    def mark_retry(self, item_id: int, next_at: float, error: str) -> None:
        """Count an attempt, remember ``error``, hand it out again at ``next_at``."""

    def mark_dead(self, item_id: int, error: str) -> None:
        """Give up on it (kept for inspection, never handed out again)."""


class WebhookWorker(Worker):
    """Drains an Outbox to one URL in a thread, oldest first.

    A retryable failure holds the whole outbox (the receiver is down or overloaded: trying
    the next item would only fail too) with backoff up to ``retry_cap``; a success resets it.
    A permanent refusal, or a notification still failing after ``give_up_after`` seconds,
    is marked dead and logged.
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        url: str,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        secret: str | None = None,
        give_up_after: float = 3 * 86400.0,
        retry_base: float = 10.0,
        retry_cap: float = 300.0,
        poll_seconds: float = 5.0,
        batch: int = 20,
        clock: Callable[[], float] = time.time,
        send: Callable[..., DeliveryResult] = deliver,
    ) -> None:
        super().__init__(name="webhooks")
        self._outbox = outbox
        self.url = url
        self._timeout = timeout
        self._headers = dict(headers or {})
        self._secret = secret
        self._give_up_after = give_up_after
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._poll = poll_seconds
        self._batch = batch
        self._clock = clock
        self._send = send
        self._failures = 0
        self._hold_until = 0.0
        self.last_error: str | None = None

    def step(self) -> float | None:
        """One round of deliveries; at once again when more are due, else after the poll
        interval, or when the hold after a failure ends. A stop leaves undelivered items in
        the outbox; ``wake()`` means something was enqueued."""
        _, more = self.run_once()
        if more:
            return 0.0
        if not self._failures:
            return self._poll
        return max(0.0, self._poll, self._hold_until - self._clock())

    def run_once(self) -> tuple[int, bool]:
        """One round: deliver due items until one fails. Returns (delivered, maybe more due)."""
        now = self._clock()
        if now < self._hold_until:
            return 0, False
        items = self._outbox.due(now, self._batch)
        delivered = 0
        for item in items:
            if self.stopping:
                return delivered, True
            if not self._attempt(item):
                return delivered, False
            delivered += 1
        return delivered, len(items) == self._batch

    def _attempt(self, item: OutboxItem) -> bool:
        """Deliver one item; True unless the receiver asked us to hold off."""
        result = self._send(
            self.url,
            item.payload,
            timeout=self._timeout,
            headers=self._headers,
            secret=self._secret,
        )
        if result.ok:
            self._outbox.mark_delivered(item.id)
            self._failures, self.last_error = 0, None
            return True
        error = f"{item.event} {item.payload.get('id', item.id)}: {result.detail}"
        now = self._clock()
        if result.outcome == "permanent":
            self._outbox.mark_dead(item.id, result.detail)
            # Not the URL: webhook URLs often carry a token (Slack, Teams).
            log.error("webhook %s: refused for good; dropped", error)
            return True
        self._failures += 1
        self.last_error = error
        if now - item.created_at > self._give_up_after:
            self._outbox.mark_dead(
                item.id, f"gave up after {item.attempts + 1} attempts: {result.detail}"
            )
            log.error(
                "webhook %s: still failing after %.0fs; dropped", error, now - item.created_at
            )
            return True
        delay = next_retry_delay(self._failures, base=self._retry_base, cap=self._retry_cap)
        delay = max(delay, min(result.retry_after or 0.0, self._retry_cap))
        self._outbox.mark_retry(item.id, now + delay, result.detail)
        self._hold_until = now + delay
        log.warning("webhook %s; retrying in %.0fs", error, delay)
        return False
