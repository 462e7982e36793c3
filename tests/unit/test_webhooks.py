"""Webhook payloads, one delivery against a real local receiver, and the outbox worker."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest

from ingestd.catalog.repo import FileRow
from ingestd.catalog.rows import OutboxItem
from ingestd.states import FileState
from ingestd.webhooks import (
    BatchInfo,
    DeliveryResult,
    WebhookWorker,
    classify_status,
    daily_summary,
    deliver,
    encode,
    next_retry_delay,
    on_batch_closed,
    on_failure,
    signature,
)
from tests.servers.s3 import free_port

T0 = 1_714_982_400.0  # 2024-05-06T08:00:00Z


def file_row(id: int, state: str = "uploaded", **values: Any) -> FileRow:
    data: dict[str, Any] = {
        "id": id,
        "inbox": "scanner",
        "relpath": f"2024/cv-{id}.pdf",
        "source_path": f"/srv/drop/scanner/2024/cv-{id}.pdf",
        "source_key": None,
        "owner": "scan",
        "size": 1000 * id,
        "mtime_ns": 0,
        "sha256": f"{id:064x}",
        "detected_type": "pdf",
        "content_type": "application/pdf",
        "dedup_scope": "global",
        "state": FileState(state),
        "reason_code": None,
        "reason": None,
        "attempts": 1,
        "next_attempt_at": None,
        "destination": "main",
        "key": f"scanner/2024/05/06/cv-{id}.pdf",
        "original_id": None,
        "batch_id": 7,
        "discovered_at": T0,
        "queued_at": T0 + 1,
        "started_at": T0 + 2,
        "finished_at": T0 + 3,
        "updated_at": T0 + 3,
        "lease_owner": None,
        "lease_expires": None,
        "cancel_requested": False,
        "post_done": True,
        "post_path": None,
        "upload_id": None,
        "part_size": None,
        "bytes_sent": 0,
        "upload_seconds": 1.0,
        "md5": None,
        "ctime_ns": None,
        "priority": 0,
    }
    data.update(values)
    return FileRow(**data)


# ---------------------------------------------------------------------------- payloads


def test_batch_closed_payload() -> None:
    batch = BatchInfo(
        id=7, inbox="scanner", opened_at=T0, last_arrival_at=T0 + 60, closed_at=T0 + 180
    )
    files = [
        file_row(3, "rejected", reason_code="truncated", reason="PDF without %%EOF", key=None),
        file_row(1),
        file_row(2, "duplicate", original_id=1, key=None),
    ]
    doc = on_batch_closed(batch, files, node="scan-01")
    assert doc["event"] == "batch_closed"
    assert doc["id"] == "batch_closed:7"
    assert doc["version"] == 1
    assert doc["node"] == "scan-01"
    assert doc["occurred_at"] == "2024-05-06T08:03:00Z"
    assert doc["batch"] == {
        "id": 7,
        "inbox": "scanner",
        "opened_at": "2024-05-06T08:00:00Z",
        "last_arrival_at": "2024-05-06T08:01:00Z",
        "closed_at": "2024-05-06T08:03:00Z",
    }
    assert doc["totals"] == {
        "files": 3,
        "bytes": 6000,
        "uploaded_bytes": 1000,
        "by_state": {"duplicate": 1, "rejected": 1, "uploaded": 1},
    }
    assert [f["id"] for f in doc["files"]] == [1, 2, 3]
    assert doc["files"][0]["key"] == "scanner/2024/05/06/cv-1.pdf"
    assert doc["files"][0]["name"] == "cv-1.pdf"
    assert doc["files"][1]["duplicate_of"] == 1
    assert doc["files"][2]["reason_code"] == "truncated"
    assert doc["files_truncated"] is False
    json.dumps(doc)  # plain JSON, nothing exotic inside


def test_batch_closed_lists_at_most_max_files() -> None:
    batch = BatchInfo(id=1, inbox="scanner", opened_at=T0, last_arrival_at=T0, closed_at=None)
    doc = on_batch_closed(batch, [file_row(i) for i in range(1, 11)], node="n", max_files=4)
    assert [f["id"] for f in doc["files"]] == [1, 2, 3, 4]
    assert doc["files_truncated"] is True
    assert doc["totals"]["files"] == 10
    assert doc["occurred_at"] == "2024-05-06T08:00:00Z"  # not closed yet: the last arrival


def test_failure_payload_id_changes_with_attempts() -> None:
    failed = file_row(5, "failed", attempts=8, reason_code="vanished", reason="gone", key=None)
    doc = on_failure(failed, node="n", at=T0 + 10)
    assert doc["event"] == "file_failed"
    assert doc["id"] == "file_failed:5:8"
    assert doc["occurred_at"] == "2024-05-06T08:00:10Z"
    assert doc["file"]["state"] == "failed"
    assert doc["file"]["reason"] == "gone"
    again = on_failure(file_row(5, "failed", attempts=16), node="n", at=T0)
    assert again["id"] != doc["id"]


def test_daily_summary_payload() -> None:
    finished = [
        file_row(1),
        file_row(2, inbox="sftp"),
        file_row(3, "failed", reason_code="file_error", reason="unreadable"),
        file_row(4, "rejected", reason_code="corrupt", reason="bad xref"),
    ]
    doc = daily_summary(
        date(2024, 5, 6), finished, backlog={"queued": 12, "failed": 1}, node="n", at=T0
    )
    assert doc["id"] == "daily_summary:2024-05-06"
    assert doc["day"] == "2024-05-06"
    assert doc["totals"]["by_state"] == {"failed": 1, "rejected": 1, "uploaded": 2}
    assert doc["totals"]["uploaded_bytes"] == 3000
    assert doc["inboxes"]["sftp"]["files"] == 1
    assert doc["inboxes"]["scanner"]["files"] == 3
    assert doc["backlog"] == {"failed": 1, "queued": 12}
    assert [p["id"] for p in doc["problems"]] == [3, 4]
    assert doc["problems_truncated"] is False


# ---------------------------------------------------------------------------- delivery


@dataclass
class Receiver:
    """A real HTTP receiver on a fixed port that can be started and stopped."""

    port: int
    script: list[tuple[int, bytes, dict[str, str]]] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    _httpd: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status, answer, headers = (
                    receiver.script.pop(0) if receiver.script else (200, b"", {})
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def ids(self) -> list[str]:
        return [json.loads(body)["id"] for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(port=free_port())
    try:
        yield r
    finally:
        r.stop()


PAYLOAD = {"event": "batch_closed", "id": "batch_closed:1", "text": "Zoë"}


def test_deliver_posts_signed_json(receiver: Receiver) -> None:
    receiver.start()
    result = deliver(
        receiver.url, PAYLOAD, timeout=2, headers={"Authorization": "Bearer t"}, secret="s3cret"
    )
    assert result == DeliveryResult("ok", 200, "HTTP 200")
    headers, body = receiver.received[0]
    assert body == encode(PAYLOAD)
    assert json.loads(body) == PAYLOAD
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Ingestd-Event"] == "batch_closed"
    assert headers["Idempotency-Key"] == "batch_closed:1"
    assert headers["Authorization"] == "Bearer t"
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Ingestd-Signature"] == expected == signature(body, "s3cret")


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "ok"), (202, "ok"), (204, "ok"), (400, "permanent"), (404, "permanent"),
     (410, "permanent"), (408, "retry"), (429, "retry"), (500, "retry"), (503, "retry"),
     (301, "permanent")],
)  # fmt: skip
def test_deliver_classifies_answers(receiver: Receiver, status: int, outcome: str) -> None:
    headers = {"Location": "http://127.0.0.1:1/elsewhere"} if status == 301 else {}
    receiver.script = [(status, b"nope" if status >= 300 else b"", headers)]
    receiver.start()
    result = deliver(receiver.url, PAYLOAD, timeout=2)
    assert (result.outcome, result.status) == (outcome, status)
    assert len(receiver.received) == 1  # a redirect is reported, not followed
    if status >= 300:
        assert result.detail == f"HTTP {status}: nope"


def test_deliver_passes_retry_after(receiver: Receiver) -> None:
    receiver.script = [(429, b"slow down", {"Retry-After": "42"})]
    receiver.start()
    result = deliver(receiver.url, PAYLOAD, timeout=2)
    assert result == DeliveryResult("retry", 429, "HTTP 429: slow down", 42.0)


def test_deliver_network_errors_are_retried(receiver: Receiver) -> None:
    result = deliver(receiver.url, PAYLOAD, timeout=2)  # nothing listens yet
    assert result == DeliveryResult("retry", None, "connection refused")


def test_deliver_bad_urls_are_permanent() -> None:
    assert deliver("ftp://x/", PAYLOAD, timeout=1).outcome == "permanent"
    assert deliver("http://127.0.0.1:notaport/", PAYLOAD, timeout=1).outcome == "permanent"
    assert deliver("http:///hook", PAYLOAD, timeout=1) == DeliveryResult(
        "permanent", None, "webhook url 'http:///********': has no host"
    )  # nothing past the host: webhook URLs carry their token in the path


def test_classify_status() -> None:
    assert [classify_status(s) for s in (200, 299, 302, 401, 408, 429, 500, 599)] == [
        "ok", "ok", "permanent", "permanent", "retry", "retry", "retry", "retry",
    ]  # fmt: skip


def test_next_retry_delay_grows_with_jitter_and_cap() -> None:
    low = [next_retry_delay(a, base=10, cap=300, rand=lambda: 0.0) for a in range(1, 8)]
    high = [next_retry_delay(a, base=10, cap=300, rand=lambda: 1.0) for a in range(1, 8)]
    assert low == [5, 10, 20, 40, 80, 150, 150]
    assert high == [10, 20, 40, 80, 160, 300, 300]
    assert next_retry_delay(0, rand=lambda: 1.0) == next_retry_delay(1, rand=lambda: 1.0)


# ---------------------------------------------------------------------------- worker


class MemoryOutbox:
    """The Outbox protocol in memory, with the same rules the catalog must keep."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.items: dict[int, dict[str, Any]] = {}
        self._ids: dict[str, int] = {}

    def enqueue(self, event: str, payload: Mapping[str, Any]) -> int | None:
        with self._lock:
            if payload["id"] in self._ids:
                return None
            item_id = len(self.items) + 1
            self._ids[payload["id"]] = item_id
            self.items[item_id] = {
                "event": event, "payload": dict(payload), "attempts": 0, "next_at": 0.0,
                "created_at": self._clock(), "state": "pending", "errors": [],
            }  # fmt: skip
            return item_id

    def due(self, now: float, limit: int) -> list[OutboxItem]:
        with self._lock:
            ready = [
                OutboxItem(i, it["event"], it["payload"], it["attempts"], it["created_at"])
                for i, it in sorted(self.items.items())
                if it["state"] == "pending" and it["next_at"] <= now
            ]
            return ready[:limit]

    def mark_delivered(self, item_id: int) -> None:
        with self._lock:
            assert self.items[item_id]["state"] == "pending"
            self.items[item_id]["state"] = "delivered"

    def mark_retry(self, item_id: int, next_at: float, error: str) -> None:
        with self._lock:
            item = self.items[item_id]
            item["attempts"] += 1
            item["next_at"] = next_at
            item["errors"].append(error)

    def mark_dead(self, item_id: int, error: str) -> None:
        with self._lock:
            self.items[item_id]["state"] = "dead"
            self.items[item_id]["errors"].append(error)

    def states(self) -> list[str]:
        with self._lock:
            return [it["state"] for _, it in sorted(self.items.items())]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def fast_worker(outbox: MemoryOutbox, url: str, **extra: Any) -> WebhookWorker:
    values: dict[str, Any] = {
        "timeout": 2.0, "retry_base": 0.05, "retry_cap": 0.2, "poll_seconds": 0.05,
    }  # fmt: skip
    values.update(extra)
    return WebhookWorker(outbox, url=url, **values)


