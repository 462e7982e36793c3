"""An idle lane sleeps until something happens, and still reacts to what operators and intake do.

A real lane (SQLite catalog, directory destination) with an empty queue: its housekeeping is
30 s away, so anything it does within a few seconds was woken by the commit (or, without a
commit signal, seen by its 1.5 s look at the change counter), not by a housekeeping timer.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestd.catalog.changes import ChangeWatch
from ingestd.catalog.repo import Catalog
from ingestd.config import Settings
from ingestd.destinations.factory import build_destination
from ingestd.metrics import Metrics
from ingestd.pipeline.lane import Lane
from ingestd.states import FileState
from tests.waiting import until

REACT_SECONDS = 10.0  # far below the 30 s housekeeping deadline, far above a slow CI box


class Recorder(Metrics):
    """The daemon's lane observer, also remembering the pause flag it last reported."""

    def __init__(self) -> None:
        super().__init__()
        self.paused: bool | None = None
        self.pause_seen = threading.Condition()

    def lane_paused(self, destination: str, paused: bool) -> None:
        super().lane_paused(destination, paused)
        with self.pause_seen:
            self.paused = paused
            self.pause_seen.notify_all()

    def wait_paused(self, value: bool) -> bool:
        with self.pause_seen:
            return self.pause_seen.wait_for(lambda: self.paused is value, timeout=REACT_SECONDS)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "bucket").mkdir()
    return Settings(
        state_dir=tmp_path / "state",
        destinations={"main": {"type": "directory", "path": str(tmp_path / "bucket")}},
        inboxes=[{"name": "scans", "path": str(tmp_path / "inbox"), "destination": "main"}],
    )


@pytest.fixture(params=["commit signal", "timed looks"])
def lane(
    request: pytest.FixtureRequest, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Lane, Recorder]]:
    if request.param == "timed looks":  # no inotify here, or not SQLite in WAL mode
        monkeypatch.setattr(ChangeWatch, "signal", lambda self: None)
    catalog = Catalog.open(settings.effective_catalog_url)
    recorder = Recorder()
    lane = Lane(
        name="main",
        destination=build_destination("main", settings.destinations["main"]),
        catalog=catalog,
        settings=settings,
        owner="node-1",
        observer=recorder,
    )
    lane.start()
    assert recorder.wait_paused(False), "the lane ran its first turn"
    time.sleep(0.5)  # and went idle
    yield lane, recorder
    lane.stop(timeout=5.0)
    catalog.close()


def operator(settings: Settings, action: str) -> None:
    """What a CLI command beside the daemon does: another process, its own catalog connection,
    its own commit (POSIX locks, which the lane watches, are per process)."""
    code = (
        "import hashlib, sys\n"
        "from ingestd.catalog.repo import Catalog\n"
        "cat = Catalog.open(sys.argv[1], migrate=False)\n"
        f"{action}\n"
        "cat.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, settings.effective_catalog_url], check=True)


def test_an_idle_lane_sees_pause_and_resume_from_another_process_at_once(
    lane: tuple[Lane, Recorder], settings: Settings
) -> None:
    _, recorder = lane
    operator(settings, 'cat.set_paused(["main"], True)')
    assert recorder.wait_paused(True)
    operator(settings, 'cat.set_paused(["main"], False)')
    assert recorder.wait_paused(False)


def test_an_idle_lane_uploads_a_file_queued_by_another_process(
    lane: tuple[Lane, Recorder], settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "inbox" / "scan.pdf"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"%PDF-1.4 queued without a wake-up")
    st = source.stat()
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    # Two commits in a row, as intake makes them: the second must not get lost behind the first.
    operator(
        settings,
        f"seen = cat.observe(inbox='scans', relpath='scan.pdf', source_path={str(source)!r}, "
        f"size={st.st_size}, mtime_ns={st.st_mtime_ns})\n"
        f"cat.queue(seen.file_id, sha256={sha!r}, size={st.st_size}, mtime_ns={st.st_mtime_ns}, "
        "detected_type='pdf', content_type='application/pdf', destination='main', "
        "dedup_scope='*')",
    )
    catalog = lane[0].catalog

    def uploaded() -> bool:
        rows = catalog.by_state(FileState.UPLOADED)
        return len(rows) == 1

    assert until(uploaded, REACT_SECONDS)
    (stored,) = (p for p in (tmp_path / "bucket").rglob("scan*.pdf") if p.is_file())
    assert stored.read_bytes() == b"%PDF-1.4 queued without a wake-up"


def test_wake_and_stop_reach_an_idle_lane_at_once(lane: tuple[Lane, Recorder]) -> None:
    idle_lane, _ = lane
    before = idle_lane.last_loop_at
    idle_lane.wake()
    assert until(lambda: idle_lane.last_loop_at > before, REACT_SECONDS), "a wake starts a new turn"
    started = time.monotonic()
    idle_lane.stop(timeout=REACT_SECONDS)
    assert time.monotonic() - started < REACT_SECONDS
    idle_lane.wake()  # a late wake-up of a stopped lane is harmless
