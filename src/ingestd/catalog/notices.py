"""Notifications written in the transaction of the transition they report: a crash cannot
commit a failure without its webhook, nor the webhook without the failure (docs/ARCHITECTURE.md).
The outbox's sender (catalog/outbox.py, webhooks.py) delivers them later."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.exc import IntegrityError

from ingestd.catalog.rows import FileRow
from ingestd.catalog.schema import outbox

# What a transition announces: given the row as the transition left it, the notification's
# event and payload, or None when none is configured. Called inside the write transaction, so
# it must be cheap and pure (no I/O).
Notice = Callable[[FileRow], tuple[str, Mapping[str, Any]] | None]


def insert_item(
    conn: Connection, *, event: str, payload: Mapping[str, Any], now: float
) -> int | None:
    """Store a notification in the caller's transaction; None when one with the same
    ``payload["id"]`` exists (the savepoint keeps the caller's transaction usable)."""
    uid = str(payload.get("id") or f"{event}:{now}")
    try:
        with conn.begin_nested():
            return int(
                conn.execute(
                    insert(outbox)
                    .values(
                        uid=uid,
                        event=event,
                        payload=json.dumps(payload, default=str),
                        created_at=now,
                        next_attempt_at=now,
                    )
                    .returning(outbox.c.id)
                ).scalar_one()
            )
    except IntegrityError:
        return None


def announce(conn: Connection, row: FileRow | None, notice: Notice | None, *, now: float) -> None:
    """Write ``notice``'s notification about ``row`` (if any) in the caller's transaction."""
    if notice is None or row is None:
        return
    note = notice(row)
    if note is not None:
        event, payload = note
        insert_item(conn, event=event, payload=payload, now=now)