def test_outbox_survives_receiver_outage(receiver: Receiver) -> None:
    outbox = MemoryOutbox()
    expected = [f"batch_closed:{i}" for i in range(1, 6)]
    for event_id in expected:
        outbox.enqueue("batch_closed", {"event": "batch_closed", "id": event_id})
    worker = fast_worker(outbox, receiver.url)
    worker.start()
    try:
        wait_until(lambda: outbox.items[1]["attempts"] >= 3)  # the receiver is down
        assert outbox.states() == ["pending"] * 5
        assert outbox.items[1]["errors"][0] == "connection refused"
        assert worker.last_error == "batch_closed batch_closed:1: connection refused"
        receiver.start()
        wait_until(lambda: outbox.states() == ["delivered"] * 5)
        outbox.enqueue("file_failed", {"event": "file_failed", "id": "file_failed:9:1"})
        worker.wake()
        wait_until(lambda: outbox.states()[-1] == "delivered")
        time.sleep(0.3)  # several more polls: nothing acknowledged goes out again
    finally:
        worker.stop(timeout=5.0)
    assert receiver.ids() == [*expected, "file_failed:9:1"]
    assert worker.last_error is None


def test_duplicate_events_are_enqueued_once() -> None:
    outbox = MemoryOutbox()
    payload = {"event": "daily_summary", "id": "daily_summary:2024-05-06"}
    assert outbox.enqueue("daily_summary", payload) == 1
    assert outbox.enqueue("daily_summary", payload) is None


