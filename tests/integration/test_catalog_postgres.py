"""The catalog repository on a real PostgreSQL server: migrations, intake dedup, claims, leases.

Each test gets a fresh database. "Two nodes" are two ``Catalog`` objects with their own engines
(their own connection pools), driven from two threads that start together at a barrier.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, update

from ingestd import status
from ingestd.catalog import db, maintenance, queries
from ingestd.catalog.outbox import CatalogOutbox
from ingestd.catalog.reader import open_reader
from ingestd.catalog.repo import Catalog, FileRow, StaleState
from ingestd.catalog.rows import PartRecord
from ingestd.catalog.schema import events, files, fingerprints, metadata
from ingestd.config import Settings
from ingestd.states import FileState
from ingestd.webhooks import on_failure
from tests.catalog_revisions import insert_old_files, migrate_to
from tests.servers.postgres import PostgresServer

pytestmark = pytest.mark.integration
T = TypeVar("T")
DEST = "main"
SCOPE = "*"


class Clock:
    """A clock the test moves by hand (leases, retry times)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cat(pg_url: str) -> Iterator[Catalog]:
    catalog = Catalog.open(pg_url)
    yield catalog
    catalog.close()


@pytest.fixture
def nodes(pg_url: str) -> Iterator[tuple[Catalog, Catalog]]:
    """Two catalogs on one database, as two daemons would open it."""
    a, b = Catalog.open(pg_url), Catalog.open(pg_url)
    yield a, b
    a.close()
    b.close()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def discovered(cat: Catalog, name: str, *, inbox: str = "scanner") -> int:
    seen = cat.observe(
        inbox=inbox, relpath=name, source_path=f"/srv/{inbox}/{name}", size=10, mtime_ns=1
    )
    return seen.file_id


def queue(cat: Catalog, file_id: int, digest: str, *, dest: str = DEST) -> FileState:
    return cat.queue(
        file_id,
        sha256=digest,
        size=10,
        mtime_ns=1,
        detected_type="pdf",
        content_type="application/pdf",
        destination=dest,
        dedup_scope=SCOPE,
    ).state


def queued(cat: Catalog, name: str, *, dest: str = DEST) -> int:
    file_id = discovered(cat, name)
    assert queue(cat, file_id, sha(name), dest=dest) == FileState.QUEUED
    return file_id


