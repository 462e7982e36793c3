"""Interval jobs are spread so that none fires together with another or with the heartbeat."""

from __future__ import annotations

import itertools

import pytest

from ingestd.scheduler import SPREAD, first_delay

HEARTBEAT = 10.0  # the main loop's, from start (daemon.HEARTBEAT_SECONDS)
# Periods the daemon's jobs have by default (multiples of SPREAD), in every order.
PERIODS = (30.0, 60.0, 30.0, 300.0, 3600.0, 30.0)


@pytest.mark.parametrize("count", range(1, len(PERIODS) + 1))
def test_jobs_never_fire_together_nor_beside_the_heartbeat(count: int) -> None:
    for periods in itertools.permutations(PERIODS[:count]):
        delays = [first_delay(i, every) for i, every in enumerate(periods)]
        # Within its own period: an hourly job does not run at every start.
        assert all(0 <= d < every for d, every in zip(delays, periods, strict=True))
        # A job fires at delay + k * every, every a multiple of SPREAD: two jobs can meet only
        # if their delays meet modulo SPREAD, and a job meets the heartbeat only if its delay
        # is a multiple of HEARTBEAT (a divisor of SPREAD).
        for a, b in itertools.combinations(delays, 2):
            apart = abs(a - b) % SPREAD
            assert min(apart, SPREAD - apart) > 1.0, (periods, delays)
        for d in delays:
            assert min(d % HEARTBEAT, HEARTBEAT - d % HEARTBEAT) > 1.0, (periods, delays)


def test_a_rescan_and_a_30_s_job_no_longer_meet() -> None:
    """The case measured: fractions of each job's own period put the first job (60 s) at 37 s
    and the second (30 s) at 7 s, so both fired at 37 s, 97 s, ... forever."""
    rescan, finish = first_delay(0, 60.0), first_delay(1, 30.0)
    assert abs(rescan - finish) % SPREAD > 1.0
