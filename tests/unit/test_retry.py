"""Retry timing: equal-jitter exponential backoff, and the destination probe pacing."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestd.retry import Backoff, backoff_delay


@pytest.mark.parametrize("attempt", [0, -1, -100])
def test_no_attempt_yet_means_no_wait(attempt: int) -> None:
    assert backoff_delay(attempt, base=5, cap=900, rand=lambda: 0.99) == 0.0


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 2.5, 5.0), (2, 5.0, 10.0), (3, 10.0, 20.0), (8, 320.0, 640.0), (9, 450.0, 900.0)],
)
def test_delay_grows_exponentially_between_half_ceiling_and_ceiling(
    attempt: int, low: float, high: float
) -> None:
    assert backoff_delay(attempt, base=5, cap=900, rand=lambda: 0.0) == low
    assert backoff_delay(attempt, base=5, cap=900, rand=lambda: 1.0) == high
    assert backoff_delay(attempt, base=5, cap=900, rand=lambda: 0.5) == (low + high) / 2


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=1000),
    cap=st.floats(min_value=0.001, max_value=100_000),
    r=st.floats(min_value=0.0, max_value=1.0),
)
def test_delay_is_always_within_half_ceiling_and_ceiling_and_never_above_cap(
    attempt: int, base: float, cap: float, r: float
) -> None:
    delay = backoff_delay(attempt, base=base, cap=cap, rand=lambda: r)
    top = min(cap, base * 2.0 ** min(attempt - 1, 32))
    assert top / 2 <= delay <= top
    assert delay <= cap
    assert delay > 0, "never retry immediately"


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert backoff_delay(10**9, base=5, cap=900, rand=lambda: 1.0) == 900.0


@given(
    base=st.floats(min_value=0.01, max_value=100),
    cap=st.floats(min_value=0.01, max_value=10_000),
)
def test_ceiling_is_monotone_in_the_attempt(base: float, cap: float) -> None:
    highs = [backoff_delay(a, base=base, cap=cap, rand=lambda: 1.0) for a in range(1, 60)]
    lows = [backoff_delay(a, base=base, cap=cap, rand=lambda: 0.0) for a in range(1, 60)]
    assert highs == sorted(highs)
    assert lows == sorted(lows)
    assert highs[-1] == cap


def test_jitter_spreads_many_files_over_the_whole_upper_half() -> None:
    rng = random.Random(1234)
    delays = [backoff_delay(4, base=5, cap=900, rand=rng.random) for _ in range(2000)]
    assert min(delays) >= 20.0 and max(delays) <= 40.0
    # ten equal buckets over [20, 40): every one is used, none holds most of the retries
    buckets = [0] * 10
    for d in delays:
        buckets[min(int((d - 20.0) / 2.0), 9)] += 1
    assert all(100 <= b <= 300 for b in buckets), buckets
    assert len(set(delays)) > 1900, "retries of many files must not line up"


def test_default_rand_is_random_but_bounded() -> None:
    delays = {backoff_delay(3, base=1, cap=100) for _ in range(50)}
    assert len(delays) > 1
    assert all(2.0 <= d <= 4.0 for d in delays)


def test_backoff_probe_pacing_starts_at_first_and_caps() -> None:
    probe = Backoff(first=1.0, cap=30.0, rand=lambda: 0.0)
    waits = [probe.failed() for _ in range(8)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0, 15.0]
    assert probe.failures == 8
    top = Backoff(first=1.0, cap=30.0, rand=lambda: 1.0)
    assert [top.failed() for _ in range(6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_backoff_reset_starts_over() -> None:
    probe = Backoff(first=0.5, cap=10.0, rand=lambda: 0.0)
    for _ in range(5):
        probe.failed()
    assert probe.failures == 5
    probe.reset()
    assert probe.failures == 0
    assert probe.failed() == 0.5
    assert probe.failures == 1