def test_server_errors_are_retried_then_delivered_once(receiver: Receiver) -> None:
    receiver.script = [(500, b"db down", {}), (503, b"", {}), (200, b"", {})]
    receiver.start()
    outbox = MemoryOutbox()
    outbox.enqueue("file_failed", {"event": "file_failed", "id": "file_failed:1:8"})
    worker = fast_worker(outbox, receiver.url)
    worker.start()
    try:
        wait_until(lambda: outbox.states() == ["delivered"])
        time.sleep(0.2)
    finally:
        worker.stop(timeout=5.0)
    assert receiver.ids() == ["file_failed:1:8"] * 3
    assert outbox.items[1]["errors"] == ["HTTP 500: db down", "HTTP 503"]


def test_permanent_refusal_is_dead_and_not_resent(receiver: Receiver) -> None:
    receiver.script = [(400, b"unknown event", {})]
    receiver.start()
    outbox = MemoryOutbox()
    outbox.enqueue("x", {"event": "x", "id": "x:1"})
    outbox.enqueue("x", {"event": "x", "id": "x:2"})
    worker = fast_worker(outbox, receiver.url)
    worker.start()
    try:
        wait_until(lambda: outbox.states() == ["dead", "delivered"])
        time.sleep(0.2)
    finally:
        worker.stop(timeout=5.0)
    assert receiver.ids() == ["x:1", "x:2"]  # the refused one does not hold up the next
    assert outbox.items[1]["errors"] == ["HTTP 400: unknown event"]


