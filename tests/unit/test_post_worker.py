"""The post-action stage's worker (pipeline/post/worker.py) on real files and a real catalog:
batches, one fsync per folder per batch, crash recovery, retries, and an upload that does not
wait for a slow archive."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ingestd import fsync
from ingestd.catalog import db
from ingestd.catalog.repo import Catalog, FileRow
from ingestd.catalog.schema import events
from ingestd.config import Settings
from ingestd.destinations.factory import build_destination
from ingestd.metrics import Metrics
from ingestd.pipeline.lane import Lane
from ingestd.pipeline.post import PostWorker, files
from ingestd.pipeline.post import worker as post_worker
from tests import samples
from tests.intakes import running_intake
from tests.waiting import until

SHA = "d" * 64


class Crash(BaseException):
    """kill -9 at this point: nothing after it runs (not an Exception: no handler sees it)."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("INGESTD_"):
            monkeypatch.delenv(name)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def settings(tmp_path: Path, inbox: Path) -> Settings:
    (tmp_path / "bucket").mkdir()
    return Settings(
        state_dir=tmp_path / "state",
        destinations={"main": {"type": "directory", "path": str(tmp_path / "bucket")}},
        inboxes=[{"name": "scans", "path": str(inbox), "destination": "main", "settle_seconds": 0}],
        queue={"cooldown_seconds": 0},
    )


