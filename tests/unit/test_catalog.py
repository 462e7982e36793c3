"""The catalog on real SQLite files: intake, dedup, upload lane, control, concurrency, schema."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, func, inspect, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.sql.elements import ClauseElement

from ingestd import housekeeping, names, status
from ingestd.catalog import db, revision, stmts
from ingestd.catalog.intake_ops import Hashed
from ingestd.catalog.notices import Notice
from ingestd.catalog.outbox import CatalogOutbox
from ingestd.catalog.queries import counts, lane_poll, list_files, totals
from ingestd.catalog.reader import open_reader, sqlite_path
from ingestd.catalog.repo import (
    Catalog,
    FileRow,
    QueueOutcome,
    Seen,
    StaleState,
    source_key,
)
from ingestd.catalog.rows import PartRecord
from ingestd.catalog.schema import events, files, fingerprints, lanes, metadata
from ingestd.config import Settings
from ingestd.states import FileState, IllegalTransition
from ingestd.webhooks import on_failure
from tests.catalog_revisions import insert_old_files, migrate_to

S = FileState
T0 = 1_700_000_000.0
SHA_A = "a" * 64
SHA_B = "b" * 64


class FakeClock:
    """Wall-clock seconds that only move when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'catalog.db'}"


@pytest.fixture
def catalog(db_url: str, clock: FakeClock) -> Iterator[Catalog]:
    engine = db.make_engine(db_url)
    db.migrate(engine)
    cat = Catalog(engine, clock=clock)
    yield cat
    cat.close()


def observe(
    cat: Catalog,
    relpath: str = "scan0001.pdf",
    *,
    inbox: str = "scans",
    size: int = 100,
    mtime_ns: int = 1,
) -> Seen:
    return cat.observe(
        inbox=inbox,
        relpath=relpath,
        source_path=f"/srv/{inbox}/{relpath}",
        size=size,
        mtime_ns=mtime_ns,
    )


def queue(
    cat: Catalog,
    file_id: int,
    sha: str = SHA_A,
    *,
    dest: str = "main",
    scope: str | None = "*",
    md5: str | None = None,
) -> FileState:
    row = cat.get(file_id)
    assert row is not None
    return cat.queue(
        file_id,
        sha256=sha,
        size=row.size,
        mtime_ns=row.mtime_ns,
        detected_type="pdf",
        content_type="application/pdf",
        destination=dest,
        dedup_scope=scope,
        md5=md5,
    ).state


def new_queued(cat: Catalog, relpath: str, sha: str = SHA_A, **kw: object) -> int:
    file_id = observe(cat, relpath).file_id
    assert queue(cat, file_id, sha, **kw) == S.QUEUED  # type: ignore[arg-type]
    return file_id


def row(cat: Catalog, file_id: int) -> FileRow:
    got = cat.get(file_id)
    assert got is not None
    return got


def event_rows(cat: Catalog, file_id: int) -> list[tuple[str | None, str | None, str | None]]:
    with db.read_tx(cat.engine) as conn:
        return [
            (r.from_state, r.to_state, r.code)
            for r in conn.execute(
                select(events).where(events.c.file_id == file_id).order_by(events.c.id)
            )
        ]


def table_count(cat: Catalog, table: object) -> int:
    with db.read_tx(cat.engine) as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def fingerprint_holder(cat: Catalog, scope: str, sha: str) -> int | None:
    with db.read_tx(cat.engine) as conn:
        return conn.execute(
            select(fingerprints.c.file_id).where(
                fingerprints.c.scope == scope, fingerprints.c.sha256 == sha
            )
        ).scalar_one_or_none()


def fail(cat: Catalog, file_id: int) -> None:
    """Claim the (queued) file and give up on it at once."""
    claimed = cat.claim_next(row(cat, file_id).destination or "main", owner="n1", lease_seconds=60)
    assert claimed is not None and claimed.id == file_id
    state = cat.retry_later(
        file_id,
        code="file_error",
        error="boom",
        next_attempt_at=None,
        count_attempt=True,
        max_attempts=1,
    )
    assert state == S.FAILED


def upload(cat: Catalog, file_id: int, key: str = "scans/scan0001.pdf") -> None:
    claimed = cat.claim_next(row(cat, file_id).destination or "main", owner="n1", lease_seconds=60)
    assert claimed is not None and claimed.id == file_id
    cat.mark_uploaded(file_id, key=key, seconds=1.0, bytes_sent=claimed.size, detail="stored")


# ---------------------------------------------------------------- observe


def test_first_sight_creates_a_discovered_row_with_one_event(catalog: Catalog) -> None:
    seen = observe(catalog, "sub/scan0001.pdf", size=123, mtime_ns=456)
    assert seen.new and seen.state == S.DISCOVERED
    r = row(catalog, seen.file_id)
    assert (r.inbox, r.relpath, r.size, r.mtime_ns) == ("scans", "sub/scan0001.pdf", 123, 456)
    assert r.state == S.DISCOVERED and r.discovered_at == T0 and r.attempts == 0
    assert r.source_key == source_key("scans", "sub/scan0001.pdf")
    assert event_rows(catalog, seen.file_id) == [(None, "discovered", "discovered")]


def test_same_stat_again_is_the_same_row(catalog: Catalog) -> None:
    first = observe(catalog)
    again = observe(catalog)
    assert again == Seen(first.file_id, S.DISCOVERED, new=False)
    assert table_count(catalog, files) == 1
    assert len(event_rows(catalog, first.file_id)) == 1


def test_changed_stat_while_discovered_updates_the_row(catalog: Catalog, clock: FakeClock) -> None:
    first = observe(catalog, size=10, mtime_ns=1)
    clock.advance(3)
    again = observe(catalog, size=20, mtime_ns=2)
    assert again == Seen(first.file_id, S.DISCOVERED, new=False)
    r = row(catalog, first.file_id)
    assert (r.size, r.mtime_ns, r.updated_at) == (20, 2, T0 + 3)
    assert table_count(catalog, files) == 1


def test_changed_stat_while_queued_does_not_create_a_second_row(catalog: Catalog) -> None:
    file_id = new_queued(catalog, "scan0001.pdf")
    again = observe(catalog, size=999, mtime_ns=2)
    assert again == Seen(file_id, S.QUEUED, new=False)
    assert table_count(catalog, files) == 1


def test_unchanged_file_after_a_terminal_state_with_source_kept_is_not_taken_again(
    catalog: Catalog,
) -> None:
    file_id = new_queued(catalog, "scan0001.pdf")
    upload(catalog, file_id)
    catalog.confirm_post(file_id, post_path=None, source_gone=False)  # on_success = "keep"
    again = observe(catalog)
    assert again == Seen(file_id, S.UPLOADED, new=False)
    assert table_count(catalog, files) == 1


def test_unchanged_rejected_or_failed_file_left_in_place_is_not_taken_again(
    catalog: Catalog,
) -> None:
    rejected = observe(catalog, "bad.pdf").file_id
    catalog.reject(
        rejected,
        code="truncated",
        reason="no %%EOF",
        sha256=None,
        detected_type="pdf",
        size=100,
        mtime_ns=1,
    )
    failed = new_queued(catalog, "fails.pdf")
    fail(catalog, failed)
    assert observe(catalog, "bad.pdf") == Seen(rejected, S.REJECTED, new=False)
    assert observe(catalog, "fails.pdf") == Seen(failed, S.FAILED, new=False)


