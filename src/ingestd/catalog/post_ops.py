"""Catalog operations of the post-action stage: what is due, where a source is about to go
(recorded before the move), and that the post-action is done (docs/ARCHITECTURE.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from ingestd.catalog import db
from ingestd.catalog.base import CatalogBase
from ingestd.catalog.rows import FileRow
from ingestd.catalog.schema import events, files
from ingestd.states import TERMINAL


@dataclass(frozen=True)
class PostDone:
    """A post-action carried out: where the source went (``post_path``), or whether it is gone
    (deleted, or moved away by someone else) or kept in place."""

    file_id: int
    post_path: str | None
    source_gone: bool


class PostOps(CatalogBase):
    """Catalog operations of the post-action stage."""

    def pending_post(self, *, after_id: int = 0, limit: int | None = None) -> list[FileRow]:
        """Files in a terminal state whose post-action is not yet done, by id, above
        ``after_id`` (a worker pages through them so a failing row never hides the rest)."""
        query = (
            select(files)
            .where(
                files.c.state.in_([s.value for s in TERMINAL]),
                files.c.post_done.is_(False),
                files.c.id > after_id,
            )
            .order_by(files.c.id)
        )
        if limit is not None:
            query = query.limit(limit)
        with db.read_tx(self.engine) as conn:
            return [FileRow.from_row(r) for r in conn.execute(query)]

    def plan_post(self, file_id: int, post_path: str) -> None:
        """Record where the source is about to be moved, before moving it."""
        self.plan_posts({file_id: post_path})

    def plan_posts(self, targets: Mapping[int, str]) -> None:
        """``plan_post`` for several files in one transaction."""
        if not targets:
            return

        def run(conn: Connection) -> None:
            for file_id, post_path in targets.items():
                conn.execute(update(files).where(files.c.id == file_id).values(post_path=post_path))

        self._write(run)

    def confirm_post(self, file_id: int, *, post_path: str | None, source_gone: bool) -> None:
        """The post-action is done: nothing is left to do for this row."""
        self.confirm_posts([PostDone(file_id, post_path=post_path, source_gone=source_gone)])

    def confirm_posts(self, done: Sequence[PostDone]) -> None:
        """``confirm_post`` for several files in one transaction, each with its event row. A
        source moved or deleted frees its path (``source_key``) for a new file there. A row
        already done keeps what was recorded first."""
        if not done:
            return

        def run(conn: Connection) -> None:
            now = self.clock()
            for item in done:
                values: dict[str, Any] = {
                    "post_done": True,
                    "post_path": item.post_path,
                    "updated_at": now,
                }
                if item.source_gone:
                    values["source_key"] = None
                changed = conn.execute(
                    update(files)
                    .where(files.c.id == item.file_id, files.c.post_done.is_(False))
                    .values(**values)
                ).rowcount
                if not changed:
                    continue  # done already (another node, or a stale copy): keep its record
                conn.execute(
                    insert(events).values(
                        file_id=item.file_id, at=now, code="post_action", detail=_detail(item)
                    )
                )

        self._write(run)


def _detail(item: PostDone) -> str:
    if item.post_path:
        return f"moved to {item.post_path}"
    return "deleted" if item.source_gone else "kept"
