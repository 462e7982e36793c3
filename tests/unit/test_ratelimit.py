"""Token bucket accounting with an injected clock, and the weekly bandwidth schedule."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest

from ingestd.ratelimit import (
    BandwidthSchedule,
    ScheduleError,
    TokenBucket,
    mbps_to_bytes_per_second,
)


class FakeTime:
    """A clock that only moves when somebody sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the bucket never sleeps for nothing"
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def make_bucket(rate: float | None, burst: float | None = None) -> tuple[TokenBucket, FakeTime]:
    fake = FakeTime()
    return TokenBucket(rate, burst=burst, clock=fake.clock, sleep=fake.sleep), fake


# ----------------------------------------------------------------------------- token bucket


def test_full_bucket_admits_one_burst_without_waiting() -> None:
    bucket, fake = make_bucket(1000)
    assert bucket.burst == 1000  # default: one second's worth
    assert bucket.acquire(1000)
    assert fake.sleeps == []


def test_waits_exactly_for_the_bytes_owed() -> None:
    bucket, fake = make_bucket(100, burst=100)
    bucket.acquire(100)
    bucket.acquire(250)  # 2.5 s at 100 B/s, paid in slices of at most the burst
    assert fake.now == pytest.approx(2.5)
    assert sum(fake.sleeps) == pytest.approx(2.5)


def test_long_run_rate_is_exact() -> None:
    bucket, fake = make_bucket(1_000_000, burst=64_000)
    total = 0
    for size in [8_192, 65_536, 1, 500_000, 3_000_000, 12_345] * 10:
        bucket.acquire(size)
        total += size
    # Everything beyond the initial burst is paid at exactly the rate.
    assert fake.now == pytest.approx((total - 64_000) / 1_000_000)


def test_request_larger_than_burst_is_paid_in_slices() -> None:
    bucket, fake = make_bucket(10, burst=10)
    bucket.acquire(10)
    bucket.acquire(45)
    assert fake.now == pytest.approx(4.5)
    assert max(fake.sleeps) <= 1.0  # no single wait longer than one burst's worth


def test_idle_time_refills_up_to_the_burst_only() -> None:
    bucket, fake = make_bucket(100, burst=200)
    bucket.acquire(200)
    fake.advance(3600)  # an hour idle earns no more than the burst
    bucket.acquire(200)
    assert fake.sleeps == []
    bucket.acquire(100)
    assert fake.now == pytest.approx(3601.0)


def test_unlimited_never_waits() -> None:
    bucket, fake = make_bucket(None)
    assert bucket.rate is None
    assert bucket.acquire(10**12)
    assert fake.sleeps == []


def test_zero_bytes_is_free() -> None:
    bucket, fake = make_bucket(1, burst=1)
    bucket.acquire(1)
    assert bucket.acquire(0)
    assert fake.sleeps == []