def test_changed_file_at_a_finished_path_is_a_new_row(catalog: Catalog) -> None:
    old = new_queued(catalog, "scan0001.pdf")
    upload(catalog, old)
    catalog.confirm_post(old, post_path=None, source_gone=False)
    seen = observe(catalog, size=200, mtime_ns=99)  # the scanner wrote scan0001.pdf again
    assert seen.new and seen.state == S.DISCOVERED and seen.file_id != old
    assert row(catalog, old).source_key is None, "the old row keeps its history, not the path"
    assert row(catalog, old).state == S.UPLOADED
    found = catalog.find_by_path("scans", "scan0001.pdf")
    assert found is not None and found.id == seen.file_id


def test_scanner_reusing_a_name_after_the_source_was_archived_is_a_new_row(
    catalog: Catalog, clock: FakeClock
) -> None:
    old = new_queued(catalog, "scan0001.pdf")
    upload(catalog, old)
    catalog.confirm_post(old, post_path="/archive/scan0001.pdf", source_gone=True)
    clock.advance(86_400)
    seen = observe(catalog)  # same name, even the same size and mtime, the next day
    assert seen.new and seen.file_id != old
    assert row(catalog, seen.file_id).discovered_at == T0 + 86_400


# ---------------------------------------------------------------- queue and dedup


def test_queue_records_the_hash_and_claims_the_fingerprint(catalog: Catalog) -> None:
    file_id = new_queued(catalog, "a.pdf")
    r = row(catalog, file_id)
    assert (r.state, r.sha256, r.destination, r.dedup_scope, r.queued_at) == (
        S.QUEUED,
        SHA_A,
        "main",
        "*",
        T0,
    )
    assert (r.detected_type, r.content_type) == ("pdf", "application/pdf")
    assert fingerprint_holder(catalog, "*", SHA_A) == file_id


def test_second_copy_becomes_duplicate_pointing_at_the_original(catalog: Catalog) -> None:
    original = new_queued(catalog, "a.pdf")
    copy = observe(catalog, "copy-of-a.pdf").file_id
    outcome = catalog.queue(
        copy,
        sha256=SHA_A,
        size=100,
        mtime_ns=1,
        detected_type="pdf",
        content_type="application/pdf",
        destination="main",
        dedup_scope="*",
    )
    assert (outcome.state, outcome.original_id, outcome.original_key) == (
        S.DUPLICATE,
        original,
        None,
    )
    r = row(catalog, copy)
    assert (r.state, r.original_id, r.reason_code) == (S.DUPLICATE, original, "duplicate")
    assert r.reason == f"same content as file {original}"
    assert fingerprint_holder(catalog, "*", SHA_A) == original


def test_copy_of_an_uploaded_file_names_the_original_key(catalog: Catalog) -> None:
    original = new_queued(catalog, "a.pdf")
    upload(catalog, original, key="scans/2024/a.pdf")
    copy = observe(catalog, "again.pdf").file_id
    outcome = catalog.queue(
        copy,
        sha256=SHA_A,
        size=100,
        mtime_ns=1,
        detected_type="pdf",
        content_type="application/pdf",
        destination="main",
        dedup_scope="*",
    )
    assert (outcome.state, outcome.original_id, outcome.original_key) == (
        S.DUPLICATE,
        original,
        "scans/2024/a.pdf",
    )
    assert row(catalog, copy).reason == f"same content as file {original} (scans/2024/a.pdf)"


def queue_together(cats: list[Catalog], ids: list[int], sha: str) -> dict[int, FileState]:
    """Queue ``ids[i]`` through ``cats[i]``, all threads released at the same instant."""
    barrier = threading.Barrier(len(ids))
    results: dict[int, FileState] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[ids[i]] = queue(cats[i], ids[i], sha)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(ids))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_two_copies_queued_at_the_same_time_from_two_threads(db_url: str) -> None:
    """Two intake threads (or nodes) with their own connections race on one content hash."""
    cats = []
    for _ in range(2):
        engine = db.make_engine(db_url)
        db.migrate(engine)
        cats.append(Catalog(engine))
    try:
        for attempt in range(10):
            sha = f"{attempt:064x}"
            ids = [observe(cats[0], f"race{attempt}-{i}.pdf").file_id for i in range(2)]
            results = queue_together(cats, ids, sha)
            assert sorted(results.values()) == sorted([S.QUEUED, S.DUPLICATE])
            winner = next(i for i, s in results.items() if s == S.QUEUED)
            loser = next(i for i, s in results.items() if s == S.DUPLICATE)
            assert row(cats[0], loser).original_id == winner
            assert fingerprint_holder(cats[0], "*", sha) == winner
    finally:
        for cat in cats:
            cat.close()


def test_global_scope_spans_inboxes(catalog: Catalog) -> None:
    a = observe(catalog, "x.pdf", inbox="a").file_id
    b = observe(catalog, "x.pdf", inbox="b").file_id
    assert queue(catalog, a, scope="*") == S.QUEUED
    assert queue(catalog, b, scope="*") == S.DUPLICATE


def test_inbox_scope_dedups_only_within_the_inbox(catalog: Catalog) -> None:
    a1 = observe(catalog, "x.pdf", inbox="a").file_id
    a2 = observe(catalog, "y.pdf", inbox="a").file_id
    b1 = observe(catalog, "x.pdf", inbox="b").file_id
    assert queue(catalog, a1, scope="inbox:a") == S.QUEUED
    assert queue(catalog, b1, scope="inbox:b") == S.QUEUED
    assert queue(catalog, a2, scope="inbox:a") == S.DUPLICATE
    assert row(catalog, a2).original_id == a1


def test_dedup_off_queues_every_copy_and_claims_nothing(catalog: Catalog) -> None:
    ids = [observe(catalog, f"x{i}.pdf").file_id for i in range(3)]
    assert [queue(catalog, i, scope=None) for i in ids] == [S.QUEUED] * 3
    assert table_count(catalog, fingerprints) == 0


def test_failed_releases_the_fingerprint_and_a_later_copy_is_queued(catalog: Catalog) -> None:
    first = new_queued(catalog, "a.pdf")
    fail(catalog, first)
    assert fingerprint_holder(catalog, "*", SHA_A) is None
    second = observe(catalog, "a-again.pdf").file_id
    assert queue(catalog, second) == S.QUEUED
    assert fingerprint_holder(catalog, "*", SHA_A) == second


def test_retry_of_a_failed_file_reclaims_its_fingerprint(catalog: Catalog) -> None:
    file_id = new_queued(catalog, "a.pdf")
    fail(catalog, file_id)
    assert catalog.retry(file_id) == S.QUEUED
    r = row(catalog, file_id)
    assert (r.state, r.attempts, r.reason_code, r.next_attempt_at) == (S.QUEUED, 0, None, None)
    assert fingerprint_holder(catalog, "*", SHA_A) == file_id
    copy = observe(catalog, "copy.pdf").file_id
    assert queue(catalog, copy) == S.DUPLICATE


def test_retry_becomes_duplicate_when_a_copy_was_uploaded_meanwhile(catalog: Catalog) -> None:
    first = new_queued(catalog, "a.pdf")
    fail(catalog, first)
    second = new_queued(catalog, "b.pdf")
    upload(catalog, second, key="k/b.pdf")
    assert catalog.retry(first) == S.DUPLICATE
    r = row(catalog, first)
    assert (r.state, r.original_id) == (S.DUPLICATE, second)
    assert fingerprint_holder(catalog, "*", SHA_A) == second


def test_retry_of_a_file_that_never_got_hashed_goes_back_to_intake(catalog: Catalog) -> None:
    file_id = observe(catalog).file_id
    catalog.transition(file_id, S.FAILED, code="unreadable", detail="EACCES")
    assert catalog.retry(file_id) == S.DISCOVERED


