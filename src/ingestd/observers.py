"""What the pipeline reports as it works, for metrics (and tests) to count.

Observers are metrics only: cheap, never raising, never writing. Anything that must survive a
crash (a notification, a hand-off to another stage) is written by a catalog operation in the
transaction of the transition it follows (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from typing import Protocol

from ingestd.catalog.repo import FileRow


class LaneObserver(Protocol):
    """Told about upload-lane happenings. Implementations must be cheap and never raise."""

    def lane_paused(self, destination: str, paused: bool) -> None: ...
    def destination_up(self, destination: str, up: bool) -> None: ...
    def bytes_sent(self, destination: str, nbytes: int) -> None: ...
    def retry(self, destination: str, kind: str) -> None: ...
    def uploaded(self, destination: str, row: FileRow, seconds: float) -> None: ...
    def failed(self, destination: str, row: FileRow) -> None: ...
    def duplicate(self, destination: str, row: FileRow) -> None: ...


class IntakeObserver(Protocol):
    """Told about intake outcomes. Implementations must be cheap and never raise."""

    def discovered(self, inbox: str) -> None: ...
    def processed(
        self, inbox: str, outcome: str, reason: str | None = None, file_id: int | None = None
    ) -> None: ...