@pytest.mark.parametrize("rate", [0, -5])
def test_non_positive_rate_is_rejected(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be greater than 0"):
        TokenBucket(rate)


def test_negative_acquire_is_rejected() -> None:
    bucket, _ = make_bucket(100)
    with pytest.raises(ValueError, match="negative"):
        bucket.acquire(-1)


def test_set_rate_applies_to_later_bytes() -> None:
    bucket, fake = make_bucket(100, burst=100)
    bucket.acquire(100)
    bucket.set_rate(1000)  # a burst given explicitly stays as it was
    assert bucket.burst == 100
    bucket.acquire(1000)
    assert fake.now == pytest.approx(1.0)


def test_default_burst_follows_the_rate() -> None:
    bucket, _ = make_bucket(100)
    bucket.set_rate(5000)
    assert bucket.burst == 5000


def test_rate_change_while_waiting_takes_effect() -> None:
    fake = FakeTime()
    calls = 0

    def sleep(seconds: float) -> None:
        nonlocal calls
        calls += 1
        fake.sleep(seconds)
        if calls == 1:
            bucket.set_rate(1000)  # a faster window opens while the sender waits

    bucket = TokenBucket(100, burst=100, clock=fake.clock, sleep=sleep)
    bucket.acquire(100)
    bucket.acquire(100)  # owes 1 s at 100 B/s; after 0.5 s the rest is paid at 1000 B/s
    assert fake.sleeps[0] == pytest.approx(0.5)
    assert fake.now == pytest.approx(0.5 + 50 / 1000)


def test_switching_to_unlimited_releases_waiters() -> None:
    fake = FakeTime()

    def sleep(seconds: float) -> None:
        fake.sleep(seconds)
        bucket.set_rate(None)

    bucket = TokenBucket(1, burst=1, clock=fake.clock, sleep=sleep)
    bucket.acquire(1)
    assert bucket.acquire(1_000_000)
    assert len(fake.sleeps) == 1


def test_switching_from_unlimited_starts_with_a_full_bucket() -> None:
    bucket, fake = make_bucket(None)
    bucket.acquire(10**9)
    bucket.set_rate(100)
    bucket.acquire(100)
    assert fake.sleeps == []


def test_cancel_stops_waiting() -> None:
    fake = FakeTime()
    cancel = threading.Event()

    def sleep(seconds: float) -> None:
        fake.sleep(seconds)
        cancel.set()

    bucket = TokenBucket(10, burst=10, clock=fake.clock, sleep=sleep)
    bucket.acquire(10)
    assert bucket.acquire(1000, cancel=cancel) is False
    assert fake.now == pytest.approx(0.5)
    # The cancelled slice was given back: the next 10 bytes wait only for what is missing.
    cancel.clear()
    bucket.acquire(10)
    assert fake.now == pytest.approx(1.0)


def test_four_threads_never_exceed_the_rate() -> None:
    """Virtual clock shared by 4 threads: every sleep moves time for everyone, so time can
    only run ahead of the bytes, never behind. The bytes admitted by any moment never exceed
    burst + rate * elapsed."""
    fake = FakeTime()
    rate, burst = 10_000.0, 1_000.0
    bucket = TokenBucket(rate, burst=burst, clock=fake.clock, sleep=fake.sleep)
    admitted: list[tuple[float, int]] = []
    lock = threading.Lock()

    def sender() -> None:
        for _ in range(50):
            bucket.acquire(400)
            with lock:
                admitted.append((fake.clock(), 400))

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(admitted) == 200
    total = 0
    for at, size in sorted(admitted):
        total += size
        assert total <= burst + rate * at + 1e-6


def test_four_threads_share_the_rate_in_real_time() -> None:
    rate, burst = 400_000.0, 20_000.0
    bucket = TokenBucket(rate, burst=burst)
    per_thread = 100_000
    started = time.monotonic()

    def sender() -> None:
        sent = 0
        while sent < per_thread:
            bucket.acquire(5_000)
            sent += 5_000

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    elapsed = time.monotonic() - started
    expected = (4 * per_thread - burst) / rate  # 0.95 s
    assert expected * 0.95 <= elapsed <= expected + 0.5


def test_mbps_are_megabits() -> None:
    assert mbps_to_bytes_per_second(8) == 1_000_000


# ----------------------------------------------------------------------------- schedule

MON = datetime(2024, 5, 6)  # a Monday


def at(day: int, hh: int, mm: int = 0) -> datetime:
    return MON.replace(day=6 + day, hour=hh, minute=mm)


def test_no_limit_without_setting() -> None:
    schedule = BandwidthSchedule.parse(None)
    assert schedule.mbps_at(at(0, 12)) is None
    assert schedule.bytes_per_second_at(at(0, 12)) is None
    assert BandwidthSchedule.parse(0).mbps_at(at(0, 12)) is None


def test_office_hours_window() -> None:
    schedule = BandwidthSchedule.parse(
        100, [{"days": "mon-fri", "start": "08:00", "end": "18:00", "mbps": 5}]
    )
    assert schedule.mbps_at(at(0, 7, 59)) == 100
    assert schedule.mbps_at(at(0, 8, 0)) == 5
    assert schedule.mbps_at(at(4, 17, 59)) == 5
    assert schedule.mbps_at(at(4, 18, 0)) == 100  # end is exclusive
    assert schedule.mbps_at(at(5, 12)) == 100  # Saturday
    assert schedule.bytes_per_second_at(at(0, 9)) == 625_000


def test_window_across_midnight_belongs_to_its_start_day() -> None:
    schedule = BandwidthSchedule.parse(
        10, [{"days": "fri", "start": "22:00", "end": "06:00", "mbps": 200}]
    )
    assert schedule.mbps_at(at(4, 21, 59)) == 10
    assert schedule.mbps_at(at(4, 23, 30)) == 200
    assert schedule.mbps_at(at(5, 5, 59)) == 200  # Saturday morning, still Friday's night
    assert schedule.mbps_at(at(5, 6, 0)) == 10
    assert schedule.mbps_at(at(3, 23)) == 10  # Thursday night is not in the window
    assert schedule.mbps_at(at(0, 1)) == 10  # nor Monday early morning


def test_sunday_night_window_runs_into_monday() -> None:
    schedule = BandwidthSchedule.parse(
        None, [{"days": "sun", "start": "20:00", "end": "04:00", "mbps": 1}]
    )
    assert schedule.mbps_at(at(6, 20)) == 1
    assert schedule.mbps_at(at(0, 3, 59)) == 1
    assert schedule.mbps_at(at(0, 4)) is None


def test_day_lists_ranges_and_wrapping_ranges() -> None:
    schedule = BandwidthSchedule.parse(
        None,
        [
            {"days": "sat,sun", "start": "00:00", "end": "24:00", "mbps": 50},
            {"days": "mon,wed-thu", "start": "12:00", "end": "13:00", "mbps": 2},
        ],
    )
    assert schedule.mbps_at(at(5, 0)) == 50
    assert schedule.mbps_at(at(6, 23, 59)) == 50
    assert schedule.mbps_at(at(0, 12, 30)) == 2
    assert schedule.mbps_at(at(1, 12, 30)) is None
    assert schedule.mbps_at(at(3, 12, 30)) == 2
    wrap = BandwidthSchedule.parse(
        None, [{"days": "fri-mon", "start": "01:00", "end": "02:00", "mbps": 3}]
    )
    assert [wrap.mbps_at(at(d, 1)) for d in range(7)] == [3, None, None, None, 3, 3, 3]


def test_days_default_to_every_day() -> None:
    schedule = BandwidthSchedule.parse(None, [{"start": "09:00", "end": "10:00", "mbps": 1}])
    assert all(schedule.mbps_at(at(d, 9, 30)) == 1 for d in range(7))


def problems_of(max_mbps: object, windows: list[object]) -> list[str]:
    with pytest.raises(ScheduleError) as info:
        BandwidthSchedule.parse(max_mbps, windows)  # type: ignore[arg-type]
    return info.value.problems


def test_invalid_windows_are_all_reported() -> None:
    problems = problems_of(
        -1,
        [
            {"days": "mon-fir", "start": "08:00", "end": "18:00", "mbps": 5},
            {"days": "sat", "start": "25:00", "end": "8am", "mbps": 0},
            {"days": "sun", "start": "10:00", "end": "10:00", "mbps": 1, "speed": 3},
            "fast",
        ],
    )
    text = "\n".join(problems)
    assert "max_bandwidth_mbps: must be a number >= 0 (got -1)" in text
    assert "windows[0].days: 'mon-fir' is not a day or a range of days" in text
    assert "windows[1].start: must be a time \"HH:MM\" from 00:00 to 23:59 (got '25:00')" in text
    assert "windows[1].end: must be a time \"HH:MM\" from 00:00 to 24:00 (got '8am')" in text
    assert "windows[1].mbps: must be a number greater than 0 (got 0)" in text
    assert "windows[2]: unknown key(s) speed" in text
    assert "windows[2]: start and end are both 10:00" in text
    assert "windows[3]: must be a table" in text
    assert len(problems) == 8


def test_overlapping_windows_are_rejected_with_where() -> None:
    problems = problems_of(
        None,
        [
            {"days": "mon-fri", "start": "08:00", "end": "18:00", "mbps": 5},
            {"days": "fri", "start": "17:00", "end": "02:00", "mbps": 50},
        ],
    )
    assert problems == [
        "windows[1]: overlaps windows[0] from fri 17:00 to fri 18:00; windows must not overlap"
    ]


def test_overlap_across_the_week_boundary_is_found() -> None:
    problems = problems_of(
        None,
        [
            {"days": "sun", "start": "23:00", "end": "02:00", "mbps": 5},
            {"days": "mon", "start": "01:00", "end": "03:00", "mbps": 6},
        ],
    )
    assert problems == [
        "windows[1]: overlaps windows[0] from mon 01:00 to mon 02:00; windows must not overlap"
    ]


def test_adjacent_windows_do_not_overlap() -> None:
    schedule = BandwidthSchedule.parse(
        None,
        [
            {"days": "mon", "start": "08:00", "end": "12:00", "mbps": 1},
            {"days": "mon", "start": "12:00", "end": "08:00", "mbps": 2},
        ],
    )
    assert schedule.mbps_at(at(0, 11, 59)) == 1
    assert schedule.mbps_at(at(0, 12)) == 2
    assert schedule.mbps_at(at(1, 7, 59)) == 2
    assert schedule.mbps_at(at(1, 8)) is None