@pytest.fixture
def catalog(settings: Settings) -> Iterator[Catalog]:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    cat = Catalog.open(settings.effective_catalog_url)
    yield cat
    cat.close()


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every directory fsync, in order."""
    seen: list[Path] = []
    real = fsync.fsync_dir

    def record(path: Path) -> None:
        seen.append(path)
        real(path)

    monkeypatch.setattr(fsync, "fsync_dir", record)
    return seen


def archive_of(settings: Settings) -> Path:
    return settings.state_dir / "archive" / "scans"


def uploaded(catalog: Catalog, inbox: Path, relpath: str, data: bytes | None = None) -> int:
    """A file taken in, queued, claimed and uploaded: its post-action (archive) is due."""
    src = inbox / relpath
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data if data is not None else f"%PDF-1.4 {relpath}".encode())
    st = src.stat()
    file_id = catalog.observe(
        inbox="scans",
        relpath=relpath,
        source_path=str(src),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
    ).file_id
    catalog.queue(
        file_id,
        sha256=f"{file_id:064x}",
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        detected_type="pdf",
        content_type="application/pdf",
        destination="main",
        dedup_scope=None,
    )
    claimed = catalog.claim_next("main", owner="n1", lease_seconds=60)
    assert claimed is not None and claimed.id == file_id
    catalog.mark_uploaded(file_id, key=relpath, seconds=0.1, bytes_sent=st.st_size, detail="ok")
    return file_id


def get(catalog: Catalog, file_id: int) -> FileRow:
    row = catalog.get(file_id)
    assert row is not None
    return row


def worker(catalog: Catalog, settings: Settings, **kwargs: Any) -> PostWorker:
    return PostWorker(catalog=catalog, settings=settings, remotes={}, **kwargs)


def archived(settings: Settings) -> list[str]:
    root = archive_of(settings)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------- batches


def test_a_batch_flushes_each_folder_once_and_confirms_in_one_transaction(
    catalog: Catalog,
    settings: Settings,
    inbox: Path,
    synced: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = [uploaded(catalog, inbox, f"scan-{i}.pdf") for i in range(5)]
    confirms: list[int] = []
    real_confirm = catalog.confirm_posts
    monkeypatch.setattr(
        catalog, "confirm_posts", lambda done: (confirms.append(len(done)), real_confirm(done))
    )
    synced.clear()
    assert worker(catalog, settings).step() is not None
    assert archived(settings) == [f"scan-{i}.pdf" for i in range(5)]
    assert list(inbox.iterdir()) == []
    assert all(get(catalog, i).post_done for i in ids)
    assert confirms == [5], "one transaction for the batch"
    # The archive folder is flushed before any source goes, the inbox after: once each.
    assert synced == [archive_of(settings), inbox]


def test_rows_beyond_one_batch_are_done_in_the_following_steps(
    catalog: Catalog, settings: Settings, inbox: Path
) -> None:
    ids = [uploaded(catalog, inbox, f"scan-{i}.pdf") for i in range(5)]
    post = worker(catalog, settings, batch=2)
    pauses = [post.step() for _ in range(3)]
    assert pauses[:2] == [0.0, 0.0], "a full page: the next one at once"
    assert pauses[2] is not None and pauses[2] > 0
    assert all(get(catalog, i).post_done for i in ids)
    assert catalog.pending_post() == []


# ---------------------------------------------------------------- crashes


def test_a_crash_between_plan_and_move_moves_once_to_the_planned_target_on_restart(
    catalog: Catalog, settings: Settings, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_id = uploaded(catalog, inbox, "a.pdf")
    real_place = files.place

    def killed(*args: Any, **kwargs: Any) -> bool:
        raise Crash

    monkeypatch.setattr(files, "place", killed)
    with pytest.raises(Crash):
        worker(catalog, settings).step()
    planned = get(catalog, file_id).post_path
    assert planned == str(archive_of(settings) / "a.pdf"), "intent recorded before the move"
    assert (inbox / "a.pdf").exists() and not get(catalog, file_id).post_done

    monkeypatch.setattr(files, "place", real_place)
    worker(catalog, settings).step()  # the restarted daemon's worker
    row = get(catalog, file_id)
    assert (row.post_done, row.post_path) == (True, planned)
    assert archived(settings) == ["a.pdf"], "moved once, not to a second name"
    assert not (inbox / "a.pdf").exists()


def test_a_crash_after_the_moves_before_the_confirmation_is_confirmed_on_restart(
    catalog: Catalog, settings: Settings, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [uploaded(catalog, inbox, f"scan-{i}.pdf") for i in range(3)]
    real_confirm = catalog.confirm_posts

    def killed(done: Any) -> None:
        raise Crash

    monkeypatch.setattr(catalog, "confirm_posts", killed)
    with pytest.raises(Crash):
        worker(catalog, settings).step()
    assert archived(settings) == ["scan-0.pdf", "scan-1.pdf", "scan-2.pdf"]
    assert not any(get(catalog, i).post_done for i in ids)

    monkeypatch.setattr(catalog, "confirm_posts", real_confirm)
    worker(catalog, settings).step()
    assert all(get(catalog, i).post_done for i in ids)
    assert archived(settings) == ["scan-0.pdf", "scan-1.pdf", "scan-2.pdf"], "nothing twice"
    assert [get(catalog, i).post_path for i in ids] == [
        str(archive_of(settings) / f"scan-{i}.pdf") for i in range(3)
    ]


def test_a_crash_between_the_link_and_the_unlink_is_finished_on_restart(
    catalog: Catalog, settings: Settings, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_id = uploaded(catalog, inbox, "a.pdf")
    real_remove = files.remove

    def killed(*args: Any, **kwargs: Any) -> None:
        raise Crash

    monkeypatch.setattr(files, "remove", killed)
    with pytest.raises(Crash):
        worker(catalog, settings).step()
    assert (inbox / "a.pdf").exists() and archived(settings) == ["a.pdf"]

    monkeypatch.setattr(files, "remove", real_remove)
    worker(catalog, settings).step()
    assert get(catalog, file_id).post_done
    assert not (inbox / "a.pdf").exists() and archived(settings) == ["a.pdf"]


# ---------------------------------------------------------------- failures and retries


def test_a_failing_row_is_retried_with_a_backoff_and_never_blocks_the_others(
    catalog: Catalog, settings: Settings, inbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = uploaded(catalog, inbox, "blocked/a.pdf")
    good = [uploaded(catalog, inbox, f"scan-{i}.pdf") for i in range(3)]
    # A plain file where the archive needs a folder: the move fails with an OSError.
    archive_of(settings).mkdir(parents=True)
    (archive_of(settings) / "blocked").write_bytes(b"not a folder")
    clock = Clock()
    post = worker(catalog, settings, batch=2, clock=clock)
    for _ in range(3):
        post.step()
    assert all(get(catalog, i).post_done for i in good), "the rows after it were done"
    assert not get(catalog, blocked).post_done
    assert "post-action failed" in caplog.text and "retrying in" in caplog.text
    pause = post.step()
    assert pause is not None and 0 < pause <= post_worker.RETRY_BASE_SECONDS

    (archive_of(settings) / "blocked").unlink()
    post.step()
    assert not get(catalog, blocked).post_done, "not before its backoff is over"
    clock.now += post_worker.RETRY_BASE_SECONDS
    post.step()
    assert get(catalog, blocked).post_done
    assert (archive_of(settings) / "blocked" / "a.pdf").exists()


def test_a_row_another_node_just_finished_is_left_to_it_for_a_while(
    catalog: Catalog, settings: Settings, inbox: Path
) -> None:
    wall = Clock()
    wall.now = 0.0
    post = worker(catalog, settings, wall=wall)
    post.step()  # the first pass after start takes everything due (a crash's leftovers)
    theirs = uploaded(catalog, inbox, "theirs.pdf")  # nobody here rang for it
    wall.now = get(catalog, theirs).updated_at
    post.step()
    assert not get(catalog, theirs).post_done
    mine = uploaded(catalog, inbox, "mine.pdf")
    post.due(mine)
    post.step()
    assert get(catalog, mine).post_done and not post.busy
    wall.now += post_worker.ADOPT_SECONDS
    post.step()
    assert get(catalog, theirs).post_done, "adopted once it waited long enough"


def test_what_it_was_told_about_is_done_when_it_stops(
    catalog: Catalog, settings: Settings, inbox: Path
) -> None:
    post = worker(catalog, settings)
    post.step()
    file_id = uploaded(catalog, inbox, "late.pdf")
    post.due(file_id)
    post.on_stop()
    assert get(catalog, file_id).post_done


# ---------------------------------------------------------------- the stage apart


def test_an_upload_does_not_wait_for_a_slow_archive(
    catalog: Catalog, settings: Settings, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first file's archive hangs (a cross-filesystem copy, say) while the lane uploads
    the second: the lane and the post-action stage only meet in the catalog."""
    samples.write_pdf(inbox / "first.pdf", seed=1)
    release = threading.Event()
    archiving = threading.Event()
    real_place = files.place

    def slow_place(src: Path, target: Path, **kwargs: Any) -> bool:
        if src.name == "first.pdf":
            archiving.set()
            assert release.wait(30), "never released"
        return real_place(src, target, **kwargs)

    monkeypatch.setattr(files, "place", slow_place)
    post = worker(catalog, settings)
    lane = Lane(
        name="main",
        destination=build_destination("main", settings.destinations["main"]),
        catalog=catalog,
        settings=settings,
        owner="node-1",
        observer=Metrics(),
        post_due=post.due,
    )
    post.start()
    try:
        with running_intake(settings, catalog, [], post_due=post.due) as intake:
            assert until(lambda: catalog.counts()["queued"] == 1, 20.0), catalog.counts()
            lane.start()
            assert until(archiving.is_set, 20.0), catalog.counts()
            samples.write_pdf(inbox / "second.pdf", seed=2)
            intake.rescan()
            assert until(lambda: catalog.counts()["uploaded"] == 2, 20.0), catalog.counts()
            first = catalog.find_by_path("scans", "first.pdf")
            assert first is not None and not first.post_done, "still archiving the first"
            release.set()
            assert until(lambda: catalog.pending_post() == [], 20.0)
    finally:
        release.set()
        lane.stop(timeout=5)
        post.stop(timeout=5)
    assert archived(settings) == ["first.pdf", "second.pdf"]
    assert sorted(p.name for p in (settings.state_dir.parent / "bucket").rglob("*.pdf")) == [
        "first.pdf",
        "second.pdf",
    ]