def together(*calls: Callable[[], T]) -> list[T]:
    """Run each call in its own thread, released at the same instant; re-raise any error."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int, call: Callable[[], T]) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


# ---------------------------------------------------------------------- schema


def test_migrations_reach_head_and_match_the_models(pg_url: str) -> None:
    catalog = Catalog.open(pg_url)
    try:
        current, head = db.schema_status(catalog.engine)
        assert current == head != ""
        assert {"files", "events", "parts", "fingerprints", "lanes", "nodes", "batches"} <= set(
            inspect(catalog.engine).get_table_names()
        )
        with catalog.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        db.migrate(catalog.engine)  # idempotent
        assert db.schema_status(catalog.engine) == (head, head)
    finally:
        catalog.close()


def totals_and_truth(cat: Catalog) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """(kept totals, totals counted from the rows) per (inbox, state)."""
    query = select(files.c.inbox, files.c.state, func.count(), func.sum(files.c.size)).group_by(
        files.c.inbox, files.c.state
    )
    with db.read_tx(cat.engine) as conn:
        kept = {(t.inbox, t.state): (t.files, t.bytes) for t in queries.totals(conn)}
        truth = {(i, s): (int(n), int(b)) for i, s, n, b in conn.execute(query)}
    return kept, truth


def test_file_totals_stay_exact_with_two_nodes_writing_at_once(
    nodes: tuple[Catalog, Catalog],
) -> None:
    """The totals' triggers under real concurrency: two nodes taking in, queueing, claiming
    and finishing files of three inboxes at once (deadlock victims are retried)."""

    def work(cat: Catalog, tag: str) -> None:
        for i in range(30):
            file_id = discovered(cat, f"{tag}-{i}.pdf", inbox=f"in{i % 3}")
            queue(cat, file_id, sha(f"{tag}-{i % 20}"))  # a third are copies: duplicates
        while (row := cat.claim_next(DEST, owner=tag, lease_seconds=30)) is not None:
            cat.mark_uploaded(row.id, key=row.relpath, seconds=0.1, bytes_sent=10, detail="ok")

    a, b = nodes
    together(partial(work, a, "a"), partial(work, b, "b"))
    kept, truth = totals_and_truth(a)
    assert kept == truth
    assert sum(n for (_, state), (n, _) in kept.items() if state == "uploaded") == 40


def test_migration_counts_the_rows_already_there(pg_url: str) -> None:
    engine = db.make_engine(pg_url)
    migrate_to(engine, "0005")
    insert_old_files(engine, [("scanner", f"old{i}.pdf", 10, "queued") for i in range(4)])
    cat = Catalog(engine)
    try:
        db.migrate(engine)
        kept, truth = totals_and_truth(cat)
        assert kept == truth == {("scanner", "queued"): (4, 40)}
        queued(cat, "new.pdf")
        assert totals_and_truth(cat)[0] == {("scanner", "queued"): (5, 50)}
    finally:
        cat.close()


def test_nodes_starting_together_migrate_once(pg_url: str) -> None:
    """The advisory lock serialises migrations of daemons that start at the same moment."""
    opened = together(*[lambda: Catalog.open(pg_url) for _ in range(4)])
    try:
        current, head = db.schema_status(opened[0].engine)
        assert current == head
    finally:
        for c in opened:
            c.close()


def test_failed_migration_releases_the_advisory_lock(pg_url: str) -> None:
    """A migration that fails in SQL must not leave the lock with a pooled connection (every
    other node would wait for it forever) nor hide the real error."""
    engine = db.make_engine(pg_url)
    try:
        with db.write_tx(engine) as conn:
            conn.exec_driver_sql("CREATE TABLE batches (id integer)")  # in the way of 0001
        with pytest.raises(Exception, match="already exists"):
            db.migrate(engine)
        with psycopg.connect(pg_url) as other:
            held = other.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            ).fetchone()
        assert held == (0,)
    finally:
        engine.dispose()


def test_reads_see_one_snapshot_and_writes_read_committed(cat: Catalog) -> None:
    discovered(cat, "one.pdf")
    with db.read_tx(cat.engine) as conn:
        before = conn.execute(select(func.count()).select_from(files)).scalar_one()
        discovered(cat, "two.pdf")  # committed by another connection meanwhile
        after = conn.execute(select(func.count()).select_from(files)).scalar_one()
    assert before == after == 1
    with db.write_tx(cat.engine) as conn:
        level = conn.exec_driver_sql("SHOW transaction_isolation").scalar_one()
    assert level == "read committed"


def test_deadlock_victim_is_retried(cat: Catalog) -> None:
    """Two writers locking two rows in opposite order: PostgreSQL aborts one; it runs again."""
    ids = [discovered(cat, "a.pdf"), discovered(cat, "b.pdf")]
    barrier = threading.Barrier(2)
    runs: list[int] = []

    def writer(first: int, second: int) -> None:
        def run() -> None:
            with db.write_tx(cat.engine) as conn:
                conn.execute(update(files).where(files.c.id == first).values(reason="x"))
                runs.append(first)
                if runs.count(first) == 1:  # only the first attempt waits for the other
                    barrier.wait(timeout=10)
                conn.execute(update(files).where(files.c.id == second).values(reason="y"))

        db.retry_locked(run)

    together(lambda: writer(ids[0], ids[1]), lambda: writer(ids[1], ids[0]))
    assert len(runs) == 3  # one of the two ran twice


# ---------------------------------------------------------------------- intake


def test_observe_creates_updates_and_versions_rows(cat: Catalog) -> None:
    first = cat.observe(inbox="scanner", relpath="a/b.pdf", source_path="/x", size=5, mtime_ns=1)
    assert first.new and first.state == FileState.DISCOVERED
    again = cat.observe(inbox="scanner", relpath="a/b.pdf", source_path="/x", size=7, mtime_ns=2)
    assert (again.file_id, again.new) == (first.file_id, False)
    row = cat.find_by_path("scanner", "a/b.pdf")
    assert row is not None and (row.id, row.size, row.mtime_ns) == (first.file_id, 7, 2)
    assert cat.find_by_path("other", "a/b.pdf") is None

    cat.reject(
        first.file_id,
        code="corrupt",
        reason="bad xref",
        sha256=None,
        detected_type="pdf",
        size=7,
        mtime_ns=2,
    )
    same = cat.observe(inbox="scanner", relpath="a/b.pdf", source_path="/x", size=7, mtime_ns=2)
    assert (same.file_id, same.new, same.state) == (first.file_id, False, FileState.REJECTED)
    newer = cat.observe(inbox="scanner", relpath="a/b.pdf", source_path="/x", size=9, mtime_ns=3)
    assert newer.new and newer.file_id != first.file_id
    found = cat.find_by_path("scanner", "a/b.pdf")
    assert found is not None and found.id == newer.file_id


def test_two_nodes_observe_one_path_at_once(nodes: tuple[Catalog, Catalog]) -> None:
    """A shared inbox: both nodes see the same new file; the unique source key makes one row."""
    a, b = nodes
    for i in range(10):
        seen = together(
            *[
                partial(
                    c.observe,
                    inbox="shared",
                    relpath=f"f{i}.pdf",
                    source_path="/s",
                    size=1,
                    mtime_ns=1,
                )
                for c in (a, b)
            ]
        )
        assert seen[0].file_id == seen[1].file_id
        assert sorted(s.new for s in seen) == [False, True]
    assert a.counts()[FileState.DISCOVERED] == 10


def test_queue_and_dedup(cat: Catalog) -> None:
    original = discovered(cat, "one.pdf")
    copy = discovered(cat, "copy-of-one.pdf")
    assert queue(cat, original, sha("one")) == FileState.QUEUED
    outcome = cat.queue(
        copy,
        sha256=sha("one"),
        size=10,
        mtime_ns=1,
        detected_type="pdf",
        content_type="application/pdf",
        destination=DEST,
        dedup_scope=SCOPE,
    )
    assert (outcome.state, outcome.original_id) == (FileState.DUPLICATE, original)
    dup = cat.get(copy)
    assert dup is not None and dup.reason_code == "duplicate" and dup.original_id == original
    other_scope = discovered(cat, "elsewhere.pdf", inbox="other")
    result = cat.queue(
        other_scope,
        sha256=sha("one"),
        size=10,
        mtime_ns=1,
        detected_type="pdf",
        content_type="application/pdf",
        destination=DEST,
        dedup_scope="inbox:other",
    )
    assert result.state == FileState.QUEUED


def test_two_nodes_queue_one_content_at_once(nodes: tuple[Catalog, Catalog]) -> None:
    """Two copies hashed at the same moment on two nodes: one upload, one duplicate."""
    a, b = nodes
    for i in range(15):
        digest = sha(f"content {i}")
        ids = [discovered(a, f"round{i}/copy-a.pdf"), discovered(b, f"round{i}/copy-b.pdf")]
        states = together(partial(queue, a, ids[0], digest), partial(queue, b, ids[1], digest))
        assert sorted(states) == sorted([FileState.QUEUED, FileState.DUPLICATE]), i
        with db.read_tx(a.engine) as conn:
            holders = conn.execute(
                select(fingerprints.c.file_id).where(fingerprints.c.sha256 == digest)
            ).all()
        winner = ids[states.index(FileState.QUEUED)]
        assert [h.file_id for h in holders] == [winner]
        loser = a.get(ids[states.index(FileState.DUPLICATE)])
        assert loser is not None and loser.original_id == winner


# ---------------------------------------------------------------------- upload lane


def test_claim_next_two_owners_each_file_once(nodes: tuple[Catalog, Catalog]) -> None:
    """FOR UPDATE SKIP LOCKED: two nodes claiming as fast as they can never share a file."""
    a, b = nodes
    all_ids = {queued(a, f"f{i:03}.pdf") for i in range(60)}

    def drain(cat: Catalog, owner: str) -> list[int]:
        mine: list[int] = []
        while (row := cat.claim_next(DEST, owner=owner, lease_seconds=60)) is not None:
            assert row.state == FileState.UPLOADING and row.lease_owner == owner
            mine.append(row.id)
            cat.mark_uploaded(row.id, key=f"k/{row.id}", seconds=0.1, bytes_sent=10, detail="ok")
        return mine

    got_a, got_b = together(lambda: drain(a, "node-a"), lambda: drain(b, "node-b"))
    assert not set(got_a) & set(got_b)
    assert sorted(got_a + got_b) == sorted(all_ids)
    assert a.counts()[FileState.UPLOADED] == 60
    with db.read_tx(a.engine) as conn:
        claims = conn.execute(
            select(events.c.file_id, func.count())
            .where(events.c.code == "claimed")
            .group_by(events.c.file_id)
        ).all()
    assert len(claims) == 60 and all(n == 1 for _, n in claims)


def test_claim_order_and_retry_time(cat: Catalog) -> None:
    clock = Clock()
    cat.clock = clock
    first, second = queued(cat, "first.pdf"), queued(cat, "second.pdf")
    queued(cat, "other-dest.pdf", dest="archive")
    row = cat.claim_next(DEST, owner="n", lease_seconds=30)
    assert row is not None and row.id == first
    state = cat.retry_later(
        first,
        code="file_error",
        error="read error",
        next_attempt_at=clock.now + 100,
        count_attempt=True,
        max_attempts=3,
    )
    assert state == FileState.QUEUED
    row = cat.claim_next(DEST, owner="n", lease_seconds=30)
    assert row is not None and row.id == second  # first waits for its retry time
    assert cat.claim_next(DEST, owner="n", lease_seconds=30) is None
    clock.now += 101
    row = cat.claim_next(DEST, owner="n", lease_seconds=30)
    assert row is not None and row.id == first and row.attempts == 1


def test_priority_order_aging_and_prioritize(cat: Catalog) -> None:
    """The queue's order on PostgreSQL (both probes skip locked rows): priority, then first
    come; a file waiting past the aging time first; prioritize moves files to the front."""
    from ingestd import control

    clock = Clock()
    cat.clock = clock
    queued(cat, "old.pdf")
    clock.now += 7200
    low = queued(cat, "low.pdf")
    for name, priority in (("high.pdf", 5), ("higher.pdf", 9)):
        cat.queue(
            discovered(cat, name),
            sha256=sha(name),
            size=10,
            mtime_ns=1,
            detected_type="pdf",
            content_type="application/pdf",
            destination=DEST,
            dedup_scope=SCOPE,
            priority=priority,
        )
    moved = control.prioritize(cat, [low], inbox=None, batch=None)
    assert [(o.done, o.reason) for o in moved] == [(True, "priority 10")]
    order = []
    while row := cat.claim_next(DEST, owner="n", lease_seconds=30, aging_seconds=3600):
        order.append(row.relpath)
        cat.mark_uploaded(row.id, key=row.relpath, seconds=0.1, bytes_sent=10, detail="ok")
    assert order == ["old.pdf", "low.pdf", "higher.pdf", "high.pdf"], order


def test_two_owners_claim_by_priority_each_file_once(nodes: tuple[Catalog, Catalog]) -> None:
    """Two claimers at once (as two slots of transfers = N): every file once, and the urgent
    files leave the queue first."""
    a, b = nodes
    plain = {queued(a, f"p{i:03}.pdf") for i in range(30)}
    urgent = set()
    for i in range(10):
        name = f"u{i:03}.pdf"
        file_id = discovered(a, name)
        a.queue(
            file_id,
            sha256=sha(name),
            size=10,
            mtime_ns=1,
            detected_type="pdf",
            content_type="application/pdf",
            destination=DEST,
            dedup_scope=SCOPE,
            priority=1,
        )
        urgent.add(file_id)

    def drain(cat: Catalog, owner: str) -> list[tuple[float, int]]:
        mine = []
        while row := cat.claim_next(DEST, owner=owner, lease_seconds=60, aging_seconds=3600):
            mine.append((time.monotonic(), row.id))
            cat.mark_uploaded(row.id, key=f"k/{row.id}", seconds=0.1, bytes_sent=10, detail="ok")
        return mine

    got_a, got_b = together(lambda: drain(a, "node-a"), lambda: drain(b, "node-b"))
    claims = [file_id for _, file_id in sorted(got_a + got_b)]
    assert sorted(claims) == sorted(plain | urgent)
    # The other claimer may take a plain file while the last urgent one is locked: at most one.
    assert urgent <= set(claims[:11]), claims


def test_acquire_lane_is_exclusive_until_the_lease_expires(
    nodes: tuple[Catalog, Catalog],
) -> None:
    a, b = nodes
    clock = Clock()
    a.clock = b.clock = clock
    assert a.acquire_lane(DEST, owner="node-a", lease_seconds=10)
    assert not b.acquire_lane(DEST, owner="node-b", lease_seconds=10)
    clock.now += 8
    assert a.acquire_lane(DEST, owner="node-a", lease_seconds=10)  # renewed
    clock.now += 8
    assert not b.acquire_lane(DEST, owner="node-b", lease_seconds=10)
    clock.now += 3  # node-a stopped renewing: its lease has run out
    assert b.acquire_lane(DEST, owner="node-b", lease_seconds=10)
    assert not a.acquire_lane(DEST, owner="node-a", lease_seconds=10)
    b.release_lane(DEST, owner="node-b")
    assert a.acquire_lane(DEST, owner="node-a", lease_seconds=10)


def test_acquire_lane_race_has_one_winner(pg_url: str) -> None:
    """Nodes racing for a lane that does not exist yet (insert) and for a free one (update)."""
    cats = [Catalog.open(pg_url) for _ in range(4)]
    try:
        for round_ in range(10):
            lane = f"lane-{round_}"
            won = together(
                *[
                    partial(c.acquire_lane, lane, owner=f"node-{i}", lease_seconds=60)
                    for i, c in enumerate(cats)
                ]
            )
            assert won.count(True) == 1, won
            winner = won.index(True)
            cats[winner].release_lane(lane, owner=f"node-{winner}")
            again = together(
                *[
                    partial(c.acquire_lane, lane, owner=f"node-{i}", lease_seconds=60)
                    for i, c in enumerate(cats)
                ]
            )
            assert again.count(True) == 1, again
    finally:
        for c in cats:
            c.close()


def test_leases_renew_and_expired_uploads_are_reclaimed(nodes: tuple[Catalog, Catalog]) -> None:
    a, b = nodes
    clock = Clock()
    a.clock = b.clock = clock
    file_id = queued(a, "big.bin")
    row = a.claim_next(DEST, owner="node-a", lease_seconds=10)
    assert row is not None
    a.upload_started(file_id, key="big.bin", upload_id="U1", part_size=5)
    a.part_done(file_id, "U1", PartRecord(1, 5, '"e1"', "00" * 16))
    clock.now += 5
    assert a.renew(file_id, owner="node-a", lease_seconds=10, bytes_sent=5)
    assert not b.renew(file_id, owner="node-b", lease_seconds=10, bytes_sent=5)
    clock.now += 6
    assert b.reclaim_expired(owner="node-b") == []  # still leased (renewed 6 s ago)
    clock.now += 5
    assert b.reclaim_expired(owner="node-b") == [file_id]
    resumed = b.claim_next(DEST, owner="node-b", lease_seconds=10)
    assert resumed is not None and resumed.id == file_id
    assert (resumed.upload_id, resumed.key) == ("U1", "big.bin")  # it resumes the upload
    assert list(b.parts(file_id)) == [1]
    assert not a.renew(file_id, owner="node-a", lease_seconds=10, bytes_sent=5)
    with pytest.raises(StaleState):
        a.transition(file_id, FileState.QUEUED, expect={FileState.QUEUED})


def test_two_nodes_reclaim_at_once(nodes: tuple[Catalog, Catalog]) -> None:
    """Nodes restarting together both look for expired uploads; each is reclaimed once."""
    a, b = nodes
    clock = Clock()
    a.clock = b.clock = clock
    ids = [queued(a, f"f{i}.bin") for i in range(20)]
    for _ in ids:
        assert a.claim_next(DEST, owner="gone", lease_seconds=10) is not None
    clock.now += 11
    got_a, got_b = together(
        lambda: a.reclaim_expired(owner="node-a"), lambda: b.reclaim_expired(owner="node-b")
    )
    assert sorted(got_a + got_b) == ids
    assert a.counts()[FileState.QUEUED] == 20


def test_sequential_lane_survives_an_upload_longer_than_the_lease(
    nodes: tuple[Catalog, Catalog],
) -> None:
    """What the daemons do: node-a holds the lane and uploads one file for longer than
    lease_seconds, renewing the lane's and the file's lease as its lease keeper does
    (Lane.renew_lease); node-b keeps trying."""
    a, b = nodes
    clock = Clock()
    a.clock = b.clock = clock
    queued(a, "long.bin")
    queued(a, "next.bin")
    assert a.acquire_lane(DEST, owner="node-a", lease_seconds=10)
    row = a.claim_next(DEST, owner="node-a", lease_seconds=10)
    assert row is not None
    for _ in range(15):
        clock.now += 1
        assert a.acquire_lane(DEST, owner="node-a", lease_seconds=10)
        assert a.renew(row.id, owner="node-a", lease_seconds=10, bytes_sent=0)
        if b.acquire_lane(DEST, owner="node-b", lease_seconds=10):
            b.claim_next(DEST, owner="node-b", lease_seconds=10)
    assert a.counts()[FileState.UPLOADING] == 1


# ---------------------------------------------------------------------- outcomes and control


def test_retry_later_until_failed_then_operator_retry(cat: Catalog) -> None:
    file_id = queued(cat, "flaky.pdf")
    for attempt in (1, 2):
        assert cat.claim_next(DEST, owner="n", lease_seconds=30) is not None
        state = cat.retry_later(
            file_id,
            code="file_error",
            error=f"boom {attempt}",
            next_attempt_at=None,
            count_attempt=True,
            max_attempts=3,
        )
        assert state == FileState.QUEUED
    # A destination outage burns no attempt.
    assert cat.claim_next(DEST, owner="n", lease_seconds=30) is not None
    state = cat.retry_later(
        file_id,
        code="destination_down",
        error="refused",
        next_attempt_at=None,
        count_attempt=False,
        max_attempts=3,
    )
    assert state == FileState.QUEUED
    assert cat.claim_next(DEST, owner="n", lease_seconds=30) is not None
    state = cat.retry_later(
        file_id,
        code="file_error",
        error="boom 3",
        next_attempt_at=None,
        count_attempt=True,
        max_attempts=3,
    )
    assert state == FileState.FAILED
    row = cat.get(file_id)
    assert row is not None
    assert (row.attempts, row.lease_owner, row.reason_code) == (3, None, "file_error")
    assert row.finished_at is not None
    with db.read_tx(cat.engine) as conn:  # a failed file no longer blocks its content
        assert conn.execute(select(func.count()).select_from(fingerprints)).scalar_one() == 0
    assert cat.retry(file_id) == FileState.QUEUED
    row = cat.get(file_id)
    assert row is not None and (row.state, row.attempts) == (FileState.QUEUED, 0)


def test_operator_retry_becomes_duplicate_when_the_copy_was_uploaded(cat: Catalog) -> None:
    failed = queued(cat, "a.pdf")
    assert cat.claim_next(DEST, owner="n", lease_seconds=30) is not None
    cat.retry_later(
        failed, code="x", error="x", next_attempt_at=None, count_attempt=True, max_attempts=1
    )
    copy = discovered(cat, "b.pdf")
    assert queue(cat, copy, sha("a.pdf")) == FileState.QUEUED
    assert cat.retry(failed) == FileState.DUPLICATE


def test_a_late_sighting_of_a_finished_file_is_forgotten(cat: Catalog) -> None:
    done = queued(cat, "late.pdf")
    assert cat.claim_next(DEST, owner="node-a", lease_seconds=30) is not None
    cat.mark_uploaded(done, key="scanner/late.pdf", seconds=1.0, bytes_sent=10, detail="ok")
    cat.confirm_post(done, post_path="/archive/late.pdf", source_gone=True)
    late = discovered(cat, "late.pdf")
    assert late != done
    assert cat.drop_vanished(late, detail="gone") is False
    assert cat.get(late) is None
    assert cat.counts()["cancelled"] == 0 and cat.counts()["uploaded"] == 1


def test_request_cancel(cat: Catalog) -> None:
    waiting = queued(cat, "waiting.pdf")
    busy = queued(cat, "busy.pdf")
    row = cat.claim_next(DEST, owner="n", lease_seconds=30)
    assert row is not None and row.id == waiting
    assert cat.request_cancel(busy) == FileState.QUEUED
    cancelled = cat.get(busy)
    assert cancelled is not None and cancelled.state == FileState.CANCELLED
    assert cancelled.post_done and cancelled.reason_code == "cancelled"
    assert cat.request_cancel(waiting) == FileState.UPLOADING
    flagged = cat.get(waiting)
    assert flagged is not None and flagged.state == FileState.UPLOADING
    assert flagged.cancel_requested is True
    with pytest.raises(KeyError):
        cat.request_cancel(999_999)


def test_upload_journal_and_post_action(cat: Catalog) -> None:
    file_id = queued(cat, "doc.pdf")
    assert cat.claim_next(DEST, owner="n", lease_seconds=30) is not None
    cat.plan_key(file_id, "scanner/doc.pdf")
    cat.upload_started(file_id, key="scanner/doc.pdf", upload_id="UP", part_size=5 * 2**20)
    for n in (2, 1):
        cat.part_done(file_id, "UP", PartRecord(n, 5 * 2**20, f'"etag{n}"', f"{n:032x}"))
    assert list(cat.parts(file_id)) == [1, 2]
    assert cat.parts(file_id)[2].etag == '"etag2"'
    cat.add_event(file_id, code="part_retry", detail="part 2 sent again")
    cat.mark_uploaded(
        file_id, key="scanner/doc.pdf", seconds=1.5, bytes_sent=10 * 2**20, detail="stored"
    )
    assert cat.parts(file_id) == {}
    with db.read_tx(cat.engine) as conn:
        key = conn.execute(
            select(fingerprints.c.key).where(fingerprints.c.file_id == file_id)
        ).scalar_one()
    assert key == "scanner/doc.pdf"
    assert [r.id for r in cat.pending_post()] == [file_id]
    assert cat.outstanding_count() == 1
    cat.plan_post(file_id, "/srv/archive/doc.pdf")
    cat.confirm_post(file_id, post_path="/srv/archive/doc.pdf", source_gone=True)
    assert cat.pending_post() == []
    assert cat.outstanding_count() == 0
    assert cat.find_by_path("scanner", "doc.pdf") is None
    row = cat.get(file_id)
    assert row is not None and row.post_done and row.upload_id is None


def test_lane_health_pause_cooldown_and_heartbeat(cat: Catalog) -> None:
    cat.set_lane_health(DEST, up=False, error="connection refused", hold="down")
    cat.set_lane_health(DEST, up=False, error="still refused", hold="down")
    cat.set_paused([DEST, "archive"], True)
    assert cat.is_paused(DEST) and cat.is_paused("archive")
    cat.set_paused([DEST], False)
    assert not cat.is_paused(DEST)
    cat.set_cooldown(DEST, cat.clock() + 30)
    for stopped in (False, False, True):
        cat.heartbeat(
            node="node-a", pid=1, host="h", version="0.1", started_at=1.0, stopped=stopped
        )


# ---------------------------------------------------------------------- reads


def test_counts_listings_and_status(cat: Catalog, tmp_path: Path) -> None:
    clock = Clock()
    cat.clock = clock
    up = queued(cat, "up.pdf")
    waiting = queued(cat, "waiting.pdf")
    dup = discovered(cat, "dup.pdf")
    assert queue(cat, dup, sha("up.pdf")) == FileState.DUPLICATE
    bad = discovered(cat, "bad.pdf", inbox="other")
    cat.reject(
        bad,
        code="truncated",
        reason="no %%EOF",
        sha256=None,
        detected_type="pdf",
        size=10,
        mtime_ns=1,
    )
    assert cat.claim_next(DEST, owner="node-a", lease_seconds=30) is not None
    cat.mark_uploaded(up, key="scanner/up.pdf", seconds=2.0, bytes_sent=10, detail="ok")
    assert cat.claim_next(DEST, owner="node-a", lease_seconds=30) is not None
    cat.renew(waiting, owner="node-a", lease_seconds=30, bytes_sent=4)
    cat.acquire_lane(DEST, owner="node-a", lease_seconds=30)
    cat.heartbeat(node="node-a", pid=42, host="h1", version="0.1", started_at=clock.now - 60)

    expected = {s.value: 0 for s in FileState} | {
        "uploaded": 1,
        "uploading": 1,
        "duplicate": 1,
        "rejected": 1,
    }
    assert cat.counts() == expected
    assert queries.counts(cat.engine) == expected
    assert queries.counts(cat.engine, inbox="other")["rejected"] == 1
    gauges, waiting_bytes = queries.queue_gauges(cat.engine)
    assert gauges == expected and waiting_bytes == 6
    assert queries.failed_since(cat.engine, 0) == 0
    assert [f["path"] for f in queries.list_files(cat.engine)] == [
        "up.pdf",
        "waiting.pdf",
        "dup.pdf",
        "bad.pdf",
    ]
    assert [f["id"] for f in queries.list_files(cat.engine, states=["uploaded", "duplicate"])] == [
        up,
        dup,
    ]
    newest = queries.list_files(cat.engine, inbox="scanner", newest_first=True, limit=2)
    assert [f["id"] for f in newest] == [dup, waiting]
    row = cat.get(up)
    assert row is not None and row.batch_id is not None
    assert len(queries.list_files(cat.engine, batch=row.batch_id, since=0)) == 3
    assert {r.id for r in cat.by_state(FileState.UPLOADING)} == {waiting}
    assert cat.by_state(FileState.REJECTED, inbox="scanner") == []
    assert cat.outstanding_count(["scanner"]) == 3  # uploading + two post-actions due

    settings = Settings(
        state_dir=tmp_path,
        catalog_url="postgresql://unused",
        destinations={DEST: {"type": "directory", "path": str(tmp_path / "store")}},
        inboxes=[{"name": "scanner", "path": str(tmp_path / "in"), "destination": DEST}],
    )
    with open_reader(cat.engine.url.render_as_string(hide_password=False)) as reader:
        data = status.collect(reader, settings, now=clock.now + 1)
    assert data["counts"] == expected
    assert data["daemon"]["running"] and data["daemon"]["nodes"][0]["pid"] == 42
    assert data["inboxes"]["other"]["rejected"] == 1
    current = data["destinations"][DEST]["current"]
    assert current["id"] == waiting and current["bytes_sent"] == 4
    assert data["queue"] == {
        "files": 1,
        "bytes": 6,
        "throughput_bytes_per_second": pytest.approx(10 / status.THROUGHPUT_WINDOW_SECONDS),
        "eta_seconds": 540,
    }
    assert [p["id"] for p in data["recent_problems"]] == [bad]
    status.render(data)


def test_outbox_and_housekeeping(nodes: tuple[Catalog, Catalog]) -> None:
    """The other catalog writers: webhook outbox (claimed across nodes), retention, batches."""
    a, b = nodes
    box_a, box_b = CatalogOutbox(a.engine), CatalogOutbox(b.engine)
    ids = [box_a.enqueue("batch_closed", {"id": f"batch-{i}", "n": i}) or 0 for i in range(20)]
    assert 0 not in ids
    assert box_b.enqueue("batch_closed", {"id": "batch-3"}) is None  # enqueued once per uid
    now = a.clock() + 1
    got_a, got_b = together(partial(box_a.due, now, 15), partial(box_b.due, now, 15))
    claimed = [i.id for i in got_a + got_b]
    assert sorted(claimed) == sorted(ids)  # each item handed to one node only
    box_a.mark_delivered(got_a[0].id)
    box_a.mark_retry(got_a[1].id, now + 60, "HTTP 500")
    box_a.mark_dead(got_a[2].id, "gave up")
    assert box_b.pending() == 18

    done = queued(a, "done.pdf")
    assert a.claim_next(DEST, owner="n", lease_seconds=30) is not None
    a.upload_started(done, key="done.pdf", upload_id="U9", part_size=5)
    assert maintenance.owned_upload_ids(a.engine, DEST) == {"U9"}
    a.mark_uploaded(done, key="done.pdf", seconds=1, bytes_sent=10, detail="ok")
    a.confirm_post(done, post_path="/archive/done.pdf", source_gone=True)
    later = a.clock() + 3600
    assert maintenance.prunable(a.engine, before=later) == 1
    result = maintenance.prune(a.engine, before=later)
    assert result.files == 1 and result.events >= 4
    assert a.get(done) is None
    assert maintenance.close_idle_batches(a.engine, now=later, idle_seconds=60) != []
    for up in (False, True):
        maintenance.record_inbox_health(
            a.engine, "remote", up=up, down_since=1.0, error="refused", now=later
        )


def test_combined_rejection_codes_fit(cat: Catalog) -> None:
    """Validation joins every rejection code with "," (intake._reject); PostgreSQL enforces
    VARCHAR lengths that SQLite ignores."""
    file_id = discovered(cat, "evil.pdf")
    code = "extension_mismatch,type_not_allowed,truncated"
    cat.reject(
        file_id,
        code=code,
        reason="several problems",
        sha256=None,
        detected_type="exe",
        size=10,
        mtime_ns=1,
    )
    row = cat.get(file_id)
    assert row is not None and row.reason_code == code


def test_no_nul_reaches_postgresql(cat: Catalog) -> None:
    """PostgreSQL text cannot hold NUL: the source key uses another separator there."""
    discovered(cat, "a/b.pdf")
    with db.read_tx(cat.engine) as conn:
        key = conn.execute(select(files.c.source_key)).scalar_one()
    assert key == "scanner/a/b.pdf"


def test_server_fixture_prefers_debian_postgresql(pg_server: PostgresServer) -> None:
    """Debian's own tree, not whatever pg_ctl comes first on PATH (/usr/local/bin may differ)."""
    if Path("/usr/lib/postgresql").is_dir():
        assert pg_server.bindir.parent.parent == Path("/usr/lib/postgresql")
    with psycopg.connect(pg_server.url("postgres")) as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)


