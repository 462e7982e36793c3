"""SettleTracker: the "has this file stopped changing?" decision, on simulated clocks."""

from __future__ import annotations

import pytest

from ingestd.settle import SettleTracker

NS = 1_000_000_000
WALL0 = 1_700_000_000.0  # wall clock at monotonic 0 in these simulations
OLD_MTIME_NS = int(1_560_000_000 * NS)  # 2019: what cp -p / rsync -t carry over


def test_unknown_key_is_not_settled_and_has_no_due_time() -> None:
    tracker = SettleTracker()
    assert not tracker.is_settled("x", now=100.0, settle_seconds=5)
    assert tracker.due_at("x", 5) is None


def test_first_sighting_never_settles_by_itself() -> None:
    tracker = SettleTracker()
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=0.0)
    # Even an hour later: nobody has looked again, so nobody knows it did not change.
    assert not tracker.is_settled("a", now=3600.0, settle_seconds=5)


def test_second_unchanged_sighting_after_the_window_settles() -> None:
    tracker = SettleTracker()
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=0.0)
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=4.9)
    assert not tracker.is_settled("a", now=4.9, settle_seconds=5)
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=5.0)
    assert tracker.is_settled("a", now=5.0, settle_seconds=5)


def test_quiet_span_is_measured_between_sightings_not_up_to_now() -> None:
    tracker = SettleTracker()
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=0.0)
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=1.0)
    assert not tracker.is_settled("a", now=60.0, settle_seconds=5)


def test_settle_seconds_zero_settles_on_first_sighting() -> None:
    tracker = SettleTracker()
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=7.0)
    assert tracker.is_settled("a", now=7.0, settle_seconds=0)
    assert tracker.is_settled("a", now=7.0, settle_seconds=0, wall_now=WALL0)
    assert tracker.due_at("a", 0) == 7.0


def test_settle_seconds_zero_still_holds_a_future_mtime() -> None:
    tracker = SettleTracker()
    tracker.observe("a", size=10, mtime_ns=int((WALL0 + 2) * NS), now=0.0)
    assert not tracker.is_settled("a", now=0.0, settle_seconds=0, wall_now=WALL0)
    assert tracker.due_at("a", 0, now=0.0, wall_now=WALL0) == pytest.approx(2.0)


def _scanner(
    tracker: SettleTracker, *, settle: float, poll: float, page_every: float, pages_for: float
) -> tuple[float, float]:
    """Simulate a scanner appending a page every ``page_every`` s for ``pages_for`` s while the
    daemon stats the file every ``poll`` s. Returns (time of last write, time it settled)."""
    size, mtime_ns, next_page, last_write = 0, 0, 0.0, 0.0
    t = 0.0
    while t < pages_for + 60:
        while next_page <= min(t, pages_for):
            size += 50_000
            mtime_ns = int((WALL0 + next_page) * NS)
            last_write = next_page
            next_page += page_every
        tracker.observe("scan.pdf", size=size, mtime_ns=mtime_ns, now=t)
        if tracker.is_settled("scan.pdf", now=t, settle_seconds=settle, wall_now=WALL0 + t):
            return last_write, t
        t = round(t + poll, 6)
    raise AssertionError("never settled")


@pytest.mark.parametrize("poll", [0.5, 1.0, 2.0, 7.0])
def test_scanner_writing_a_page_every_3s_for_2_minutes_settles_only_after_it_stops(
    poll: float,
) -> None:
    last_write, settled_at = _scanner(
        SettleTracker(), settle=5, poll=poll, page_every=3, pages_for=120
    )
    assert last_write == 120
    assert settled_at >= last_write + 5
    # The clock starts when a change is seen (up to one poll after the write) and the first
    # look after the window settles it (up to one more poll).
    assert settled_at < last_write + poll + 5 + poll + 1e-9


def test_settle_window_shorter_than_the_scanners_pause_settles_too_early() -> None:
    # The documented limit: settle_seconds must exceed the slowest writer's pause.
    last_write, settled_at = _scanner(
        SettleTracker(), settle=2, poll=1, page_every=3, pages_for=120
    )
    assert last_write < 120
    assert settled_at < 120