def test_retry_of_a_file_that_is_not_failed_is_stale(catalog: Catalog) -> None:
    file_id = new_queued(catalog, "a.pdf")
    with pytest.raises(StaleState):
        catalog.retry(file_id)
    assert row(catalog, file_id).state == S.QUEUED
    assert fingerprint_holder(catalog, "*", SHA_A) == file_id


# ---------------------------------------------------------------- transitions


def test_illegal_transition_raises_and_writes_nothing(catalog: Catalog, clock: FakeClock) -> None:
    file_id = new_queued(catalog, "a.pdf")
    upload(catalog, file_id)
    before = row(catalog, file_id)
    n_events = table_count(catalog, events)
    clock.advance(10)
    with pytest.raises(IllegalTransition):
        catalog.transition(file_id, S.QUEUED, code="x", values={"attempts": 99})
    assert row(catalog, file_id) == before
    assert table_count(catalog, events) == n_events


def test_queue_many_takes_a_batch_in_one_commit_and_skips_files_taken_meanwhile(
    catalog: Catalog,
) -> None:
    first, taken, copy = (observe(catalog, name).file_id for name in ("a.pdf", "b.pdf", "c.pdf"))
    catalog.reject(
        taken, code="empty", reason="empty", sha256=None, detected_type=None, size=0, mtime_ns=1
    )
    n_events = table_count(catalog, events)
    commits: list[object] = []
    event.listen(catalog.engine, "commit", commits.append)

    def hashed(file_id: int, sha: str) -> Hashed:
        return Hashed(file_id, sha, 100, 1, "pdf", "application/pdf", "main", "*")

    outcomes = catalog.queue_many([hashed(first, SHA_A), hashed(taken, SHA_B), hashed(copy, SHA_A)])
    assert len(commits) == 1
    assert outcomes == [QueueOutcome(S.QUEUED), None, QueueOutcome(S.DUPLICATE, first, None)]
    assert (row(catalog, first).state, row(catalog, copy).state) == (S.QUEUED, S.DUPLICATE)
    assert row(catalog, taken).state == S.REJECTED
    assert fingerprint_holder(catalog, "*", SHA_A) == first
    assert fingerprint_holder(catalog, "*", SHA_B) is None, "the skipped file claims nothing"
    assert table_count(catalog, events) == n_events + 2


def test_queueing_a_finished_file_raises_and_claims_no_fingerprint(catalog: Catalog) -> None:
    file_id = observe(catalog).file_id
    catalog.reject(
        file_id,
        code="empty",
        reason="empty",
        sha256=None,
        detected_type=None,
        size=0,
        mtime_ns=1,
    )
    n_events = table_count(catalog, events)
    with pytest.raises(StaleState):
        queue(catalog, file_id, SHA_B)
    assert fingerprint_holder(catalog, "*", SHA_B) is None
    assert table_count(catalog, events) == n_events
    assert row(catalog, file_id).sha256 is None


def test_transition_with_unexpected_state_is_stale_and_writes_nothing(catalog: Catalog) -> None:
    file_id = new_queued(catalog, "a.pdf")
    n_events = table_count(catalog, events)
    with pytest.raises(StaleState):
        catalog.transition(file_id, S.FAILED, expect={S.UPLOADING})
    assert row(catalog, file_id).state == S.QUEUED
    assert table_count(catalog, events) == n_events


def test_transition_of_an_unknown_file_raises_key_error(catalog: Catalog) -> None:
    with pytest.raises(KeyError):
        catalog.transition(12345, S.QUEUED)


def test_every_transition_writes_exactly_one_event_row(catalog: Catalog) -> None:
    file_id = observe(catalog).file_id  # -> discovered
    queue(catalog, file_id)  # -> queued
    catalog.claim_next("main", owner="n1", lease_seconds=60)  # -> uploading
    catalog.retry_later(  # -> queued
        file_id,
        code="file_error",
        error="reset",
        next_attempt_at=None,
        count_attempt=True,
        max_attempts=5,
    )
    catalog.claim_next("main", owner="n1", lease_seconds=60)  # -> uploading
    catalog.transition(file_id, S.DISCOVERED, code="changed")  # -> discovered
    queue(catalog, file_id)  # -> queued
    catalog.claim_next("main", owner="n1", lease_seconds=60)  # -> uploading
    catalog.mark_uploaded(file_id, key="k", seconds=1, bytes_sent=100, detail="ok")
    assert event_rows(catalog, file_id) == [
        (None, "discovered", "discovered"),
        ("discovered", "queued", "queued"),
        ("queued", "uploading", "claimed"),
        ("uploading", "queued", "file_error"),
        ("queued", "uploading", "claimed"),
        ("uploading", "discovered", "changed"),
        ("discovered", "queued", "queued"),
        ("queued", "uploading", "claimed"),
        ("uploading", "uploaded", "uploaded"),
    ]
    assert row(catalog, file_id).finished_at == T0


def test_terminal_transitions_clear_the_lease(catalog: Catalog) -> None:
    file_id = new_queued(catalog, "a.pdf")
    claimed = catalog.claim_next("main", owner="n1", lease_seconds=60)
    assert claimed is not None and claimed.lease_owner == "n1"
    catalog.mark_uploaded(file_id, key="k", seconds=1, bytes_sent=1, detail="ok")
    r = row(catalog, file_id)
    assert (r.lease_owner, r.lease_expires) == (None, None)


# ---------------------------------------------------------------- upload lane


def retry_in_30s(cat: Catalog, file_id: int) -> None:
    """The claimed ``file_id`` failed and waits for a retry 30 s after T0."""
    cat.retry_later(
        file_id,
        code="file_error",
        error="x",
        next_attempt_at=T0 + 30,
        count_attempt=True,
        max_attempts=5,
    )


def test_claim_next_takes_the_oldest_due_file_of_its_destination_only(
    catalog: Catalog, clock: FakeClock
) -> None:
    other = new_queued(catalog, "other.pdf", SHA_B, dest="backup")
    first = new_queued(catalog, "first.pdf", "1" * 64)
    second = new_queued(catalog, "second.pdf", "2" * 64)
    # first is waiting for a retry in 30 s: not due yet
    catalog.claim_next("main", owner="n1", lease_seconds=60)
    retry_in_30s(catalog, first)
    claimed = catalog.claim_next("main", owner="n1", lease_seconds=60)
    assert claimed is not None and claimed.id == second
    assert catalog.claim_next("main", owner="n1", lease_seconds=60) is None, "first is not due"
    clock.advance(30)
    claimed = catalog.claim_next("main", owner="n1", lease_seconds=60)
    assert claimed is not None and claimed.id == first
    assert catalog.claim_next("main", owner="n1", lease_seconds=60) is None
    assert row(catalog, other).state == S.QUEUED, "another destination's file is not touched"
    backup = catalog.claim_next("backup", owner="n1", lease_seconds=60)
    assert backup is not None and backup.id == other


def test_lane_poll_tells_when_the_next_file_of_the_lane_is_due(
    catalog: Catalog, clock: FakeClock
) -> None:
    assert lane_poll(catalog.engine, "main") == (False, None), "nothing queued"
    new_queued(catalog, "other.pdf", SHA_B, dest="backup")
    assert lane_poll(catalog.engine, "main") == (False, None), "another lane's file"
    first = new_queued(catalog, "first.pdf", "1" * 64)
    assert lane_poll(catalog.engine, "main") == (False, 0.0), "due now"
    catalog.claim_next("main", owner="n1", lease_seconds=60)
    retry_in_30s(catalog, first)
    assert lane_poll(catalog.engine, "main") == (False, T0 + 30), "the retry's time"
    catalog.set_paused(["main"], True)
    assert lane_poll(catalog.engine, "main") == (True, T0 + 30)


