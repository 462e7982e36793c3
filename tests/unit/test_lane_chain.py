"""A lane working through its queue claims the next file in the transaction that records the last
one's success: one commit per file. Anything that may hold the lane between files (a cooldown, a
pause) keeps them apart, and a stop between the two gives the claimed file back to the queue.

A real lane (SQLite catalog, directory destination); commits are counted on the engine.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, event, select

from ingestd.catalog.repo import Catalog, FileRow
from ingestd.catalog.schema import events
from ingestd.config import Settings
from ingestd.destinations.factory import build_destination
from ingestd.metrics import Metrics
from ingestd.pipeline.lane import Lane
from ingestd.states import FileState
from tests.waiting import until

FILES = 6


class Uploads(Metrics):
    """The lane's observer; ``after`` runs once a file's success (and any chained claim) is
    committed."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.after: list[object] = []
        self.lock = threading.Lock()

    def uploaded(self, destination: str, row: FileRow, seconds: float) -> None:
        super().uploaded(destination, row, seconds)
        with self.lock:
            self.count += 1
        for hook in self.after:
            hook()  # type: ignore[operator]


def settings_for(tmp_path: Path, *, cooldown: float = 0.0) -> Settings:
    (tmp_path / "bucket").mkdir()
    return Settings(
        state_dir=tmp_path / "state",
        queue={"cooldown_seconds": cooldown},
        destinations={"main": {"type": "directory", "path": str(tmp_path / "bucket")}},
        inboxes=[{"name": "scans", "path": str(tmp_path / "inbox"), "destination": "main"}],
    )


def queue_files(catalog: Catalog, inbox: Path, n: int) -> list[int]:
    inbox.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        path = inbox / f"doc-{i}.txt"
        path.write_bytes(f"document {i}\n".encode())
        st = path.stat()
        seen = catalog.observe(
            inbox="scans",
            relpath=path.name,
            source_path=str(path),
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
        )
        catalog.queue(
            seen.file_id,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            detected_type="text",
            content_type="text/plain",
            destination="main",
            dedup_scope="*",
        )
        ids.append(seen.file_id)
    return ids


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield cat
    cat.close()


def run_lane(settings: Settings, catalog: Catalog, observer: Uploads) -> Lane:
    lane = Lane(
        name="main",
        destination=build_destination("main", settings.destinations["main"]),
        catalog=catalog,
        settings=settings,
        owner="node-1",
        observer=observer,
    )
    lane.start()
    return lane


def codes(catalog: Catalog) -> list[tuple[int, str]]:
    with catalog.engine.connect() as conn:
        rows = conn.execute(select(events.c.file_id, events.c.code).order_by(events.c.id)).all()
    return [(int(r.file_id), str(r.code)) for r in rows if r.code in ("claimed", "uploaded")]


def test_a_draining_lane_commits_once_per_file(tmp_path: Path, catalog: Catalog) -> None:
    settings = settings_for(tmp_path)
    ids = queue_files(catalog, tmp_path / "inbox", FILES)
    writes: list[str] = []

    def on_commit(conn: Connection) -> None:
        if conn.get_execution_options().get("ingestd_write", False):
            writes.append(threading.current_thread().name)

    event.listen(catalog.engine, "commit", on_commit)
    observer = Uploads()
    lane = run_lane(settings, catalog, observer)
    try:
        assert until(lambda: observer.count == FILES, 20.0)
    finally:
        lane.stop(timeout=5.0)
    assert [r.state for r in map(catalog.get, ids)] == [FileState.UPLOADED] * FILES  # type: ignore[union-attr]
    # The lane lease, the first look for lost uploads, the first claim, then one
    # success-and-claim per file, and the lease released at stop. Two transactions per file
    # would be 2 * FILES + 4.
    assert writes.count("lane-main") == FILES + 4, writes
    # Files still go one at a time, in queue order: each claim follows the success before it.
    assert codes(catalog) == [
        step for file_id in ids for step in ((file_id, "claimed"), (file_id, "uploaded"))
    ]


def test_a_cooldown_keeps_success_and_next_claim_apart(tmp_path: Path, catalog: Catalog) -> None:
    settings = settings_for(tmp_path, cooldown=0.2)
    ids = queue_files(catalog, tmp_path / "inbox", 3)
    observer = Uploads()
    claimed_at_success: list[int] = []

    def look() -> None:
        claimed_at_success.append(len(catalog.by_state(FileState.UPLOADING)))

    observer.after.append(look)
    lane = run_lane(settings, catalog, observer)
    try:
        assert until(lambda: observer.count == 3, 20.0)
    finally:
        lane.stop(timeout=5.0)
    # During the cooldown nothing is claimed: the next file is still queued.
    assert claimed_at_success == [0, 0, 0]
    assert all(catalog.get(i).state == FileState.UPLOADED for i in ids)  # type: ignore[union-attr]


def test_a_stop_gives_the_chained_claim_back(tmp_path: Path, catalog: Catalog) -> None:
    settings = settings_for(tmp_path)
    ids = queue_files(catalog, tmp_path / "inbox", 3)
    observer = Uploads()
    lane = run_lane(settings, catalog, observer)
    claimed_at_success: list[int] = []

    def stop_after_first() -> None:
        if observer.count == 1:
            claimed_at_success.append(len(catalog.by_state(FileState.UPLOADING)))
            lane.request_stop()

    observer.after.append(stop_after_first)
    try:
        assert until(lambda: observer.count >= 1, 20.0)
    finally:
        lane.stop(timeout=10.0)
    assert claimed_at_success == [1], "the second file was claimed with the first one's success"
    second = catalog.get(ids[1])
    assert second is not None
    assert second.state == FileState.QUEUED
    assert second.attempts == 0
    assert second.lease_owner is None
    assert catalog.get(ids[2]).state == FileState.QUEUED  # type: ignore[union-attr]
