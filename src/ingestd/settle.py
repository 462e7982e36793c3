"""Has a file stopped changing? A pure decision: no I/O, every clock passed in.

The rule
--------
A file is *settled* when two sightings of it, at least ``settle_seconds`` apart on the monotonic
clock, show the same size and the same mtime, and no sighting in between showed anything else.
Consequences:

* The quiet span is measured between sightings, never up to ``now``: a file nobody has looked at
  since it last changed is not known to be unchanged, so callers stat (``observe``) right before
  they ask, and sleep until ``due_at`` between looks.
* A first sighting settles on its own only with ``settle_seconds == 0`` (settle at once) or an
  old enough ctime (below).
* Any difference restarts the clock: growth, shrinking (truncate and rewrite), and a different
  mtime at the same size (overwritten in place, or ``touch``).
* **The mtime may only delay settling, never hasten it.** An old mtime proves nothing: ``cp -p``,
  ``rsync -t`` and unzip preserve the source's mtime, so a file still being copied can carry a
  timestamp from 2019; only unchanged sightings count. A *fresh* mtime is extra evidence of a
  recent write: when ``wall_now`` is passed, a file whose mtime lies less than ``settle_seconds``
  in the past, or in the future by at most ``max_clock_skew`` seconds (a file server whose clock
  runs ahead of ours), is held until the wall clock has moved ``settle_seconds`` past the mtime.
  An mtime further in the future than ``max_clock_skew`` is a wrong clock (a camera, an archive
  made elsewhere), not a write in progress; it is ignored, else such a file would never settle.
* **An old ctime may hasten it.** The kernel sets an inode's ctime on every write (and on
  rename, chmod, utime) and no program can set it back, so a sighting whose ctime lies
  ``settle_seconds`` in the past proves the same quiet as two sightings that far apart: a backlog
  present before the start is taken at once instead of after a second look. The caller passes
  that age as ``unchanged_for``, already reduced by any doubt about the clock that stamped it
  (:mod:`ingestd.sources.mounts`: none on local filesystems, ``max_clock_skew`` elsewhere).
* ``settle_seconds`` must exceed the longest pause of the slowest writer: a scanner that pauses
  3 s between pages needs more than 3 s, or the file settles between two pages.

The tracker keeps one small record per key, is not thread-safe and belongs to one thread.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

_NS = 1_000_000_000
DEFAULT_MAX_CLOCK_SKEW = 300.0


@dataclass(slots=True)
class _Sighting:
    size: int
    mtime_ns: int
    changed_at: float  # monotonic time this (size, mtime) was first seen
    confirmed_at: float  # monotonic time it was last seen unchanged


class SettleTracker:
    """Remembers the last size and mtime of each file and when they last changed."""

    def __init__(self, *, max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW) -> None:
        if max_clock_skew < 0:
            raise ValueError("max_clock_skew must not be negative")
        self._max_clock_skew = max_clock_skew
        self._seen: dict[Hashable, _Sighting] = {}

    def observe(
        self, key: Hashable, *, size: int, mtime_ns: int, now: float, unchanged_for: float = 0.0
    ) -> None:
        """Record a sighting at monotonic time ``now``; a new size or mtime restarts the clock.

        ``unchanged_for``: seconds the file is known not to have changed before this sighting
        (its ctime age, see the module docstring); it dates a new sighting's start back.
        """
        seen = self._seen.get(key)
        if seen is None or seen.size != size or seen.mtime_ns != mtime_ns:
            since = now - max(0.0, unchanged_for)
            self._seen[key] = _Sighting(size, mtime_ns, changed_at=since, confirmed_at=now)
        elif now > seen.confirmed_at:
            seen.confirmed_at = now

    def is_settled(
        self,
        key: Hashable,
        *,
        now: float,
        settle_seconds: float,
        wall_now: float | None = None,
    ) -> bool:
        """True when sightings have shown the file unchanged for at least ``settle_seconds``.

        Unknown keys are never settled. With ``wall_now`` (``time.time()``), a fresh mtime also
        holds the file (see the module docstring).
        """
        seen = self._seen.get(key)
        if seen is None:
            return False
        # min(): a sighting stamped after ``now`` (clocks mixed up by the caller) proves nothing.
        quiet_for = min(now, seen.confirmed_at) - seen.changed_at
        if quiet_for < settle_seconds:
            return False
        return wall_now is None or self._mtime_hold(seen, wall_now, settle_seconds) <= 0

    def due_at(
        self,
        key: Hashable,
        settle_seconds: float,
        *,
        now: float | None = None,
        wall_now: float | None = None,
    ) -> float | None:
        """The earliest monotonic time at which a sighting showing no change would settle the file.

        None for an unknown key. Pass both ``now`` and ``wall_now`` to include the fresh-mtime hold;
        the result may lie in the past (look again now).
        """
        if (now is None) != (wall_now is None):
            raise ValueError("pass both now and wall_now, or neither")
        seen = self._seen.get(key)
        if seen is None:
            return None
        due = seen.changed_at + settle_seconds
        if now is not None and wall_now is not None:
            due = max(due, now + self._mtime_hold(seen, wall_now, settle_seconds))
        return due

    def forget(self, key: Hashable) -> None:
        """Drop everything known about ``key``; unknown keys are ignored."""
        self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def _mtime_hold(self, seen: _Sighting, wall_now: float, settle_seconds: float) -> float:
        """Seconds the fresh-mtime rule still holds the file (zero or less: no hold)."""
        mtime = seen.mtime_ns / _NS
        if mtime - wall_now > self._max_clock_skew:
            return 0.0
        return mtime + settle_seconds - wall_now
