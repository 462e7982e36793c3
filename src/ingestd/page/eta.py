"""When the backlog will be done: a pure estimate from what the catalog knows
(docs/ARCHITECTURE.md, "The dashboard")."""

from __future__ import annotations


def backlog_eta(
    *,
    bytes_left: int,
    files_left: int,
    recent_rate: float | None,
    current_speed: float | None,
    cooldown_seconds: float,
) -> float | None:
    """Seconds until the queue is empty; 0 when it is; None when nothing says how fast it goes.

    The recent throughput (bytes uploaded over the last minutes, per wall-clock second) already
    holds the cooldowns, the gate's waits and the per-file overhead, so it is preferred. Without
    it (the first file of a backlog is still going up) the current upload's speed is the only
    measure, and the cooldown after each file is added to it."""
    if files_left <= 0:
        return 0.0
    if recent_rate:
        return bytes_left / recent_rate
    if current_speed:
        return bytes_left / current_speed + files_left * cooldown_seconds
    return None
