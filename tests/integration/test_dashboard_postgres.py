"""The dashboard on a real PostgreSQL catalog: the same rows give the same pages as on SQLite
(every read in page/queries.py is SQL both accept, and a file lands in the same chart slot on
both: PostgreSQL's CAST rounds where SQLite's truncates)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import update

from ingestd.catalog.schema import files
from ingestd.page import batches, overview, problems, queries
from ingestd.page import files as files_view
from ingestd.page.source import PageSource
from tests import pages

pytestmark = pytest.mark.integration

NOW = 1_800_000_000.0 + 0.25


def views(source: PageSource) -> dict[str, str]:
    """Each view's HTML with what differs between two catalogs by design taken out: nothing
    but the pid of the node row is expected to (both are this process's)."""
    out = {
        "/": overview.render(source, {}),
        "/?chart=bytes": overview.render(source, {"chart": "bytes"}),
        "/problems": problems.render(source),
        "/batches": batches.render_list(source),
        "/batches/1": batches.render_report(source, 1)[1],
        "/files?name=PAGE": files_view.render_search(source, {"name": "PAGE"})[1],
        "/files?state=rejected": files_view.render_search(source, {"state": "rejected"})[1],
        "/files/5": files_view.render_file(source, 5)[1],
    }
    return {path: re.sub(r"pid \d+", "pid N", body.decode()) for path, body in out.items()}


def build(source: PageSource) -> None:
    pages.demo(source.engine, now=NOW, seed=3)
    # Times just below a slot's end: truncated on SQLite, and on PostgreSQL rounded unless
    # floored; both must put them in the minute they belong to.
    for i in range(5):
        pages.add_file(source.engine, at=NOW - 0.25 - 600 - i * 60 - 0.3, inbox="office")
    with source.engine.begin() as conn:
        conn.execute(update(files).where(files.c.id == 3).values(relpath="Page-Upper.PDF"))


def test_the_pages_are_the_same_on_postgresql_and_sqlite(pg_url: str, tmp_path: Path) -> None:
    inboxes = ["scanner-1", "office", "partner-sftp"]
    lite_catalog, lite = pages.open_source(pages.settings_for(tmp_path, inboxes), now=NOW)
    pg_catalog, pg = pages.open_source(
        pages.settings_for(tmp_path, inboxes, catalog_url=pg_url), now=NOW
    )
    try:
        pages._counter[0] = 0
        build(lite)
        pages._counter[0] = 0
        build(pg)
        hour = queries.Window.ending_at(NOW, step=60, slots=60)
        with lite.reader() as a, pg.reader() as b:
            assert sorted(queries.arrivals(a, hour), key=repr) == sorted(
                queries.arrivals(b, hour), key=repr
            )
            assert queries.problem_groups(a) == queries.problem_groups(b)
            found = [
                [r.id for r in queries.search(reader, queries.Search(name="page"))]
                for reader in (a, b)
            ]
            assert found[0] == found[1] and found[0]
        lite_views, pg_views = views(lite), views(pg)
        for path, body in lite_views.items():
            assert pg_views[path] == body, path
        assert "Page-Upper.PDF" in lite_views["/files?name=PAGE"], "case-insensitive on both"
    finally:
        lite_catalog.close()
        pg_catalog.close()