def test_claim_next_sets_the_lease_and_the_lane_current_file(catalog: Catalog) -> None:
    assert catalog.acquire_lane("main", owner="n1", lease_seconds=60)
    file_id = new_queued(catalog, "a.pdf")
    claimed = catalog.claim_next("main", owner="n1", lease_seconds=45)
    assert claimed is not None
    assert (claimed.state, claimed.lease_owner, claimed.lease_expires, claimed.started_at) == (
        S.UPLOADING,
        "n1",
        T0 + 45,
        T0,
    )
    with db.read_tx(catalog.engine) as conn:
        current = conn.execute(
            select(lanes.c.current_file_id).where(lanes.c.destination == "main")
        ).scalar_one()
    assert current == file_id


def test_claim_next_records_the_planned_key_and_hands_out_the_row_as_stored(
    catalog: Catalog, clock: FakeClock
) -> None:
    planned = new_queued(catalog, "a.pdf", md5="a" * 32)
    replanned = new_queued(catalog, "b.pdf", SHA_B)
    catalog.plan_key(replanned, "kept/b.pdf")  # an earlier attempt's key is not planned anew
    clock.advance(5)
    seen: list[str] = []

    def plan(r: FileRow) -> str:
        seen.append(r.relpath)
        return f"planned/{r.relpath}"

    first = catalog.claim_next("main", owner="n1", lease_seconds=45, plan=plan)
    second = catalog.claim_next("main", owner="n1", lease_seconds=45, plan=plan)
    assert first is not None and second is not None
    assert (first.key, second.key, seen) == ("planned/a.pdf", "kept/b.pdf", ["a.pdf"])
    # The claim builds the row it returns instead of reading it back: it must be the stored one.
    assert first == row(catalog, planned)
    assert second == row(catalog, replanned)
    assert first.updated_at == T0 + 5
    assert (first.md5, second.md5) == ("a" * 32, None)  # the upload sends it as Content-MD5


def test_acquire_lane_excludes_a_second_owner_until_the_lease_expires(
    catalog: Catalog, clock: FakeClock
) -> None:
    assert catalog.acquire_lane("main", owner="node-a", lease_seconds=60)
    assert not catalog.acquire_lane("main", owner="node-b", lease_seconds=60)
    clock.advance(59)
    assert catalog.acquire_lane("main", owner="node-a", lease_seconds=60), "renewal"
    clock.advance(59)
    assert not catalog.acquire_lane("main", owner="node-b", lease_seconds=60)
    clock.advance(2)  # node-a stopped renewing 61 s ago
    assert catalog.acquire_lane("main", owner="node-b", lease_seconds=60)
    assert not catalog.acquire_lane("main", owner="node-a", lease_seconds=60)
    assert catalog.acquire_lane("other", owner="node-a", lease_seconds=60), "lanes are separate"


def test_release_lane_lets_another_owner_in_at_once(catalog: Catalog) -> None:
    assert catalog.acquire_lane("main", owner="node-a", lease_seconds=60)
    catalog.release_lane("main", owner="node-b")  # not the owner: no effect
    assert not catalog.acquire_lane("main", owner="node-b", lease_seconds=60)
    catalog.release_lane("main", owner="node-a")
    assert catalog.acquire_lane("main", owner="node-b", lease_seconds=60)


def test_renew_extends_only_our_own_lease(catalog: Catalog, clock: FakeClock) -> None:
    file_id = new_queued(catalog, "a.pdf")
    catalog.claim_next("main", owner="n1", lease_seconds=60)
    clock.advance(30)
    assert catalog.renew(file_id, owner="n1", lease_seconds=60, bytes_sent=40)
    r = row(catalog, file_id)
    assert (r.lease_expires, r.bytes_sent) == (T0 + 90, 40)
    assert not catalog.renew(file_id, owner="n2", lease_seconds=60, bytes_sent=99)
    assert row(catalog, file_id).bytes_sent == 40


def test_reclaim_expired_requeues_lost_and_own_uploads_but_not_live_ones(
    catalog: Catalog, clock: FakeClock
) -> None:
    ids = [new_queued(catalog, f"f{i}.pdf", f"{i}" * 64) for i in range(3)]
    catalog.claim_next("main", owner="crashed", lease_seconds=10)  # ids[0]: lease will expire
    catalog.claim_next("main", owner="me", lease_seconds=1000)  # ids[1]: mine, before a restart
    catalog.claim_next("main", owner="alive", lease_seconds=1000)  # ids[2]: another live node
    catalog.upload_started(ids[0], key="k0", upload_id="U0", part_size=5 << 20)
    catalog.part_done(ids[0], "U0", PartRecord(1, 5 << 20, '"etag1"', "0" * 32))
    clock.advance(11)
    assert sorted(catalog.reclaim_expired(owner="me")) == [ids[0], ids[1]]
    assert [row(catalog, i).state for i in ids] == [S.QUEUED, S.QUEUED, S.UPLOADING]
    assert row(catalog, ids[0]).lease_owner is None
    # the recorded multipart upload is kept so the next claim resumes it
    assert row(catalog, ids[0]).upload_id == "U0"
    assert catalog.parts(ids[0]) == {1: PartRecord(1, 5 << 20, '"etag1"', "0" * 32)}
    assert event_rows(catalog, ids[0])[-1] == ("uploading", "queued", "resumed")
    assert catalog.reclaim_expired(owner="me") == []


def test_retry_later_counts_attempts_and_fails_at_max_attempts(
    catalog: Catalog, clock: FakeClock
) -> None:
    file_id = new_queued(catalog, "a.pdf")
    for attempt in (1, 2):
        catalog.claim_next("main", owner="n1", lease_seconds=60)
        state = catalog.retry_later(
            file_id,
            code="file_error",
            error=f"try {attempt}",
            next_attempt_at=clock() + 5,
            count_attempt=True,
            max_attempts=3,
        )
        assert state == S.QUEUED
        r = row(catalog, file_id)
        assert (r.attempts, r.next_attempt_at, r.reason) == (attempt, clock() + 5, f"try {attempt}")
        assert r.lease_owner is None
        clock.advance(5)
    catalog.claim_next("main", owner="n1", lease_seconds=60)
    state = catalog.retry_later(
        file_id,
        code="file_error",
        error="try 3",
        next_attempt_at=clock() + 5,
        count_attempt=True,
        max_attempts=3,
    )
    assert state == S.FAILED
    r = row(catalog, file_id)
    assert (r.state, r.attempts, r.reason_code, r.finished_at) == (
        S.FAILED,
        3,
        "file_error",
        clock(),
    )
    assert event_rows(catalog, file_id)[-1] == ("uploading", "failed", "file_error")


def test_retry_later_without_counting_never_fails_the_file(catalog: Catalog) -> None:
    file_id = new_queued(catalog, "a.pdf")
    for _ in range(5):
        catalog.claim_next("main", owner="n1", lease_seconds=60)
        state = catalog.retry_later(
            file_id,
            code="destination_down",
            error="refused",
            next_attempt_at=None,
            count_attempt=False,
            max_attempts=1,
        )
        assert state == S.QUEUED
    assert row(catalog, file_id).attempts == 0


def test_retry_later_after_another_node_reclaimed_the_file_is_stale(
    catalog: Catalog, clock: FakeClock
) -> None:
    file_id = new_queued(catalog, "a.pdf")
    catalog.claim_next("main", owner="slow-node", lease_seconds=10)
    clock.advance(11)
    assert catalog.reclaim_expired(owner="other-node") == [file_id]
    with pytest.raises(StaleState):
        catalog.retry_later(
            file_id,
            code="interrupted",
            error="stopping",
            next_attempt_at=None,
            count_attempt=False,
            max_attempts=8,
        )


