"""The daemon's registry (metrics.py): runtime collectors, and the queue gauges read from a real
SQLite catalog with files in every kind of state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ingestd.catalog import db, queries
from ingestd.catalog.repo import Catalog
from ingestd.metrics import Metrics
from tests.unit.test_catalog import SHA_B, FakeClock, fail, new_queued, observe, upload


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
    db.migrate(engine)
    cat = Catalog(engine, clock=FakeClock())
    yield cat
    cat.close()


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_process_and_python_collectors_are_on_the_daemon_registry() -> None:
    names = {name for name, _ in samples(Metrics())}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= names
    assert {"python_info", "python_gc_collections_total"} <= names


def test_queue_files_counts_only_the_files_waiting_for_upload(catalog: Catalog) -> None:
    observe(catalog, "settling.pdf")  # discovered: not in the queue yet
    new_queued(catalog, "waiting1.pdf")
    new_queued(catalog, "waiting2.pdf", sha="c" * 64)
    new_queued(catalog, "waiting3.pdf", sha="d" * 64)
    new_queued(catalog, "waiting4.pdf", sha=SHA_B)
    metrics = Metrics()
    metrics.watch_catalog(lambda: queries.queue_gauges(catalog.engine))
    before = samples(metrics)
    assert before[("ingestd_queue_files", (("state", "queued"),))] == 4
    for _ in range(2):  # two uploads in flight are still in the queue, as status counts them
        assert catalog.claim_next("main", owner="n1", lease_seconds=60) is not None
    in_flight = samples(metrics)
    assert in_flight[("ingestd_queue_files", (("state", "queued"),))] == 2
    assert in_flight[("ingestd_queue_files", (("state", "uploading"),))] == 2


def test_queue_files_leaves_failed_uploaded_and_discovered_out(catalog: Catalog) -> None:
    observe(catalog, "settling.pdf")
    fail(catalog, new_queued(catalog, "broken.pdf", sha="d" * 64))
    upload(catalog, new_queued(catalog, "done.pdf", sha=SHA_B), key="scans/done.pdf")
    new_queued(catalog, "waiting.pdf", sha="c" * 64)
    metrics = Metrics()
    metrics.watch_catalog(lambda: queries.queue_gauges(catalog.engine))
    got = samples(metrics)
    queue = {
        dict(labels)["state"]: v
        for (name, labels), v in got.items()
        if name == "ingestd_queue_files"
    }
    assert queue == {"queued": 1, "uploading": 0}
    catalog_files = {
        dict(labels)["state"]: v
        for (name, labels), v in got.items()
        if name == "ingestd_catalog_files"
    }
    assert catalog_files["discovered"] == 1 and catalog_files["failed"] == 1
    assert catalog_files["uploaded"] == 1 and catalog_files["queued"] == 1
    assert got[("ingestd_queue_bytes", ())] == 100  # the one waiting file's size