def test_a_failure_commits_with_its_webhook_and_a_repeated_one_does_not_undo_it(
    cat: Catalog,
) -> None:
    """The outbox row is written in the failure's transaction (a savepoint inside the row
    lock); a notification already there with the same id leaves the failure committed."""
    outbox = CatalogOutbox(cat.engine)

    def notice(row: FileRow) -> tuple[str, dict[str, object]]:
        return "file_failed", on_failure(row, node="n", at=row.updated_at)

    first = queued(cat, "broken.pdf")
    assert cat.claim_next(DEST, owner="n", lease_seconds=30) is not None
    state = cat.retry_later(
        first,
        code="file_error",
        error="unreadable",
        next_attempt_at=None,
        count_attempt=True,
        max_attempts=1,
        owner="n",
        notice=notice,
    )
    assert state == FileState.FAILED
    (item,) = outbox.due(time.time() + 1, limit=10)
    assert item.payload["id"] == f"file_failed:{first}:1"
    second = queued(cat, "also-broken.pdf")
    assert outbox.enqueue("file_failed", {"id": f"file_failed:{second}:1"}) is not None
    assert cat.claim_next(DEST, owner="n", lease_seconds=30) is not None
    state = cat.retry_later(
        second,
        code="file_error",
        error="unreadable",
        next_attempt_at=None,
        count_attempt=True,
        max_attempts=1,
        owner="n",
        notice=notice,
    )
    assert state == FileState.FAILED
    assert cat.get(second).state == FileState.FAILED  # type: ignore[union-attr]


def test_a_name_that_is_not_utf8_round_trips_on_postgresql(cat: Catalog, pg_url: str) -> None:
    """PostgreSQL text refuses lone surrogates; the catalog stores names.to_catalog of it."""
    latin1 = os.fsdecode(b"old/caf\xe9.pdf")
    a = cat.observe(inbox="scans", relpath=latin1, source_path="/in/" + latin1, size=5, mtime_ns=1)
    b = cat.observe(
        inbox="scans", relpath="old/caf%E9.pdf", source_path="/in/x", size=5, mtime_ns=1
    )
    assert a.new and b.new and a.file_id != b.file_id
    row = cat.get(a.file_id)
    assert row is not None and os.fsencode(row.relpath) == b"old/caf\xe9.pdf"
    assert os.fsencode(row.source_path) == b"/in/old/caf\xe9.pdf"
    with open_reader(pg_url) as reader:  # status's fast reader decodes the same way
        got = reader.rows("SELECT relpath FROM files WHERE id = ?", [a.file_id])
    assert got[0].relpath == latin1
