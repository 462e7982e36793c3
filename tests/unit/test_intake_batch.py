"""Intake queues a backlog in batches (one commit per batch), and a batch whose commit fails is
settled and queued again rather than left behind until the next rescan.

A real intake thread on a real SQLite catalog and a local inbox (settle_seconds 0: every file
counts as settled at first sight).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ingestd import intake as intake_module
from ingestd.catalog.intake_ops import Hashed
from ingestd.catalog.repo import Catalog, QueueOutcome
from ingestd.config import Settings
from ingestd.intake import QUEUE_BATCH
from ingestd.states import FileState
from tests.intakes import running_intake
from tests.waiting import until

REACT_SECONDS = 20.0


class FailingOnce(Catalog):
    """A catalog whose first batch commit fails (e.g. the disk was full for a moment)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batches: list[int] = []

    def queue_many(self, items: Sequence[Hashed]) -> list[QueueOutcome | None]:
        self.batches.append(len(items))
        if len(self.batches) == 1:
            raise OSError("disk full")
        return super().queue_many(items)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(QUEUE_BATCH * 2 + 10):
        (inbox / f"scan{i:04d}.txt").write_text(f"page {i}\n")
    (inbox / "copy-of-scan0000.txt").write_text("page 0\n")
    return Settings(
        state_dir=tmp_path / "state",
        destinations={"main": {"type": "directory", "path": str(tmp_path / "bucket")}},
        inboxes=[
            {
                "name": "scans",
                "path": str(inbox),
                "destination": "main",
                "allowed_types": ["txt"],
                "settle_seconds": 0,
            }
        ],
    )


@pytest.fixture
def running(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FailingOnce, list[str]]]:
    # Batches cut by count only: how long hashing takes on this machine does not matter.
    monkeypatch.setattr(intake_module, "QUEUE_BATCH_SECONDS", 3600.0)
    catalog = FailingOnce.open(settings.effective_catalog_url)
    assert isinstance(catalog, FailingOnce)
    woken: list[str] = []
    with running_intake(settings, catalog, woken):
        yield catalog, woken
    catalog.close()


def test_a_backlog_is_queued_in_batches_and_a_failed_batch_is_not_lost(
    running: tuple[FailingOnce, list[str]],
) -> None:
    catalog, woken = running
    total = QUEUE_BATCH * 2 + 11

    def settled() -> bool:
        counts = catalog.counts()
        return counts["queued"] + counts["duplicate"] == total

    assert until(settled, REACT_SECONDS), catalog.counts()
    counts = catalog.counts()
    assert (counts["queued"], counts["duplicate"]) == (total - 1, 1)
    assert counts["discovered"] == 0
    # Settled at first sight (settle_seconds 0): batches of QUEUE_BATCH, the rest of the pass
    # in a smaller one; the failed batch's files are settled and queued again a turn later.
    assert catalog.batches == [QUEUE_BATCH, QUEUE_BATCH, total - 2 * QUEUE_BATCH, QUEUE_BATCH]
    assert set(woken) == {"main"}
    assert len(woken) < len(catalog.batches), "the lane is woken per batch, not per file"
    duplicate = catalog.by_state(FileState.DUPLICATE)[0]
    assert duplicate.relpath in {"scan0000.txt", "copy-of-scan0000.txt"}