def test_caller_sleeping_until_due_at_needs_one_look_per_change() -> None:
    tracker = SettleTracker()
    tracker.observe("a", size=1, mtime_ns=OLD_MTIME_NS, now=0.0)
    due = tracker.due_at("a", 5)
    assert due == 5.0
    tracker.observe("a", size=1, mtime_ns=OLD_MTIME_NS, now=due)
    assert tracker.is_settled("a", now=due, settle_seconds=5)


def test_shrinking_file_restarts_the_clock() -> None:
    tracker = SettleTracker()
    tracker.observe("a", size=1000, mtime_ns=OLD_MTIME_NS, now=0.0)
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=4.0)  # truncated, rewrite begins
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=6.0)
    assert not tracker.is_settled("a", now=6.0, settle_seconds=5)
    assert tracker.due_at("a", 5) == 9.0
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=9.0)
    assert tracker.is_settled("a", now=9.0, settle_seconds=5)


def test_same_size_but_newer_mtime_restarts_the_clock() -> None:
    tracker = SettleTracker()
    tracker.observe("a", size=10, mtime_ns=int(WALL0 * NS), now=0.0)
    tracker.observe("a", size=10, mtime_ns=int((WALL0 + 4) * NS), now=4.0)  # rewritten in place
    tracker.observe("a", size=10, mtime_ns=int((WALL0 + 4) * NS), now=6.0)
    assert not tracker.is_settled("a", now=6.0, settle_seconds=5)
    tracker.observe("a", size=10, mtime_ns=int((WALL0 + 4) * NS), now=9.0)
    assert tracker.is_settled("a", now=9.0, settle_seconds=5)


def test_mtime_jumping_back_when_cp_p_finishes_restarts_the_clock() -> None:
    tracker = SettleTracker()
    tracker.observe("a", size=10, mtime_ns=int(WALL0 * NS), now=0.0)
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=5.0)  # cp -p sets the old mtime
    assert not tracker.is_settled("a", now=5.0, settle_seconds=5, wall_now=WALL0 + 5)


def test_preserved_old_mtime_does_not_settle_a_growing_copy() -> None:
    # rsync -t/cp -p onto a filesystem with coarse timestamps: the mtime says 2019 all along.
    tracker = SettleTracker()
    for second in range(0, 30):
        tracker.observe("a", size=second * 1000, mtime_ns=OLD_MTIME_NS, now=float(second))
        assert not tracker.is_settled(
            "a", now=float(second), settle_seconds=5, wall_now=WALL0 + second
        )
    tracker.observe("a", size=29_000, mtime_ns=OLD_MTIME_NS, now=34.0)
    assert tracker.is_settled("a", now=34.0, settle_seconds=5, wall_now=WALL0 + 34)


def test_fresh_mtime_holds_a_file_the_sightings_call_settled() -> None:
    # A file server whose clock runs 10 s ahead of ours stamps a just-written file "now + 10".
    mtime_ns = int((WALL0 + 10) * NS)
    tracker = SettleTracker()
    tracker.observe("a", size=10, mtime_ns=mtime_ns, now=0.0)
    tracker.observe("a", size=10, mtime_ns=mtime_ns, now=5.0)
    assert tracker.is_settled("a", now=5.0, settle_seconds=5)  # without wall_now: sightings only
    assert not tracker.is_settled("a", now=5.0, settle_seconds=5, wall_now=WALL0 + 5)
    due = tracker.due_at("a", 5, now=5.0, wall_now=WALL0 + 5)
    assert due == pytest.approx(15.0)  # wall clock reaches mtime + settle_seconds
    tracker.observe("a", size=10, mtime_ns=mtime_ns, now=15.0)
    assert tracker.is_settled("a", now=15.0, settle_seconds=5, wall_now=WALL0 + 15)


def test_mtime_within_settle_seconds_of_wall_now_holds() -> None:
    tracker = SettleTracker()
    mtime_ns = int((WALL0 + 8) * NS)
    tracker.observe("a", size=10, mtime_ns=mtime_ns, now=0.0)
    tracker.observe("a", size=10, mtime_ns=mtime_ns, now=10.0)
    assert not tracker.is_settled("a", now=10.0, settle_seconds=5, wall_now=WALL0 + 10)
    assert tracker.is_settled("a", now=13.0, settle_seconds=5, wall_now=WALL0 + 13)


