"""Catalogs at an older schema revision, for migration tests."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, text

from ingestd.catalog import db


def migrate_to(engine: Engine, revision: str) -> None:
    """Bring an empty catalog to ``revision`` only (not to the head)."""
    with engine.connect() as conn:
        command.upgrade(db._alembic_config(conn), revision)
        conn.commit()
    assert db.schema_status(engine)[0] == revision


def insert_old_files(engine: Engine, rows: list[tuple[str, str, int, str]]) -> None:
    """Insert (inbox, relpath, size, state) rows with the columns every revision has: today's
    catalog code writes columns that older revisions lack."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO files (inbox, relpath, source_path, size, mtime_ns, state,"
                " discovered_at, updated_at)"
                " VALUES (:inbox, :relpath, :path, :size, 1, :state, 1.0, 1.0)"
            ),
            [
                {"inbox": i, "relpath": r, "path": f"/in/{r}", "size": n, "state": s}
                for i, r, n, s in rows
            ],
        )
