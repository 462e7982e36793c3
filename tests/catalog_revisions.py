"""Catalogs at an older schema revision, for migration tests."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine

from ingestd.catalog import db


def migrate_to(engine: Engine, revision: str) -> None:
    """Bring an empty catalog to ``revision`` only (not to the head)."""
    with engine.connect() as conn:
        command.upgrade(db._alembic_config(conn), revision)
        conn.commit()
    assert db.schema_status(engine)[0] == revision
