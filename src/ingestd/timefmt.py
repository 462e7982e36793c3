"""UNIX times as ISO 8601 in UTC: the one way every printer and payload writes a time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal


def iso_utc(
    ts: float | None,
    *,
    timespec: Literal["seconds", "milliseconds"] = "seconds",
    zulu: bool = False,
) -> str | None:
    """``ts`` as ``2024-05-06T08:00:00+00:00`` (``...Z`` with ``zulu``, as webhooks send it);
    None, and 0 (a time never set), stay None."""
    if not ts:
        return None
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z") if zulu else text
