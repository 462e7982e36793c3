"""The durable webhook outbox (implements ``ingestd.webhooks.Outbox``); notifications about a
state change are written with the change (catalog/notices.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Engine, select, update

from ingestd.catalog import db
from ingestd.catalog.notices import insert_item
from ingestd.catalog.rows import OutboxItem
from ingestd.catalog.schema import outbox

CLAIM_SECONDS = 60.0


class CatalogOutbox:
    """Notifications stored in the catalog until a receiver acknowledges them."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._pg = engine.dialect.name == "postgresql"

    def enqueue(self, event: str, payload: Mapping[str, Any]) -> int | None:
        """Store a notification; None when one with the same ``payload["id"]`` exists."""
        with db.write_tx(self._engine) as conn:
            return insert_item(conn, event=event, payload=payload, now=self._clock())

    def due(self, now: float, limit: int) -> list[OutboxItem]:
        """Claim up to ``limit`` due items (pushed a lease ahead so no other node posts them)."""
        query = (
            select(outbox)
            .where(
                outbox.c.delivered_at.is_(None),
                outbox.c.dead_at.is_(None),
                outbox.c.next_attempt_at <= now,
            )
            .order_by(outbox.c.id)
            .limit(limit)
        )
        if self._pg:
            query = query.with_for_update(skip_locked=True)
        with db.write_tx(self._engine) as conn:
            rows = conn.execute(query).all()
            if rows:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_([r.id for r in rows]))
                    .values(next_attempt_at=now + CLAIM_SECONDS)
                )
        return [
            OutboxItem(
                id=int(r.id),
                event=r.event,
                payload=json.loads(r.payload),
                attempts=int(r.attempts),
                created_at=float(r.created_at),
            )
            for r in rows
        ]

    def mark_delivered(self, item_id: int) -> None:
        self._set(item_id, delivered_at=self._clock())

    def mark_retry(self, item_id: int, next_at: float, error: str) -> None:
        with db.write_tx(self._engine) as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.id == item_id)
                .values(
                    next_attempt_at=next_at, last_error=error[:2000], attempts=outbox.c.attempts + 1
                )
            )

    def mark_dead(self, item_id: int, error: str) -> None:
        self._set(item_id, dead_at=self._clock(), last_error=error[:2000])

    def pending(self) -> int:
        """Notifications not yet delivered nor given up on."""
        from sqlalchemy import func

        with db.read_tx(self._engine) as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(outbox)
                    .where(outbox.c.delivered_at.is_(None), outbox.c.dead_at.is_(None))
                ).scalar_one()
            )

    def _set(self, item_id: int, **values: Any) -> None:
        with db.write_tx(self._engine) as conn:
            conn.execute(update(outbox).where(outbox.c.id == item_id).values(**values))
