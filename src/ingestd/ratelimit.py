"""Bandwidth limiting: a thread-safe token bucket and a weekly schedule of rates.

``TokenBucket`` is shared by every part in flight to one destination; each sender calls
``acquire(n)`` before it sends ``n`` bytes. ``BandwidthSchedule`` turns ``max_bandwidth_mbps``
and optional time windows into the rate for a given local time (pure); whoever owns the bucket
calls ``set_rate`` when the schedule says the rate changed.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Clock = Callable[[], float]
Sleep = Callable[[float], None]

# A sleeping sender re-reads the rate this often, so set_rate() (a schedule window opening)
# takes effect within this time even for a waiter that owes a lot.
MAX_SLEEP_SECONDS = 0.5


def mbps_to_bytes_per_second(mbps: float) -> float:
    """Megabits per second (10^6 bits, as network links are sold) in bytes per second."""
    return mbps * 1_000_000 / 8


class TokenBucket:
    """Admits bytes at ``rate_bytes_per_s`` on average, with bursts up to ``burst`` bytes.

    ``None`` as the rate means unlimited: ``acquire`` returns at once. The default burst is
    one second's worth of bytes. Waiters reserve their bytes in arrival order and then sleep
    until the bucket has refilled what they owe, so the total rate is exact however many
    threads share the bucket, and nobody busy-waits.
    """

    def __init__(
        self,
        rate_bytes_per_s: float | None,
        *,
        burst: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        """Start with a full bucket. Raises ValueError for a rate or burst that is not > 0."""
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._fixed_burst = _positive_or_none(burst, "burst")
        self._rate: float | None = None
        self._burst = 0.0
        self._configure(rate_bytes_per_s)
        self._tokens = self._burst
        # Every byte ever added by refills: a waiter may go once this passes its mark.
        self._filled = 0.0
        self._stamp = clock()

    @property
    def rate(self) -> float | None:
        """The current rate in bytes per second (None: unlimited)."""
        return self._rate

    @property
    def burst(self) -> float:
        """The most bytes admitted at once after an idle period."""
        return self._burst

    def set_rate(self, rate_bytes_per_s: float | None) -> None:
        """Change the rate from now on; bytes already owed are paid at the new rate."""
        with self._lock:
            self._refill()
            was_unlimited = self._rate is None
            self._configure(rate_bytes_per_s)
            # Coming from unlimited, nobody owes anything: start full, as a new bucket does.
            self._tokens = self._burst if was_unlimited else min(self._tokens, self._burst)

    def acquire(self, n: float, *, cancel: threading.Event | None = None) -> bool:
        """Block until ``n`` bytes may be sent; True then, False if ``cancel`` was set first
        (the slice being waited for is then given back).

        ``n`` larger than the burst is paid off in burst-sized slices, so one big part cannot
        starve the other senders for longer than one slice.
        """
        if n < 0:
            raise ValueError(f"cannot acquire a negative number of bytes ({n})")
        left = float(n)
        while left > 0:
            if cancel is not None and cancel.is_set():
                return False
            with self._lock:
                if self._rate is None:
                    return True
                piece = min(left, self._burst)
                mark = self._reserve(piece)
            if not self._wait_for(mark, cancel):
                with self._lock:  # give back what was reserved but will not be sent
                    self._tokens = min(self._burst, self._tokens + piece)
                return False
            left -= piece
        return True

    def _configure(self, rate: float | None) -> None:
        self._rate = _positive_or_none(rate, "rate")
        if self._rate is not None:
            self._burst = self._fixed_burst or self._rate

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        if self._rate is None:
            self._tokens = self._burst
            return
        added = elapsed * self._rate
        self._filled += added
        self._tokens = min(self._burst, self._tokens + added)

    def _reserve(self, piece: float) -> float:
        """Take ``piece`` tokens (going into debt if needed); return the ``_filled`` mark at
        which the debt is paid."""
        self._refill()
        self._tokens -= piece
        return self._filled + max(0.0, -self._tokens)

    def _wait_for(self, mark: float, cancel: threading.Event | None) -> bool:
        while True:
            with self._lock:
                self._refill()
                if self._rate is None or self._filled >= mark - 1e-9:
                    return True
                owed = (mark - self._filled) / self._rate
            if cancel is not None and cancel.is_set():
                return False
            self._sleep(min(owed, MAX_SLEEP_SECONDS))


def _positive_or_none(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    if not value > 0:
        raise ValueError(f"{what} must be greater than 0 (got {value}); use None for unlimited")
    return float(value)


# ---------------------------------------------------------------------------------- schedule

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
_TIME = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")
_WINDOW_KEYS = frozenset({"days", "start", "end", "mbps"})


class ScheduleError(ValueError):
    """Invalid bandwidth windows; ``problems`` lists every one, each a full sentence."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class BandwidthWindow:
    """``mbps`` from ``start`` to ``end`` (minutes after midnight) on ``days`` (0 = Monday).

    A window whose end is not after its start runs past midnight into the next day; it belongs
    to the day it starts on (``days="fri", start="22:00", end="06:00"`` ends Saturday 06:00).
    """

    days: frozenset[int]
    start: int
    end: int
    mbps: float

    def spans(self) -> list[tuple[int, int]]:
        """The minutes of the week this window covers, as [from, to) pairs (to may exceed a
        week for a Sunday window running into Monday)."""
        length = (self.end - self.start) % MINUTES_PER_DAY or MINUTES_PER_DAY
        return [
            (d * MINUTES_PER_DAY + self.start, d * MINUTES_PER_DAY + self.start + length)
            for d in sorted(self.days)
        ]

    def covers(self, minute_of_week: int) -> bool:
        """True when the minute (0 = Monday 00:00) falls inside this window."""
        for lo, hi in self.spans():
            if lo <= minute_of_week < hi or lo <= minute_of_week + MINUTES_PER_WEEK < hi:
                return True
        return False


