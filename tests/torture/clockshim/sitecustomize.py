"""Loaded by the daemon under test only (PYTHONPATH): its wall clock (time.time,
time.time_ns, and so datetime.now through them is NOT covered) is offset by the seconds
written in $INGESTD_TEST_CLOCK_FILE, read again at most every 50 ms. The monotonic clock is
left alone, as an NTP step or an operator's `date -s` leaves it."""

from __future__ import annotations

import os
import time

_FILE = os.environ.get("INGESTD_TEST_CLOCK_FILE")

if _FILE:
    _real_time, _real_time_ns, _monotonic = time.time, time.time_ns, time.monotonic
    _state = {"offset": 0.0, "read_at": -1.0}

    def _offset() -> float:
        now = _monotonic()
        if now - _state["read_at"] > 0.05:
            _state["read_at"] = now
            try:
                with open(_FILE) as fh:
                    _state["offset"] = float(fh.read().strip() or 0)
            except (OSError, ValueError):
                pass
        return _state["offset"]

    def _time() -> float:
        return _real_time() + _offset()

    def _time_ns() -> int:
        return _real_time_ns() + int(_offset() * 1e9)

    time.time = _time
    time.time_ns = _time_ns