def test_gives_up_after_the_age_limit() -> None:
    now = [1000.0]
    outbox = MemoryOutbox(clock=lambda: now[0])
    outbox.enqueue("x", {"event": "x", "id": "x:1"})
    sent: list[str] = []

    def send(url: str, payload: Mapping[str, Any], **_: Any) -> DeliveryResult:
        sent.append(payload["id"])
        return DeliveryResult("retry", 503, "HTTP 503")

    worker = WebhookWorker(
        outbox, url="http://h/", give_up_after=3600, clock=lambda: now[0], send=send
    )
    assert worker.run_once() == (0, False)
    assert outbox.states() == ["pending"]
    assert worker.run_once() == (0, False)  # held: no second attempt before the backoff
    assert sent == ["x:1"]
    now[0] += 3601
    worker.run_once()
    assert outbox.states() == ["dead"]
    assert outbox.items[1]["errors"][-1] == "gave up after 2 attempts: HTTP 503"


def test_retry_after_is_honoured() -> None:
    now = [0.0]
    outbox = MemoryOutbox(clock=lambda: now[0])
    outbox.enqueue("x", {"event": "x", "id": "x:1"})
    answers = [DeliveryResult("retry", 429, "HTTP 429", 120.0), DeliveryResult("ok", 200, "")]

    worker = WebhookWorker(
        outbox, url="http://h/", retry_base=1, retry_cap=600, clock=lambda: now[0],
        send=lambda *a, **k: answers.pop(0),
    )  # fmt: skip
    worker.run_once()
    assert outbox.items[1]["next_at"] == 120.0
    now[0] = 119.0
    assert worker.run_once() == (0, False)
    now[0] = 120.0
    assert worker.run_once() == (1, False)
    assert outbox.states() == ["delivered"]


def test_a_full_batch_means_look_again() -> None:
    outbox = MemoryOutbox()
    for i in range(5):
        outbox.enqueue("x", {"event": "x", "id": f"x:{i}"})
    worker = WebhookWorker(
        outbox, url="http://h/", batch=2, send=lambda *a, **k: DeliveryResult("ok", 200, "")
    )
    assert worker.run_once() == (2, True)
    assert worker.run_once() == (2, True)
    assert worker.run_once() == (1, False)
