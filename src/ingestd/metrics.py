"""Prometheus metrics. Label values are bounded codes (inbox, destination, state, outcome,
reason code), never file names; a reason code is shown through ``untrusted.shown`` all the
same, so a scrape never carries a control character."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ingestd import __version__
from ingestd.catalog.repo import FileRow
from ingestd.states import FileState
from ingestd.untrusted import shown

# Seconds to hours: a 10 KiB scan takes 0.05 s, a 5 GiB video over a slow uplink an hour.
# The *_created series double the scrape size and no alert or dashboard here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


class Metrics:
    """Every ingestd metric, in its own registry; implements LaneObserver and IntakeObserver."""

    def __init__(self) -> None:
        self._uploads = 0  # files this process uploaded (the daemon's status line)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.discovered_total = Counter(
            "ingestd_files_discovered", "Files seen for the first time.", ["inbox"], registry=r
        )
        self.processed_total = Counter(
            "ingestd_files_processed",
            "Files that reached an outcome.",
            ["inbox", "outcome"],
            registry=r,
        )
        self.rejections_total = Counter(
            "ingestd_rejections", "Rejections by reason code.", ["inbox", "reason"], registry=r
        )
        self.upload_bytes_total = Counter(
            "ingestd_upload_bytes",
            "Bytes acknowledged by the destination.",
            ["destination"],
            registry=r,
        )
        self.upload_duration = Histogram(
            "ingestd_upload_duration_seconds",
            "Time to upload one file.",
            ["destination"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.retries_total = Counter(
            "ingestd_upload_retries",
            "Upload attempts that will be retried, by kind.",
            ["destination", "kind"],
            registry=r,
        )
        self.destination_up_gauge = Gauge(
            "ingestd_destination_up", "1 when the destination answers.", ["destination"], registry=r
        )
        self.inbox_up_gauge = Gauge(
            "ingestd_inbox_up",
            "1 when a remote (SFTP) inbox's server answers.",
            ["inbox"],
            registry=r,
        )
        self.paused_gauge = Gauge(
            "ingestd_paused",
            "1 when the lane is paused by an operator.",
            ["destination"],
            registry=r,
        )
        self.last_success = Gauge(
            "ingestd_last_success_timestamp_seconds",
            "When a file from the inbox last uploaded.",
            ["inbox"],
            registry=r,
        )
        Info("ingestd_build", "ingestd version.", registry=r).info({"version": __version__})
        add_runtime_collectors(r)

    def watch_catalog(self, read: Callable[[], tuple[dict[str, int], int]]) -> None:
        """Export queue gauges read from the catalog at scrape time (right after a restart too)."""
        self.registry.register(_QueueCollector(read))

    def declare(self, *, inboxes: Iterable[str], destinations: Iterable[str]) -> None:
        """Create the zero-valued series so dashboards and alerts see them before any event."""
        for inbox in inboxes:
            self.discovered_total.labels(inbox)
            for outcome in ("uploaded", "duplicate", "rejected", "failed"):
                self.processed_total.labels(inbox, outcome)
        for dest in destinations:
            self.upload_bytes_total.labels(dest)
            self.upload_duration.labels(dest)
            self.destination_up_gauge.labels(dest).set(1)
            self.paused_gauge.labels(dest).set(0)
            for kind in ("destination", "file"):
                self.retries_total.labels(dest, kind)

    def inbox_up(self, inbox: str, up: bool) -> None:
        self.inbox_up_gauge.labels(inbox).set(1 if up else 0)

    # IntakeObserver
    def discovered(self, inbox: str) -> None:
        self.discovered_total.labels(shown(inbox)).inc()

    def processed(
        self, inbox: str, outcome: str, reason: str | None = None, file_id: int | None = None
    ) -> None:
        self.processed_total.labels(shown(inbox), shown(outcome)).inc()
        if outcome == "rejected":
            for code in (reason or "unknown").split(","):
                self.rejections_total.labels(shown(inbox), shown(code)).inc()

    # LaneObserver
    def lane_paused(self, destination: str, paused: bool) -> None:
        self.paused_gauge.labels(destination).set(1 if paused else 0)

    def destination_up(self, destination: str, up: bool) -> None:
        self.destination_up_gauge.labels(destination).set(1 if up else 0)

    def bytes_sent(self, destination: str, nbytes: int) -> None:
        self.upload_bytes_total.labels(destination).inc(nbytes)

    def retry(self, destination: str, kind: str) -> None:
        self.retries_total.labels(destination, kind).inc()

    def uploaded(self, destination: str, row: FileRow, seconds: float) -> None:
        self._uploads += 1
        self.upload_duration.labels(destination).observe(seconds)
        self.processed(row.inbox, "uploaded")
        self.last_success.labels(row.inbox).set(time.time())

    def failed(self, destination: str, row: FileRow) -> None:
        self.processed(row.inbox, "failed")

    def duplicate(self, destination: str, row: FileRow) -> None:
        self.processed(row.inbox, "duplicate")

    def uploads_since_start(self) -> int:
        return self._uploads


def add_runtime_collectors(registry: CollectorRegistry) -> None:
    """process_* (CPU, memory, open files, start time) and python_* (version, GC) series, as
    every Python exporter has them: the daemon's own registry does not get the default
    registry's copies, so they are registered here. ProcessCollector reads /proc and exports
    nothing where there is none."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


# The upload queue: files handed to a lane and not yet delivered. A ``discovered`` file is
# still settling or being checked, a ``failed`` one waits for an operator and the terminal
# states are history; none of them is in the queue. ``uploading`` is: an interrupted upload
# goes back to ``queued``, and ``ingestd status``'s queue and ingestd_queue_bytes count it.
QUEUE_STATES: tuple[FileState, ...] = (FileState.QUEUED, FileState.UPLOADING)


def queue_families(counts: dict[str, int], queued_bytes: int) -> list[GaugeMetricFamily]:
    """The catalog gauges from per-state counts (every state) and the bytes still to send."""
    queue = GaugeMetricFamily(
        "ingestd_queue_files",
        "Files waiting in the upload queue (queued, or uploading and not yet acknowledged).",
        labels=["state"],
    )
    for state in QUEUE_STATES:
        queue.add_metric([state.value], counts.get(state.value, 0))
    catalog = GaugeMetricFamily(
        "ingestd_catalog_files",
        "Files per state in the catalog, history included.",
        labels=["state"],
    )
    for state in FileState:
        catalog.add_metric([state.value], counts.get(state.value, 0))
    waiting = GaugeMetricFamily(
        "ingestd_queue_bytes", "Bytes of the queued files still to be sent.", value=queued_bytes
    )
    return [queue, catalog, waiting]


class _QueueCollector(Collector):
    def __init__(self, read: Callable[[], tuple[dict[str, int], int]]) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            counts, queued_bytes = self._read()
        except Exception:  # a scrape must not fail because the catalog is busy
            return
        yield from queue_families(counts, queued_bytes)