@dataclass(frozen=True)
class BandwidthSchedule:
    """The rate limit at any local time: the window covering it, else ``max_mbps``."""

    max_mbps: float | None
    windows: tuple[BandwidthWindow, ...] = ()

    @classmethod
    def parse(
        cls, max_bandwidth_mbps: float | None, windows: Iterable[Mapping[str, Any]] = ()
    ) -> BandwidthSchedule:
        """Validate ``max_bandwidth_mbps`` (None or 0 = unlimited) and windows like
        ``{"days": "mon-fri", "start": "08:00", "end": "18:00", "mbps": 5}``.

        Raises ScheduleError naming every problem (``windows[1].days: ...``); overlapping
        windows are a problem too, since it would be unclear which rate applies.
        """
        problems: list[str] = []
        if max_bandwidth_mbps is not None and (
            isinstance(max_bandwidth_mbps, bool)
            or not isinstance(max_bandwidth_mbps, int | float)
            or max_bandwidth_mbps < 0
        ):
            problems.append(
                f"max_bandwidth_mbps: must be a number >= 0 (got {max_bandwidth_mbps!r})"
            )
        parsed: list[BandwidthWindow] = []
        for i, raw in enumerate(windows):
            window = _parse_window(f"windows[{i}]", raw, problems)
            if window is not None:
                problems.extend(_overlaps(i, window, parsed))
                parsed.append(window)
        if problems:
            raise ScheduleError(problems)
        limit = float(max_bandwidth_mbps) if max_bandwidth_mbps else None
        return cls(max_mbps=limit, windows=tuple(parsed))

    def mbps_at(self, when: datetime) -> float | None:
        """The limit in Mbit/s at local wall-clock time ``when`` (None: unlimited)."""
        minute = when.weekday() * MINUTES_PER_DAY + when.hour * 60 + when.minute
        for window in self.windows:
            if window.covers(minute):
                return window.mbps
        return self.max_mbps

    def bytes_per_second_at(self, when: datetime) -> float | None:
        """``mbps_at`` in bytes per second, ready for ``TokenBucket.set_rate``."""
        mbps = self.mbps_at(when)
        return None if mbps is None else mbps_to_bytes_per_second(mbps)


