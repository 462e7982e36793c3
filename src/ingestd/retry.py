"""Retry timing: pure functions of the attempt number and a random source."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (attempt counts from 1).

    Exponential growth capped at ``cap``, with "equal jitter": half the delay is fixed, half
    random, so retries of many files spread out but never retry immediately.
    """
    if attempt < 1:
        return 0.0
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 32))
    return ceiling / 2 + rand() * ceiling / 2


class Backoff:
    """Probe pacing for a destination that is down: 1 s, 2 s, 4 s ... up to ``cap``."""

    def __init__(
        self, *, first: float = 1.0, cap: float = 30.0, rand: Callable[[], float] = random.random
    ) -> None:
        self._first = first
        self._cap = cap
        self._rand = rand
        self._failures = 0

    def failed(self) -> float:
        """Record a failed probe and return how long to wait before the next one."""
        self._failures += 1
        return backoff_delay(self._failures, base=self._first * 2, cap=self._cap, rand=self._rand)

    def reset(self) -> None:
        """The destination answered: the next failure starts again from ``first``."""
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failed probes since the last ``reset``."""
        return self._failures