def test_keep_inbox_rows_are_done_without_the_stage(
    catalog: Catalog, tmp_path: Path, inbox: Path
) -> None:
    settings = Settings(
        state_dir=tmp_path / "state",
        destinations={"main": {"type": "directory", "path": str(tmp_path / "bucket")}},
        inboxes=[
            {
                "name": "scans",
                "path": str(inbox),
                "destination": "main",
                "settle_seconds": 0,
                "on_duplicate": "keep",
                "on_reject": "keep",
            }
        ],
    )
    samples.write_pdf(inbox / "a.pdf", seed=5)
    samples.write_pdf(inbox / "b.pdf", seed=5)  # the same content: a duplicate
    samples.write_pdf_truncated(inbox / "cut.pdf", seed=6)  # rejected
    rung: list[int] = []
    with running_intake(settings, catalog, [], post_due=rung.append):
        assert until(
            lambda: catalog.counts()["duplicate"] == 1 and catalog.counts()["rejected"] == 1,
            20.0,
        ), catalog.counts()
    assert rung == [], "a kept duplicate or reject has no post-action"
    assert catalog.pending_post() == [], "done in the transactions that found them"
    assert sorted(p.name for p in inbox.iterdir()) == ["a.pdf", "b.pdf", "cut.pdf"]