def test_mtime_far_in_the_future_is_a_wrong_clock_and_ignored() -> None:
    year_2040_ns = int(2_200_000_000 * NS)
    tracker = SettleTracker(max_clock_skew=300)
    tracker.observe("a", size=10, mtime_ns=year_2040_ns, now=0.0)
    tracker.observe("a", size=10, mtime_ns=year_2040_ns, now=5.0)
    assert tracker.is_settled("a", now=5.0, settle_seconds=5, wall_now=WALL0 + 5)
    assert tracker.due_at("a", 5, now=5.0, wall_now=WALL0 + 5) == 5.0


def test_due_at_wants_both_clocks_or_neither() -> None:
    tracker = SettleTracker()
    tracker.observe("a", size=1, mtime_ns=0, now=0.0)
    with pytest.raises(ValueError, match="both"):
        tracker.due_at("a", 5, now=1.0)
    with pytest.raises(ValueError, match="both"):
        tracker.due_at("a", 5, wall_now=WALL0)


def test_negative_clock_skew_is_refused() -> None:
    with pytest.raises(ValueError, match="max_clock_skew"):
        SettleTracker(max_clock_skew=-1)


def test_sighting_stamped_after_now_proves_nothing() -> None:
    tracker = SettleTracker()
    tracker.observe("a", size=1, mtime_ns=0, now=0.0)
    tracker.observe("a", size=1, mtime_ns=0, now=10.0)
    assert not tracker.is_settled("a", now=3.0, settle_seconds=5)
    tracker.observe("a", size=1, mtime_ns=0, now=2.0)  # out of order: does not shorten the span
    assert tracker.is_settled("a", now=10.0, settle_seconds=5)


def test_forget_len_contains() -> None:
    tracker = SettleTracker()
    tracker.observe(("inbox", "a.pdf"), size=1, mtime_ns=0, now=0.0)
    tracker.observe(("inbox", "b.pdf"), size=1, mtime_ns=0, now=0.0)
    assert len(tracker) == 2
    assert ("inbox", "b.pdf") in tracker
    tracker.forget(("inbox", "a.pdf"))
    tracker.forget(("inbox", "b.pdf"))
    tracker.forget("never-seen")
    assert len(tracker) == 0
    assert ("inbox", "a.pdf") not in tracker
    assert not tracker.is_settled(("inbox", "a.pdf"), now=100.0, settle_seconds=0)


def test_an_old_ctime_settles_a_first_sighting() -> None:
    """A backlog file whose ctime is older than the settle time is taken at the first look."""
    tracker = SettleTracker()
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=100.0, unchanged_for=5.0)
    assert tracker.is_settled("a", now=100.0, settle_seconds=5, wall_now=WALL0 + 100)
    assert not tracker.is_settled("a", now=100.0, settle_seconds=6, wall_now=WALL0 + 100)
    assert tracker.due_at("a", 6) == 101.0


def test_ctime_age_only_dates_back_a_new_sighting() -> None:
    """An unchanged second sighting keeps its start; a change starts from the new ctime age."""
    tracker = SettleTracker()
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=0.0, unchanged_for=1.0)
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=2.0, unchanged_for=100.0)
    assert not tracker.is_settled("a", now=2.0, settle_seconds=5)
    tracker.observe("a", size=11, mtime_ns=OLD_MTIME_NS, now=3.0, unchanged_for=0.0)
    assert not tracker.is_settled("a", now=3.0, settle_seconds=5)
    assert tracker.due_at("a", 5) == 8.0


def test_negative_ctime_age_counts_as_none() -> None:
    """A ctime ahead of our clock (or within the skew doubt) proves nothing."""
    tracker = SettleTracker()
    tracker.observe("a", size=10, mtime_ns=OLD_MTIME_NS, now=10.0, unchanged_for=-300.0)
    assert tracker.due_at("a", 5) == 15.0