def _parse_window(where: str, raw: Any, problems: list[str]) -> BandwidthWindow | None:
    if not isinstance(raw, Mapping):
        problems.append(
            f'{where}: must be a table like {{days="mon-fri", start="08:00", end="18:00", mbps=5}}'
        )
        return None
    before = len(problems)
    unknown = sorted(set(map(str, raw)) - _WINDOW_KEYS)
    if unknown:
        problems.append(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: days, start, end, mbps)"
        )
    days = _parse_days(where, raw.get("days", "mon-sun"), problems)
    start = _parse_time(f"{where}.start", raw.get("start"), problems, allow_24=False)
    end = _parse_time(f"{where}.end", raw.get("end"), problems, allow_24=True)
    mbps = raw.get("mbps")
    if isinstance(mbps, bool) or not isinstance(mbps, int | float) or mbps <= 0:
        problems.append(f"{where}.mbps: must be a number greater than 0 (got {mbps!r})")
    if start is not None and end is not None and start == end % MINUTES_PER_DAY and end != 24 * 60:
        problems.append(
            f"{where}: start and end are both {raw.get('start')}; for a whole day "
            'use start="00:00", end="24:00"'
        )
    if len(problems) > before or days is None or start is None or end is None:
        return None
    assert isinstance(mbps, int | float)
    return BandwidthWindow(days=days, start=start, end=end % MINUTES_PER_DAY, mbps=float(mbps))


def _parse_days(where: str, value: Any, problems: list[str]) -> frozenset[int] | None:
    """``mon-fri``, ``sat,sun``, ``fri-mon`` (wraps), ``mon-fri,sun``, ``*`` or ``daily``."""
    if not isinstance(value, str) or not value.strip():
        problems.append(f'{where}.days: must be text like "mon-fri" or "sat,sun" (got {value!r})')
        return None
    text = value.strip().lower()
    if text in ("*", "daily", "all"):
        return frozenset(range(7))
    days: set[int] = set()
    for item in text.split(","):
        first, _, last = item.strip().partition("-")
        ends = [_day_index(first), _day_index(last) if last else _day_index(first)]
        if None in ends:
            problems.append(
                f"{where}.days: {item.strip()!r} is not a day or a range of days "
                f'(use {" ".join(DAY_NAMES)}, e.g. "mon-fri" or "sat,sun")'
            )
            return None
        lo, hi = ends[0], ends[1]
        assert lo is not None and hi is not None
        days.update((lo + k) % 7 for k in range((hi - lo) % 7 + 1))
    return frozenset(days)


def _day_index(name: str) -> int | None:
    name = name.strip()[:3]
    return DAY_NAMES.index(name) if name in DAY_NAMES else None


def _parse_time(where: str, value: Any, problems: list[str], *, allow_24: bool) -> int | None:
    match = _TIME.match(value.strip()) if isinstance(value, str) else None
    minutes = int(match.group(1)) * 60 + int(match.group(2)) if match else -1
    if not match or minutes > MINUTES_PER_DAY or (minutes == MINUTES_PER_DAY and not allow_24):
        latest = "24:00" if allow_24 else "23:59"
        problems.append(f'{where}: must be a time "HH:MM" from 00:00 to {latest} (got {value!r})')
        return None
    return minutes


def _overlaps(index: int, window: BandwidthWindow, earlier: list[BandwidthWindow]) -> list[str]:
    for j, other in enumerate(earlier):
        for lo, hi in window.spans():
            for olo, ohi in other.spans():
                for shift in (-MINUTES_PER_WEEK, 0, MINUTES_PER_WEEK):
                    start, stop = max(lo, olo + shift), min(hi, ohi + shift)
                    if start < stop:
                        return [
                            f"windows[{index}]: overlaps windows[{j}] from "
                            f"{_describe_minute(start)} to {_describe_minute(stop)}; "
                            "windows must not overlap"
                        ]
    return []


def _describe_minute(minute_of_week: int) -> str:
    minute_of_week %= MINUTES_PER_WEEK
    day, minute = divmod(minute_of_week, MINUTES_PER_DAY)
    return f"{DAY_NAMES[day]} {minute // 60:02d}:{minute % 60:02d}"
