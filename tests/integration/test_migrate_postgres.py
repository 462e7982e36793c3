"""``ingestd migrate`` on a real PostgreSQL catalog at an older revision: ``--dry-run`` lists
the migrations, changes nothing and says to pg_dump first; without ``--yes`` nothing runs (exit
2); with it the catalog is migrated (and no SQLite-style backup is attempted)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ingestd import cli, exitcodes
from ingestd.catalog import db, revision
from tests.catalog_revisions import insert_old_files, migrate_to

pytestmark = pytest.mark.integration
OLD = "0005"


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "ingestd.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\ncatalog_url = "{url}"\n'
        f'[destinations.main]\ntype = "directory"\npath = "{tmp_path / "store"}"\n'
        f'[[inboxes]]\nname = "scans"\npath = "{tmp_path / "inbox"}"\ndestination = "main"\n'
    )
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.app, list(args))


def current(url: str) -> str | None:
    engine = db.make_engine(url)
    try:
        return db.current_revision(engine)
    finally:
        engine.dispose()


@pytest.fixture
def old_pg(pg_url: str) -> str:
    engine = db.make_engine(pg_url)
    try:
        migrate_to(engine, OLD)
        insert_old_files(engine, [("scans", "old.pdf", 10, "queued")])
    finally:
        engine.dispose()
    return pg_url


def test_dry_run_on_postgresql_lists_the_migrations_and_changes_nothing(
    old_pg: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, old_pg)
    result = invoke("migrate", "--dry-run", "--json", "--config", str(config))
    assert result.exit_code == exitcodes.OK, result.output
    doc = json.loads(result.stdout)
    assert (doc["backend"], doc["current"], doc["target"]) == (
        "postgresql",
        OLD,
        revision.HEAD_REVISION,
    )
    assert doc["migrations"][0]["revision"] == "0006"
    assert doc["migrations"][-1]["revision"] == revision.HEAD_REVISION
    assert "pg_dump" in doc["notice"] and doc["backups_dir"] is None
    text = invoke("migrate", "--dry-run", "--config", str(config))
    assert text.exit_code == exitcodes.OK, text.output
    assert "pg_dump --format=custom" in text.output
    assert current(old_pg) == OLD
    assert not (tmp_path / "state").exists()


def test_migrate_on_postgresql_needs_yes(old_pg: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, old_pg)
    refused = invoke("migrate", "--config", str(config))
    assert refused.exit_code == exitcodes.USAGE, refused.output
    assert "ingestd migrate --yes" in refused.output
    assert current(old_pg) == OLD
    done = invoke("migrate", "--yes", "--json", "--config", str(config))
    assert done.exit_code == exitcodes.OK, done.output
    doc = json.loads(done.stdout)
    assert (doc["migrated"], doc["backup"]) == (True, None)
    assert "pg_dump it before upgrading" not in done.output  # --yes said it was dumped
    assert current(old_pg) == revision.HEAD_REVISION


def test_the_daemons_start_migrates_postgresql_with_a_warning(
    old_pg: str, caplog: pytest.LogCaptureFixture
) -> None:
    from ingestd.catalog.repo import Catalog

    with caplog.at_level(logging.WARNING, logger="ingestd.catalog"):
        Catalog.open(old_pg).close()
    assert current(old_pg) == revision.HEAD_REVISION
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"from revision {OLD}" in warning and "pg_dump it before upgrading" in warning