class FakeRemote:
    """An SFTP inbox's puller as the stage sees it: it records what it is asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def remote_done(self, relpath: str, action: str) -> None:
        self.asked.append((relpath, action))

    def remote_reject(self, relpath: str, reason_json: bytes) -> None:
        self.asked.append((relpath, "reject"))


def test_an_sftp_inbox_is_asked_for_the_remote_action_and_its_staged_copy_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    monkeypatch.setenv("PARTNER_PASSWORD", "not-used-here")
    settings = Settings(
        state_dir=tmp_path / "state",
        destinations={"main": {"type": "directory", "path": str(tmp_path / "bucket")}},
        inboxes=[
            {
                "name": "scans",
                "type": "sftp",
                "host": "partner.example",
                "password_env": "PARTNER_PASSWORD",
                "path": str(staging),
                "destination": "main",
                "on_success": "delete",
            }
        ],
    )
    settings.state_dir.mkdir(parents=True)
    catalog = Catalog.open(settings.effective_catalog_url)
    try:
        file_id = uploaded(catalog, staging, "a.pdf")
        assert not get(catalog, file_id).post_done
        remote = FakeRemote()
        clock = Clock()
        post = PostWorker(catalog=catalog, settings=settings, remotes={}, clock=clock)
        post.step()
        assert not get(catalog, file_id).post_done, "no puller: left due, to be retried"
        assert (staging / "a.pdf").exists()
        post.reconfigure(settings=settings, remotes={"scans": remote})  # a reload built it
        clock.now += post_worker.RETRY_BASE_SECONDS
        post.step()
        assert remote.asked == [("a.pdf", "delete")]
        assert get(catalog, file_id).post_done
        assert not (staging / "a.pdf").exists()
    finally:
        catalog.close()


def test_a_failed_row_done_elsewhere_no_longer_wakes_the_loop(
    catalog: Catalog, settings: Settings, inbox: Path
) -> None:
    file_id = uploaded(catalog, inbox, "blocked/a.pdf")
    archive_of(settings).mkdir(parents=True)
    (archive_of(settings) / "blocked").write_bytes(b"not a folder")
    clock = Clock()
    post = worker(catalog, settings, clock=clock)
    post.step()
    assert not get(catalog, file_id).post_done
    catalog.confirm_post(file_id, post_path=None, source_gone=False)  # another node, say
    clock.now += post_worker.RETRY_CAP_SECONDS
    post.step()
    assert post.step() == post_worker.ADOPT_SECONDS, "an idle wait, not a busy loop"


def test_a_second_confirmation_keeps_the_first_record(
    catalog: Catalog, settings: Settings, inbox: Path
) -> None:
    file_id = uploaded(catalog, inbox, "a.pdf")
    catalog.confirm_post(file_id, post_path="/archive/a.pdf", source_gone=True)
    catalog.confirm_post(file_id, post_path="/elsewhere/a-1.pdf", source_gone=True)  # stale
    assert get(catalog, file_id).post_path == "/archive/a.pdf"
    with db.read_tx(catalog.engine) as conn:
        details = conn.execute(
            select(events.c.detail).where(
                events.c.file_id == file_id, events.c.code == "post_action"
            )
        ).scalars()
        assert list(details) == ["moved to /archive/a.pdf"]
