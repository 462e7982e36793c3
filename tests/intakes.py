"""A real intake thread on a given catalog and settings, for tests that drive intake alone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ingestd.catalog.repo import Catalog
from ingestd.config import Settings
from ingestd.daemon import md5_thresholds
from ingestd.intake import Intake
from ingestd.metrics import Metrics
from ingestd.sources.build import build_sources


@contextmanager
def running_intake(
    settings: Settings,
    catalog: Catalog,
    woken: list[str],
    *,
    post_due: Callable[[int], None] = lambda _file_id: None,
) -> Iterator[Intake]:
    """Intake started and rescanning; the destinations it wakes are appended to ``woken``;
    ``post_due`` hears of duplicates and rejects whose post-action is due."""
    intake: Intake

    def hint(inbox: str, relpath: str) -> None:
        intake.hint(inbox, relpath)

    intake = Intake(
        catalog=catalog,
        settings=settings,
        sources=build_sources(settings, hint),
        on_queued=woken.append,
        observer=Metrics(),
        md5_below=md5_thresholds(settings),
        post_due=post_due,
    )
    intake.start()
    intake.rescan()
    try:
        yield intake
    finally:
        intake.stop(timeout=10)
