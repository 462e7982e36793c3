"""iso_utc: the one time format of printers and payloads."""

from __future__ import annotations

from ingestd.timefmt import iso_utc


def test_iso_utc_forms() -> None:
    ts = 1714982400.25  # 2024-05-06T08:00:00.25Z
    assert iso_utc(ts) == "2024-05-06T08:00:00+00:00"
    assert iso_utc(ts, timespec="milliseconds") == "2024-05-06T08:00:00.250+00:00"
    assert iso_utc(ts, zulu=True) == "2024-05-06T08:00:00Z"
    assert iso_utc(None) is None
    assert iso_utc(0) is None
