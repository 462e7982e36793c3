"""The queue's order on a real SQLite catalog: priority first, first come within a priority,
aging so nothing starves, and ``prioritize`` moving queued files to the front.
(PostgreSQL: tests/integration/test_catalog_postgres.py; the real daemon:
tests/e2e/test_operator.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from ingestd import control
from ingestd.catalog import db
from ingestd.catalog.repo import Catalog
from ingestd.catalog.schema import events
from ingestd.states import FileState

T0 = 1_700_000_000.0
HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cat(tmp_path: Path, clock: Clock) -> Iterator[Catalog]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
    db.migrate(engine)
    catalog = Catalog(engine, clock=clock)
    yield catalog
    catalog.close()


def queued(cat: Catalog, name: str, *, priority: int = 0, dest: str = "main") -> int:
    seen = cat.observe(inbox="scans", relpath=name, source_path=f"/srv/{name}", size=10, mtime_ns=1)
    cat.queue(
        seen.file_id,
        sha256=name.ljust(64, "0")[:64],
        size=10,
        mtime_ns=1,
        detected_type="pdf",
        content_type="application/pdf",
        destination=dest,
        dedup_scope=None,
        priority=priority,
    )
    return seen.file_id


def drain(cat: Catalog, *, aging: float = 0.0, dest: str = "main") -> list[int]:
    """Claim and finish every file, in the order the lane would."""
    order = []
    while row := cat.claim_next(dest, owner="n1", lease_seconds=60, aging_seconds=aging):
        cat.mark_uploaded(row.id, key=f"k{row.id}", seconds=0.1, bytes_sent=10, detail="ok")
        order.append(row.id)
    return order


def test_higher_priority_first_and_first_come_within_a_priority(cat: Catalog) -> None:
    a = queued(cat, "a")
    b = queued(cat, "b", priority=5)
    c = queued(cat, "c")
    d = queued(cat, "d", priority=5)
    e = queued(cat, "e", priority=-1)
    assert drain(cat) == [b, d, a, c, e]


def test_a_file_waiting_longer_than_the_aging_time_goes_first(cat: Catalog, clock: Clock) -> None:
    old_low = queued(cat, "old-low", priority=-5)
    clock.now += 2 * HOUR
    urgent = [queued(cat, f"urgent-{i}", priority=10) for i in range(3)]
    # Strict priority: the low file waits behind every urgent one.
    first = cat.claim_next("main", owner="n1", lease_seconds=60, aging_seconds=0)
    assert first is not None and first.id == urgent[0]
    cat.mark_uploaded(first.id, key="k", seconds=0.1, bytes_sent=10, detail="ok")
    # With aging of an hour, the file queued two hours ago goes before the newer urgent ones.
    assert drain(cat, aging=HOUR) == [old_low, urgent[1], urgent[2]]


def test_aging_keeps_priority_order_for_files_not_yet_aged(cat: Catalog, clock: Clock) -> None:
    low = queued(cat, "low")
    clock.now += 10.0
    high = queued(cat, "high", priority=3)
    assert drain(cat, aging=HOUR) == [high, low]


def test_a_file_waiting_for_its_retry_is_not_taken_before_its_time(
    cat: Catalog, clock: Clock
) -> None:
    high = queued(cat, "high", priority=9)
    low = queued(cat, "low")
    row = cat.claim_next("main", owner="n1", lease_seconds=60)
    assert row is not None and row.id == high
    cat.retry_later(
        high,
        code="file_error",
        error="x",
        next_attempt_at=T0 + 100,
        count_attempt=True,
        max_attempts=5,
    )
    assert drain(cat) == [low]
    clock.now += 200
    assert drain(cat) == [high]


def test_prioritize_moves_queued_files_to_the_front_in_one_go(cat: Catalog) -> None:
    ids = [queued(cat, f"f{i}", priority=2 if i == 0 else 0) for i in range(5)]
    outcomes = control.prioritize(cat, [ids[4], ids[3]], inbox=None, batch=None)
    assert [o.done for o in outcomes] == [True, True]
    assert {o.reason for o in outcomes} == {"priority 3"}  # above the highest queued (2)
    # Named together they go together, first come among themselves.
    assert drain(cat) == [ids[3], ids[4], ids[0], ids[1], ids[2]]
    with db.read_tx(cat.engine) as conn:
        timeline = conn.execute(
            select(events.c.code, events.c.detail).where(events.c.file_id == ids[4])
        ).all()
    assert ("prioritized", "moved to the front of main's queue by the operator (priority 3)") in [
        tuple(t) for t in timeline
    ]


def test_prioritize_refuses_what_is_not_queued(cat: Catalog) -> None:
    first = queued(cat, "first")
    second = queued(cat, "second")
    row = cat.claim_next("main", owner="n1", lease_seconds=60)
    assert row is not None and row.id == first
    outcomes = control.prioritize(cat, [first, second, 999], inbox=None, batch=None)
    assert [(o.done, o.reason) for o in outcomes] == [
        (False, "is uploading already; nothing to move"),
        (True, "priority 1"),
        (False, "no such file"),
    ]
    cat.mark_uploaded(first, key="k", seconds=0.1, bytes_sent=10, detail="ok")
    (done,) = control.prioritize(cat, [first], inbox=None, batch=None)
    assert not done.done
    assert done.reason == "is uploaded; only queued files can be moved to the front"


def test_prioritize_by_inbox_takes_only_its_queued_files(cat: Catalog) -> None:
    a = queued(cat, "a")
    seen = cat.observe(inbox="hr", relpath="contract.pdf", source_path="/hr/c", size=1, mtime_ns=1)
    cat.queue(
        seen.file_id,
        sha256="c" * 64,
        size=1,
        mtime_ns=1,
        detected_type="pdf",
        content_type="application/pdf",
        destination="main",
        dedup_scope=None,
    )
    outcomes = control.prioritize(cat, [], inbox="hr", batch=None)
    assert [o.file_id for o in outcomes] == [seen.file_id]
    assert drain(cat) == [seen.file_id, a]


def test_priority_is_per_destination(cat: Catalog) -> None:
    other = queued(cat, "other", priority=50, dest="archive")
    mine = queued(cat, "mine")
    assert drain(cat) == [mine]
    assert drain(cat, dest="archive") == [other]
    assert cat.get(other).state == FileState.UPLOADED  # type: ignore[union-attr]