def test_retry_later_by_a_node_that_lost_its_lease_leaves_the_new_owner_alone(
    catalog: Catalog, clock: FakeClock
) -> None:
    file_id = new_queued(catalog, "a.pdf")
    catalog.claim_next("main", owner="slow-node", lease_seconds=10)
    clock.advance(11)
    catalog.reclaim_expired(owner="other-node")
    claimed = catalog.claim_next("main", owner="other-node", lease_seconds=60)
    assert claimed is not None and claimed.id == file_id
    with pytest.raises(StaleState):
        catalog.retry_later(
            file_id,
            code="file_error",
            error="late",
            next_attempt_at=None,
            count_attempt=True,
            max_attempts=8,
            owner="slow-node",
        )
    r = row(catalog, file_id)
    assert (r.state, r.lease_owner) == (S.UPLOADING, "other-node")


def test_request_cancel_of_a_queued_file_cancels_it_at_once(catalog: Catalog) -> None:
    file_id = new_queued(catalog, "a.pdf")
    assert catalog.request_cancel(file_id) == S.QUEUED
    r = row(catalog, file_id)
    assert (r.state, r.reason_code, r.post_done) == (S.CANCELLED, "cancelled", True)
    assert fingerprint_holder(catalog, "*", SHA_A) is None
    assert catalog.claim_next("main", owner="n1", lease_seconds=60) is None
    assert observe(catalog, "a.pdf") == Seen(file_id, S.CANCELLED, new=False)


def test_request_cancel_of_an_uploading_file_only_flags_it(catalog: Catalog) -> None:
    file_id = new_queued(catalog, "a.pdf")
    catalog.claim_next("main", owner="n1", lease_seconds=60)
    n_events = len(event_rows(catalog, file_id))
    assert catalog.request_cancel(file_id) == S.UPLOADING
    r = row(catalog, file_id)
    assert (r.state, r.cancel_requested) == (S.UPLOADING, True)
    assert len(event_rows(catalog, file_id)) == n_events
    assert fingerprint_holder(catalog, "*", SHA_A) == file_id


def test_request_cancel_of_an_unknown_file(catalog: Catalog) -> None:
    with pytest.raises(KeyError):
        catalog.request_cancel(999)


def test_drop_vanished_cancels_and_frees_the_path(catalog: Catalog) -> None:
    file_id = observe(catalog).file_id
    catalog.drop_vanished(file_id, detail="gone before it settled")
    r = row(catalog, file_id)
    assert (r.state, r.reason_code, r.post_done, r.source_key) == (
        S.CANCELLED,
        "vanished",
        True,
        None,
    )
    assert observe(catalog).new, "a file appearing again at the path is taken in again"


def test_mark_uploaded_records_the_key_on_the_fingerprint_and_forgets_parts(
    catalog: Catalog,
) -> None:
    file_id = new_queued(catalog, "a.pdf")
    catalog.claim_next("main", owner="n1", lease_seconds=60)
    catalog.plan_key(file_id, "k/a.pdf")
    catalog.upload_started(file_id, key="k/a.pdf", upload_id="U", part_size=5 << 20)
    catalog.part_done(file_id, "U", PartRecord(1, 5, "e", "m" * 32))
    catalog.mark_uploaded(file_id, key="k/a.pdf", seconds=2.5, bytes_sent=100, detail="ok")
    r = row(catalog, file_id)
    assert (r.state, r.key, r.upload_id, r.upload_seconds) == (S.UPLOADED, "k/a.pdf", None, 2.5)
    assert catalog.parts(file_id) == {}
    with db.read_tx(catalog.engine) as conn:
        key = conn.execute(
            select(fingerprints.c.key).where(fingerprints.c.file_id == file_id)
        ).scalar_one()
    assert key == "k/a.pdf"


def test_a_multipart_creation_is_unrecorded_until_its_upload_id_is(catalog: Catalog) -> None:
    """The intent committed before CreateMultipartUpload, and whether its answer was recorded:
    read in the order written, not by the clock (a clock set back must not hide a stray)."""
    file_id = new_queued(catalog, "a.pdf")
    catalog.claim_next("main", owner="n1", lease_seconds=60)
    assert not catalog.creation_unrecorded(file_id)
    catalog.upload_creating(file_id)
    assert catalog.creation_unrecorded(file_id)
    catalog.upload_started(file_id, key="k/a.pdf", upload_id="U", part_size=5 << 20)
    assert not catalog.creation_unrecorded(file_id)
    catalog.forget_upload(file_id)
    catalog.upload_creating(file_id)
    with db.write_tx(catalog.engine) as conn:  # the clock went back since the last start
        conn.execute(update(events).where(events.c.file_id == file_id).values(at=1.0))
    assert catalog.creation_unrecorded(file_id)


def test_pending_post_lists_finished_rows_until_their_post_action_is_confirmed(
    catalog: Catalog,
) -> None:
    uploaded = new_queued(catalog, "a.pdf")
    upload(catalog, uploaded)
    dup = observe(catalog, "dup.pdf").file_id
    queue(catalog, dup)
    waiting = new_queued(catalog, "w.pdf", SHA_B)
    assert [r.id for r in catalog.pending_post()] == [uploaded, dup]
    assert catalog.outstanding_count() == 3
    catalog.plan_post(uploaded, "/archive/a.pdf")
    assert row(catalog, uploaded).post_path == "/archive/a.pdf"
    catalog.confirm_post(uploaded, post_path="/archive/a.pdf", source_gone=True)
    assert [r.id for r in catalog.pending_post()] == [dup]
    assert event_rows(catalog, uploaded)[-1] == (None, None, "post_action")
    assert row(catalog, waiting).state == S.QUEUED
    assert catalog.outstanding_count(["scans"]) == 2
    assert catalog.outstanding_count(["elsewhere"]) == 0


def test_counts_and_listing_agree(catalog: Catalog) -> None:
    a = new_queued(catalog, "a.pdf")
    observe(catalog, "b.pdf")
    upload(catalog, a)
    expected = {s.value: 0 for s in FileState} | {"uploaded": 1, "discovered": 1}
    assert catalog.counts() == expected
    assert counts(catalog.engine) == expected
    assert [f["path"] for f in list_files(catalog.engine, states=["uploaded"])] == ["a.pdf"]


