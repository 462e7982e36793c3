"""The catalog repository: the only code that writes a file's state.

Every transition is checked against ``states.ALLOWED`` and written together with its event row in
one short transaction (``CatalogBase._transition``). The operations are grouped by who uses them
(intake, lanes, post-actions, operators) in sibling modules; ``Catalog`` is all of them. Reads
for people live in ``catalog.queries``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ingestd.catalog import db
from ingestd.catalog.control_ops import ControlOps
from ingestd.catalog.intake_ops import IntakeOps
from ingestd.catalog.lane_ops import LaneOps
from ingestd.catalog.post_ops import PostDone, PostOps
from ingestd.catalog.rows import (
    FILE_COLUMNS,
    Claim,
    FileRow,
    QueueOutcome,
    Seen,
    StaleState,
    source_key,
)
from ingestd.errors import CatalogUnreachable

__all__ = [
    "FILE_COLUMNS",
    "Catalog",
    "Claim",
    "FileRow",
    "PostDone",
    "QueueOutcome",
    "Seen",
    "StaleState",
    "source_key",
]

Clock = Callable[[], float]


class Catalog(IntakeOps, LaneOps, PostOps, ControlOps):
    """Durable state of every file, the upload lanes and the nodes."""

    @classmethod
    def open(
        cls,
        url: str,
        *,
        migrate: bool = True,
        backups: Path | None = None,
        clock: Clock = time.time,
    ) -> Catalog:
        """Connect, and apply pending migrations first (an SQLite catalog copied into
        ``backups`` before, see ``db.migrate``); with ``migrate=False`` (commands beside a
        running daemon), require an existing catalog at this ingestd's revision."""
        from sqlalchemy.exc import DBAPIError

        if not migrate:
            db.require_existing(url)
        engine = db.make_engine(url)
        try:
            if migrate:
                db.migrate(engine, backups=backups)
            else:
                db.require_head(engine)
        except DBAPIError as exc:
            engine.dispose()
            raise CatalogUnreachable.of(url, exc.orig or exc) from None
        except Exception:
            engine.dispose()
            raise
        return cls(engine, clock=clock)