def test_status_reads_what_the_catalog_wrote(
    catalog: Catalog, db_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """``status`` reads through the DBAPI reader, beside the daemon's SQLAlchemy engine."""
    up = new_queued(catalog, "up.pdf")
    upload(catalog, up)
    bad = new_queued(catalog, "bad.pdf", SHA_B)
    fail(catalog, bad)
    waiting = new_queued(catalog, "waiting.pdf", "c" * 64)
    assert catalog.claim_next("main", owner="n1", lease_seconds=60) is not None
    catalog.renew(waiting, owner="n1", lease_seconds=60, bytes_sent=40)
    new_queued(catalog, "later.pdf", "d" * 64)
    catalog.acquire_lane("main", owner="n1", lease_seconds=60)
    catalog.heartbeat(node="n1", pid=42, host="h1", version="0.1", started_at=clock.now - 60)
    settings = Settings(
        state_dir=tmp_path,
        catalog_url=db_url,
        destinations={"main": {"type": "directory", "path": str(tmp_path / "store")}},
        inboxes=[{"name": "scans", "path": str(tmp_path / "in"), "destination": "main"}],
    )
    with open_reader(db_url) as reader:
        data = status.collect(reader, settings, now=clock.now + 1)
    assert data["counts"] == counts(catalog.engine)
    assert data["inboxes"]["scans"] == data["counts"]
    assert data["daemon"]["running"] and data["daemon"]["nodes"][0]["pid"] == 42
    current = data["destinations"]["main"]["current"]
    assert (current["id"], current["bytes_sent"], current["size"]) == (waiting, 40, 100)
    assert data["queue"]["files"] == 2 and data["queue"]["bytes"] == 60 + 100
    assert data["queue"]["throughput_bytes_per_second"] == 100 / status.THROUGHPUT_WINDOW_SECONDS
    assert [(p["id"], p["state"], p["reason_code"]) for p in data["recent_problems"]] == [
        (bad, "failed", "file_error")
    ]


def test_status_shows_each_destinations_key_check(
    catalog: Catalog, db_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """What the daemon decided at start (conditional PUTs or a HEAD, and why) is on the lane
    row, shown masked; a destination no daemon has decided for shows null."""
    catalog.record_key_check("main", conditional=True, reason="probe: refused (HTTP 412)")
    catalog.record_key_check("other", conditional=True, reason="first")
    leaked = "probe failed: PutObject: http://ingestd:hunter2@s3.example/ refused"
    catalog.record_key_check("other", conditional=False, reason=leaked)  # a later start
    settings = Settings(
        state_dir=tmp_path,
        catalog_url=db_url,
        destinations={
            name: {"type": "directory", "path": str(tmp_path / name)}
            for name in ("main", "other", "new")
        },
        inboxes=[],
    )
    with open_reader(db_url) as reader:
        shown = status.collect(reader, settings, now=clock.now)["destinations"]
    main = shown["main"]["conditional_writes"]
    assert main == {"on": True, "reason": "probe: refused (HTTP 412)"}
    other = shown["other"]["conditional_writes"]
    assert other["on"] is False and "hunter2" not in other["reason"]
    assert other["reason"].startswith("probe failed: PutObject: http://ingestd:")
    assert shown["new"]["conditional_writes"] is None
    assert shown["main"]["up"] is True  # the lane row it made is an ordinary one


def test_reader_reads_sqlite_urls_as_sqlalchemy_does(tmp_path: Path) -> None:
    for url in (
        "sqlite:///relative/catalog.db",
        f"sqlite:///{tmp_path / 'a b' / 'catalog.db'}",
        "sqlite:////srv/state/a%20b.db",
        "sqlite:////srv/state/catalog.db?timeout=5",
        "sqlite+pysqlite:////srv/catalog.db",
    ):
        assert sqlite_path(url) == make_url(url).database, url
    assert sqlite_path("postgresql://u:p@db/ingestd") is None
    with pytest.raises(ValueError, match="in-memory"):
        sqlite_path("sqlite://")


def test_reader_refuses_what_status_cannot_read(db_url: str, tmp_path: Path) -> None:
    from ingestd.errors import CatalogMissing, CatalogOutdated

    with pytest.raises(CatalogMissing, match=r"no catalog at .*absent\.db"):
        open_reader(f"sqlite:///{tmp_path / 'absent.db'}")
    with pytest.raises(ValueError, match="must be sqlite"):
        open_reader("mysql://u:p@db/ingestd")
    engine = db.make_engine(db_url)
    Path(str(engine.url.database)).parent.mkdir(parents=True)
    (tmp_path / "state" / "catalog.db").touch()  # there, but never migrated
    with pytest.raises(CatalogOutdated, match="at revision none"):
        open_reader(db_url)
    migrate_to(engine, "0005")
    with pytest.raises(CatalogOutdated, match=r"at revision 0005, .* restart the daemon"):
        open_reader(db_url)
    db.migrate(engine)
    engine.dispose()
    with open_reader(db_url) as reader, pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.rows("DELETE FROM files")  # query_only: status never writes


def test_a_late_sighting_of_a_finished_file_leaves_no_cancelled_row(
    catalog: Catalog, clock: FakeClock
) -> None:
    """Another node listed the file just before this one uploaded it and moved it away: the
    row made for that sighting is deleted when the file is found gone, not kept as a
    cancelled file that never was (seen with two nodes: 40 uploaded and 1 cancelled)."""
    done = new_queued(catalog, "scan.pdf")
    upload(catalog, done)
    catalog.confirm_post(done, post_path="/archive/scan.pdf", source_gone=True)
    late = observe(catalog, "scan.pdf")  # same size and mtime as the file just archived
    assert late.new and late.file_id != done
    assert catalog.drop_vanished(late.file_id, detail="scan.pdf disappeared") is False
    assert catalog.get(late.file_id) is None and event_rows(catalog, late.file_id) == []
    assert counts(catalog.engine) == {s.value: 0 for s in FileState} | {"uploaded": 1}
    assert kept_totals(catalog) == truth(catalog)
    # A file that appears and vanishes on its own is still recorded, as is another file
    # (another size) at the same path, and the same file seen long after.
    for relpath, size, wait in (("scan.tmp", 100, 0), ("scan.pdf", 200, 0), ("scan.pdf", 100, 121)):
        clock.advance(wait)
        seen = observe(catalog, relpath, size=size)
        assert catalog.drop_vanished(seen.file_id, detail="gone") is True
        assert row(catalog, seen.file_id).state == S.CANCELLED


def truth(cat: Catalog) -> dict[tuple[str, str], tuple[int, int]]:
    """Files and bytes per (inbox, state), counted from the rows themselves."""
    query = select(files.c.inbox, files.c.state, func.count(), func.sum(files.c.size)).group_by(
        files.c.inbox, files.c.state
    )
    with db.read_tx(cat.engine) as conn:
        return {(i, s): (int(n), int(b)) for i, s, n, b in conn.execute(query)}


def kept_totals(cat: Catalog) -> dict[tuple[str, str], tuple[int, int]]:
    with db.read_tx(cat.engine) as conn:
        return {(t.inbox, t.state): (t.files, t.bytes) for t in totals(conn)}


def test_file_totals_follow_every_change(catalog: Catalog, clock: FakeClock) -> None:
    """Inserts, state changes, size changes and deletes all move the kept totals, whichever
    code path makes them (triggers, migration 0006)."""
    a = new_queued(catalog, "a.pdf")
    observe(catalog, "a-copy.pdf", inbox="other", size=100)
    grown = observe(catalog, "growing.pdf", size=10).file_id
    observe(catalog, "growing.pdf", size=5000, mtime_ns=2)  # still settling: same row, new size
    dup = observe(catalog, "dup.pdf").file_id
    queue(catalog, dup)  # same content as a: duplicate
    upload(catalog, a)
    f = new_queued(catalog, "f.pdf", SHA_B)
    fail(catalog, f)
    assert kept_totals(catalog) == truth(catalog)
    catalog.retry(f)
    cancelled = new_queued(catalog, "c.pdf", "c" * 64)
    catalog.request_cancel(cancelled)
    assert kept_totals(catalog) == truth(catalog)
    assert row(catalog, grown).size == 5000
    assert kept_totals(catalog)[("scans", "discovered")] == (1, 5000)
    for done in (a, dup, cancelled):
        catalog.confirm_post(done, post_path=None, source_gone=True)
    clock.advance(40 * 86400)
    assert housekeeping.retention(catalog.engine, days=30, now=clock.now) > 0
    assert kept_totals(catalog) == truth(catalog)
    assert counts(catalog.engine, inbox="other") == {s.value: 0 for s in FileState} | {
        "discovered": 1
    }


def test_migration_counts_the_rows_already_there(db_url: str) -> None:
    """A catalog upgraded to 0006 starts with totals of the rows it already holds."""
    engine = db.make_engine(db_url)
    Path(str(engine.url.database)).parent.mkdir(parents=True)
    migrate_to(engine, "0005")
    states = ["uploaded", "queued", "queued", "queued", "queued"]
    insert_old_files(engine, [("scans", f"old{i}.pdf", 100, s) for i, s in enumerate(states)])
    cat = Catalog(engine)
    try:
        db.migrate(engine)
        expected = {("scans", "queued"): (4, 400), ("scans", "uploaded"): (1, 100)}
        assert kept_totals(cat) == truth(cat) == expected
        new_queued(cat, "new.pdf", "e" * 64)  # and the triggers run from then on
        assert kept_totals(cat)[("scans", "queued")] == (5, 500)
    finally:
        cat.close()


# ---------------------------------------------------------------- concurrency


def test_concurrent_writers_never_see_database_is_locked(db_url: str) -> None:
    """4 threads x 200 writes, each thread with its own engine (like the daemon and the CLI)."""
    engine = db.make_engine(db_url)
    db.migrate(engine)
    engine.dispose()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(n: int) -> None:
        cat = Catalog(db.make_engine(db_url))
        try:
            start.wait()
            for i in range(100):  # two writes per file: observe, then queue
                file_id = observe(cat, f"t{n}/f{i}.pdf", inbox=f"in{n}").file_id
                queue(cat, file_id, f"{n:02d}{i:062d}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            cat.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, [str(e) for e in errors]
    cat = Catalog(db.make_engine(db_url))
    try:
        assert cat.counts()["queued"] == 400
        assert table_count(cat, events) == 800
        assert table_count(cat, fingerprints) == 400
    finally:
        cat.close()


# ---------------------------------------------------------------- schema


def test_fresh_catalog_is_at_the_head_revision(catalog: Catalog) -> None:
    current, head = db.schema_status(catalog.engine)
    versions = Path(db.MIGRATIONS, "versions")
    newest = max(p.name.split("_", 1)[0] for p in versions.glob("[0-9]*_*.py"))
    assert head == newest
    assert current == head


def test_migrate_is_idempotent(catalog: Catalog) -> None:
    file_id = observe(catalog).file_id
    db.migrate(catalog.engine)
    assert row(catalog, file_id).state == S.DISCOVERED


def test_sqlite_runs_in_wal_mode(catalog: Catalog) -> None:
    with catalog.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_models_match_the_migration(catalog: Catalog) -> None:
    with catalog.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []


HOT_STATEMENTS = {
    name: value
    for name, value in vars(stmts).items()
    if name.isupper() and isinstance(value, ClauseElement)
}


@pytest.mark.parametrize("name", sorted(HOT_STATEMENTS))
def test_per_file_statements_find_their_rows_by_an_index(catalog: Catalog, name: str) -> None:
    """The prebuilt statements run once or more per file; a table scan in one of them grows
    with the catalog's age (fingerprints outlive retention: 90 ms per upload at 1,000,000)."""
    compiled = HOT_STATEMENTS[name].compile(dialect=catalog.engine.dialect)
    params = tuple(0 for _ in compiled.positiontup or ())
    with catalog.engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
    scans = [step.detail for step in plan if step.detail.startswith("SCAN ")]
    assert scans in ([], ["SCAN CONSTANT ROW"]), plan


def test_server_defaults_match_the_migration(catalog: Catalog) -> None:
    # alembic's compare_server_default misreads SQLite's reflected '' as a difference, so the
    # defaults are compared here directly: reflected text, quotes stripped, against the models.
    inspector = inspect(catalog.engine)
    for table in metadata.sorted_tables:
        reflected = {c["name"]: c["default"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            default = column.server_default
            expected = None if default is None else str(default.arg)  # type: ignore[attr-defined]
            got = reflected[column.name]
            assert (got.strip("'") if got is not None else None) == expected, (
                f"{table.name}.{column.name}"
            )


def test_catalog_open_creates_and_migrates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'catalog.db'}"
    cat = Catalog.open(url)
    try:
        current, head = db.schema_status(cat.engine)
        assert current == head
    finally:
        cat.close()


def test_catalog_open_without_migrate_refuses_a_missing_file(tmp_path: Path) -> None:
    from ingestd.errors import CatalogMissing

    with pytest.raises(CatalogMissing, match="no catalog at"):
        Catalog.open(f"sqlite:///{tmp_path / 'absent.db'}", migrate=False)


def test_head_revision_constant_is_the_newest_migration(catalog: Catalog) -> None:
    assert db.schema_status(catalog.engine) == (revision.HEAD_REVISION, revision.HEAD_REVISION)


def test_commands_refuse_a_catalog_the_daemon_has_not_migrated_yet(db_url: str) -> None:
    """After an upgrade, ``status`` run before the daemon restarted says what to do instead of
    failing on a table the new version reads."""
    from ingestd.errors import CatalogOutdated

    engine = db.make_engine(db_url)
    Path(str(engine.url.database)).parent.mkdir(parents=True)
    migrate_to(engine, "0005")
    engine.dispose()
    with pytest.raises(CatalogOutdated, match=r"at revision 0005, .* restart the daemon"):
        Catalog.open(db_url, migrate=False)
    Catalog.open(db_url).close()  # the daemon's open migrates
    Catalog.open(db_url, migrate=False).close()


# ----------------------------------------------------------------- notifications with transitions


def failure_notice(seen: list[FileRow]) -> Notice:
    """The daemon's file_failed notice, remembering the rows it was shown."""

    def notice(r: FileRow) -> tuple[str, dict[str, object]]:
        seen.append(r)
        return "file_failed", on_failure(r, node="n1", at=T0)

    return notice


def test_a_failure_and_its_webhook_outbox_row_commit_in_one_transaction(
    catalog: Catalog, clock: FakeClock
) -> None:
    file_id = new_queued(catalog, "a.pdf")
    catalog.claim_next("main", owner="n1", lease_seconds=60)
    shown: list[FileRow] = []
    state = catalog.retry_later(
        file_id,
        code="file_error",
        error="unreadable",
        next_attempt_at=clock() + 5,
        count_attempt=True,
        max_attempts=1,
        owner="n1",
        notice=failure_notice(shown),
    )
    assert state == S.FAILED
    # The notice saw the row as the failure left it, and its outbox row is committed already:
    # nothing ran between the transition and this read (no worker, no second commit).
    assert [(r.state, r.attempts) for r in shown] == [(S.FAILED, 1)]
    (item,) = CatalogOutbox(catalog.engine, clock=clock).due(clock(), limit=10)
    assert item.event == "file_failed"
    assert item.payload["id"] == f"file_failed:{file_id}:1"
    assert item.payload["file"]["state"] == "failed"


def test_a_notice_that_cannot_be_written_rolls_the_failure_back(catalog: Catalog) -> None:
    """One transaction: no failure is committed without its notification."""
    file_id = new_queued(catalog, "a.pdf")
    catalog.claim_next("main", owner="n1", lease_seconds=60)

    def broken(r: FileRow) -> tuple[str, dict[str, object]]:
        raise RuntimeError("payload cannot be built")

    with pytest.raises(RuntimeError):
        catalog.retry_later(
            file_id,
            code="file_error",
            error="unreadable",
            next_attempt_at=None,
            count_attempt=True,
            max_attempts=1,
            notice=broken,
        )
    assert row(catalog, file_id).state == S.UPLOADING
    assert CatalogOutbox(catalog.engine).pending() == 0


def test_a_retry_that_is_not_a_failure_writes_no_notification(catalog: Catalog) -> None:
    file_id = new_queued(catalog, "a.pdf")
    catalog.claim_next("main", owner="n1", lease_seconds=60)
    shown: list[FileRow] = []
    state = catalog.retry_later(
        file_id,
        code="file_error",
        error="try 1",
        next_attempt_at=None,
        count_attempt=True,
        max_attempts=3,
        notice=failure_notice(shown),
    )
    assert state == S.QUEUED
    assert shown == []
    assert CatalogOutbox(catalog.engine).pending() == 0


def test_a_rejection_and_its_webhook_outbox_row_commit_together(
    catalog: Catalog, clock: FakeClock
) -> None:
    seen = observe(catalog, "bad.exe")
    shown: list[FileRow] = []
    catalog.reject(
        seen.file_id,
        code="type_not_allowed",
        reason="not allowed",
        sha256=SHA_A,
        detected_type="exe",
        size=100,
        mtime_ns=1,
        notice=failure_notice(shown),
    )
    assert [r.state for r in shown] == [S.REJECTED]
    (item,) = CatalogOutbox(catalog.engine, clock=clock).due(clock(), limit=10)
    assert item.payload["id"] == f"file_failed:{seen.file_id}:0"
    assert item.payload["file"]["reason_code"] == "type_not_allowed"


def test_a_notice_already_in_the_outbox_does_not_undo_the_transition(catalog: Catalog) -> None:
    """The same notification twice (same id): the outbox keeps one, the failure still commits."""
    outbox = CatalogOutbox(catalog.engine)
    file_id = new_queued(catalog, "a.pdf")
    catalog.claim_next("main", owner="n1", lease_seconds=60)
    assert outbox.enqueue("file_failed", {"id": f"file_failed:{file_id}:1"}) is not None
    state = catalog.retry_later(
        file_id,
        code="file_error",
        error="unreadable",
        next_attempt_at=None,
        count_attempt=True,
        max_attempts=1,
        notice=failure_notice([]),
    )
    assert state == S.FAILED
    assert row(catalog, file_id).state == S.FAILED
    assert outbox.pending() == 1


# ---------------------------------------------------------------- names that are not UTF-8


def test_a_name_that_is_not_utf8_is_stored_and_read_back_exactly(catalog: Catalog) -> None:
    latin1 = os.fsdecode(b"old/caf\xe9.pdf")
    seen = observe(catalog, latin1)
    look_alike = observe(catalog, "old/caf%E9.pdf")  # valid UTF-8, the escaped form's text
    assert seen.new and look_alike.new and seen.file_id != look_alike.file_id
    r = row(catalog, seen.file_id)
    assert r.relpath == latin1 and os.fsencode(r.relpath) == b"old/caf\xe9.pdf"
    assert r.source_key == source_key("scans", latin1)
    assert row(catalog, look_alike.file_id).relpath == "old/caf%E9.pdf"
    assert observe(catalog, latin1) == Seen(seen.file_id, S.DISCOVERED, new=False)
    with catalog.engine.connect() as conn:  # what the column holds: UTF-8 text
        stored = conn.exec_driver_sql("SELECT relpath FROM files ORDER BY id").scalars().all()
    assert stored == [names.MARK + "old/caf%E9.pdf", "old/caf%E9.pdf"]
    listed = [f["path"] for f in list_files(catalog.engine, inbox="scans")]
    assert listed == [latin1, "old/caf%E9.pdf"]


def test_migration_0010_escapes_old_names_that_start_with_the_mark(db_url: str) -> None:
    engine = db.make_engine(db_url)
    Path(str(engine.url.database)).parent.mkdir(parents=True)
    migrate_to(engine, "0009")
    odd = names.MARK + "odd%41.pdf"  # a UTF-8 name an old release stored as it is
    insert_old_files(engine, [("scans", odd, 1, "queued"), ("scans", "plain.pdf", 1, "queued")])
    db.migrate(engine)
    cat = Catalog(engine)
    try:
        got = {f["path"] for f in list_files(engine, inbox="scans")}
        assert got == {odd, "plain.pdf"}
    finally:
        cat.close()


# ---------------------------------------------------------------- metadata (migration 0011)


def test_queue_stores_the_metadata_and_every_surface_reads_it(catalog: Catalog) -> None:
    from io import StringIO

    from rich.console import Console

    from ingestd import control

    file_id = observe(catalog, "cv.pdf").file_id
    catalog.queue_many(
        [
            Hashed(
                file_id,
                sha256=SHA_A,
                size=100,
                mtime_ns=1,
                detected_type="pdf",
                content_type="application/pdf",
                destination="main",
                dedup_scope="*",
                metadata={"pages": 3, "encrypted": False},
            )
        ]
    )
    assert row(catalog, file_id).metadata == {"encrypted": False, "pages": 3}
    expected = {"sha256": SHA_A, "detected_type": "pdf", "encrypted": False, "pages": 3}
    (listed,) = list_files(catalog.engine, inbox="scans")
    assert listed["metadata"] == expected
    doc = control.describe(catalog.engine, str(file_id))
    assert doc is not None and doc["metadata"] == expected
    out = StringIO()
    control.render_show(doc, Console(file=out, width=100))
    assert "metadata\n" in out.getvalue() and "pages          3" in out.getvalue()
    assert "encrypted      no" in out.getvalue()


def test_reject_keeps_what_validation_read(catalog: Catalog) -> None:
    file_id = observe(catalog, "photo.pdf").file_id
    catalog.reject(
        file_id,
        code="extension_mismatch",
        reason="named like a PDF",
        sha256=None,
        detected_type="png",
        size=100,
        mtime_ns=1,
        metadata={"format": "png", "width": 96, "height": 64},
    )
    (listed,) = list_files(catalog.engine, inbox="scans")
    assert listed["metadata"] == {
        "sha256": None,
        "detected_type": "png",
        "format": "png",
        "height": 64,
        "width": 96,
    }


def test_rows_from_before_migration_0011_show_no_metadata(db_url: str) -> None:
    from io import StringIO

    from rich.console import Console

    from ingestd import control

    engine = db.make_engine(db_url)
    Path(str(engine.url.database)).parent.mkdir(parents=True)
    migrate_to(engine, "0010")
    insert_old_files(engine, [("scans", "old.pdf", 10, "uploaded")])
    db.migrate(engine)
    cat = Catalog(engine)
    try:
        (listed,) = list_files(engine, inbox="scans")
        assert listed["metadata"] is None
        doc = control.describe(engine, str(listed["id"]))
        assert doc is not None and doc["metadata"] is None
        out = StringIO()
        control.render_show(doc, Console(file=out, width=100))
        assert "metadata: none recorded" in out.getvalue()
        assert on_failure(row(cat, listed["id"]), node="n1", at=1.0)["file"]["metadata"] is None
        with engine.connect() as conn:  # SQL NULL, not the JSON text "null"
            stored = conn.exec_driver_sql("SELECT metadata IS NULL FROM files").scalar_one()
        assert stored == 1
    finally:
        cat.close()


def test_migration_0011_goes_down_without_dropping_the_totals_triggers(db_url: str) -> None:
    from alembic import command

    engine = db.make_engine(db_url)
    Path(str(engine.url.database)).parent.mkdir(parents=True)
    migrate_to(engine, "0011")
    with engine.connect() as conn:
        command.downgrade(db._alembic_config(conn), "0010")
        conn.commit()
        columns = {c["name"] for c in inspect(conn).get_columns("files")}
        triggers = conn.exec_driver_sql(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
        ).scalar_one()
    assert "metadata" not in columns and triggers == 3
    db.migrate(engine)
    assert db.schema_status(engine)[0] == revision.HEAD_REVISION
    engine.dispose()
