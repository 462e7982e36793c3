"""``ingestd migrate`` and the backup before every schema migration (issue 19, part 6), on a
real SQLite catalog at an older revision (``tests.catalog_revisions``)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ingestd import cli, exitcodes
from ingestd.catalog import backup, db, revision
from ingestd.catalog.repo import Catalog
from ingestd.errors import CatalogBackupFailed
from tests.catalog_revisions import insert_old_files, migrate_to

OLD = "0005"
ROWS = [("scans", f"old{i}.pdf", 10 + i, "uploaded") for i in range(3)]


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "ingestd.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[destinations.main]\ntype = "directory"\npath = "{tmp_path / "store"}"\n'
        f'[[inboxes]]\nname = "scans"\npath = "{tmp_path / "inbox"}"\ndestination = "main"\n'
    )
    return path


def old_catalog(tmp_path: Path) -> Path:
    """An SQLite catalog at revision 0005 holding ROWS, where the configuration puts it."""
    db_file = tmp_path / "state" / "catalog.db"
    db_file.parent.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(f"sqlite:///{db_file}")
    try:
        migrate_to(engine, OLD)
        insert_old_files(engine, ROWS)
    finally:
        engine.dispose()
    return db_file


def revision_of(db_file: Path) -> str:
    with sqlite3.connect(db_file) as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def rows_of(db_file: Path) -> list[tuple[str, str, int, str]]:
    with sqlite3.connect(db_file) as conn:
        found = conn.execute("SELECT inbox, relpath, size, state FROM files ORDER BY id")
        return [tuple(row) for row in found]  # type: ignore[misc]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.app, list(args))


def expected_steps() -> list[str]:
    versions = Path(db.MIGRATIONS, "versions").glob("*.py")
    return sorted(p.name[:4] for p in versions if p.name[:4] > OLD)


# ---------------------------------------------------------------- naming and pruning (pure)


def test_a_backup_is_named_by_its_revision_and_utc_time() -> None:
    at = datetime(2026, 12, 6, 23, 8, 0, tzinfo=UTC)
    assert backup.backup_name(revision="0005", at=at) == "catalog-0005-20261206T230800Z.db"
    assert backup.backup_name(revision="0005", at=at, n=2) == "catalog-0005-20261206T230800Z.2.db"


def test_pruning_keeps_the_newest_and_never_touches_other_files() -> None:
    names = [
        "catalog-0003-20261101T000000Z.db",
        "catalog-0005-20261201T000000Z.db",
        "catalog-0004-20261115T000000Z.db",
        "catalog-0005-20261201T000000Z.1.db",
        "notes.txt",
        "catalog.db",
    ]
    assert backup.to_prune(names, keep=2) == [
        "catalog-0004-20261115T000000Z.db",
        "catalog-0003-20261101T000000Z.db",
    ]
    assert backup.to_prune(names, keep=5) == []


# ---------------------------------------------------------------- migrate --dry-run


def test_dry_run_lists_the_migrations_and_changes_nothing(tmp_path: Path) -> None:
    db_file = old_catalog(tmp_path)
    before = digest(db_file)
    result = invoke("migrate", "--dry-run", "--config", str(write_config(tmp_path)))
    assert result.exit_code == exitcodes.OK, result.output
    assert f"current revision: {OLD}" in result.output
    assert f"target revision: {revision.HEAD_REVISION}" in result.output
    listed = [line.split()[0] for line in result.output.splitlines() if line.startswith("  ")]
    assert listed == expected_steps()
    assert "dry run: nothing changed" in result.output
    assert digest(db_file) == before
    assert revision_of(db_file) == OLD
    assert not (tmp_path / "state" / "backups").exists()


def test_dry_run_json_is_one_document_with_the_plan(tmp_path: Path) -> None:
    old_catalog(tmp_path)
    result = invoke("migrate", "--dry-run", "--json", "--config", str(write_config(tmp_path)))
    assert result.exit_code == exitcodes.OK, result.output
    doc = json.loads(result.stdout)
    assert (doc["backend"], doc["current"], doc["target"]) == (
        "sqlite",
        OLD,
        revision.HEAD_REVISION,
    )
    assert [m["revision"] for m in doc["migrations"]] == expected_steps()
    assert all(m["description"] for m in doc["migrations"])
    assert (doc["action"], doc["dry_run"], doc["migrated"], doc["backup"]) == (
        "dry_run",
        True,
        False,
        None,
    )


def test_dry_run_without_a_catalog_creates_none(tmp_path: Path) -> None:
    result = invoke("migrate", "--dry-run", "--json", "--config", str(write_config(tmp_path)))
    assert result.exit_code == exitcodes.OK, result.output
    doc = json.loads(result.stdout)
    assert (doc["exists"], doc["current"]) == (False, None)
    assert doc["migrations"][0]["revision"] == "0001"
    assert not (tmp_path / "state").exists()


# ---------------------------------------------------------------- migrate


def test_migrate_backs_up_the_old_catalog_then_upgrades_it(tmp_path: Path) -> None:
    db_file = old_catalog(tmp_path)
    result = invoke("migrate", "--json", "--config", str(write_config(tmp_path)))
    assert result.exit_code == exitcodes.OK, result.output
    doc = json.loads(result.stdout)
    assert (doc["action"], doc["migrated"]) == ("run", True)
    copy = Path(doc["backup"])
    assert copy.parent == tmp_path / "state" / "backups"
    assert copy.name.startswith(f"catalog-{OLD}-") and copy.name.endswith("Z.db")
    # The copy opens on its own (no -wal beside it), at the old revision, with the old rows.
    assert not Path(f"{copy}-wal").exists()
    assert revision_of(copy) == OLD
    assert rows_of(copy) == ROWS
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    # The catalog itself is at the head and kept its rows.
    assert revision_of(db_file) == revision.HEAD_REVISION
    assert rows_of(db_file) == ROWS
    # Nothing left to do: a second run neither migrates nor backs up again.
    again = invoke("migrate", "--config", str(write_config(tmp_path)))
    assert again.exit_code == exitcodes.OK, again.output
    assert "nothing to do" in again.output
    assert list(copy.parent.iterdir()) == [copy]


def test_the_daemons_start_backs_up_before_migrating_and_keeps_the_newest(
    tmp_path: Path,
) -> None:
    """``Catalog.open`` is where the daemon's start migrates: it backs up first too, and
    prunes to the newest KEEP_BACKUPS."""
    db_file = old_catalog(tmp_path)
    backups = tmp_path / "state" / "backups"
    backups.mkdir()
    older = [backups / f"catalog-0004-2026110{i}T000000Z.db" for i in range(1, 7)]
    for path in older:
        path.write_bytes(b"an older backup")
    (backups / "README").write_text("not a backup")
    Catalog.open(f"sqlite:///{db_file}", backups=backups).close()
    assert revision_of(db_file) == revision.HEAD_REVISION
    kept = sorted(p.name for p in backups.iterdir())
    made = [n for n in kept if n.startswith(f"catalog-{OLD}-")]
    assert len(made) == 1 and rows_of(backups / made[0]) == ROWS
    assert kept == sorted([*made, *(p.name for p in older[-4:]), "README"])


def test_a_failed_backup_migrates_nothing(tmp_path: Path) -> None:
    db_file = old_catalog(tmp_path)
    blocker = tmp_path / "state" / "backups"
    blocker.write_text("a file where the backups directory belongs")
    with pytest.raises(CatalogBackupFailed, match="nothing was migrated"):
        Catalog.open(f"sqlite:///{db_file}", backups=blocker)
    assert revision_of(db_file) == OLD
    result = invoke("migrate", "--config", str(write_config(tmp_path)))
    assert result.exit_code == exitcodes.FAILED
    assert "cannot back up the catalog" in result.output
    assert "Traceback" not in result.output
    assert revision_of(db_file) == OLD


def test_a_new_catalog_is_created_without_a_backup(tmp_path: Path) -> None:
    result = invoke("migrate", "--json", "--config", str(write_config(tmp_path)))
    assert result.exit_code == exitcodes.OK, result.output
    doc = json.loads(result.stdout)
    assert (doc["migrated"], doc["backup"]) == (True, None)
    assert revision_of(tmp_path / "state" / "catalog.db") == revision.HEAD_REVISION


def test_a_catalog_newer_than_this_ingestd_is_refused(tmp_path: Path) -> None:
    db_file = old_catalog(tmp_path)
    with sqlite3.connect(db_file) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    result = invoke("migrate", "--config", str(write_config(tmp_path)))
    assert result.exit_code == exitcodes.CATALOG_UNAVAILABLE
    assert "newer than this ingestd" in result.output
    assert revision_of(db_file) == "9999"


def test_an_unreachable_catalog_is_one_line_without_the_password(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    text = config.read_text()
    url = "postgresql://ingestd:pw-s3cr3t@127.0.0.1:1/ingestd"
    config.write_text(f'catalog_url = "{url}"\n' + text)
    result = invoke("migrate", "--dry-run", "--config", str(config))
    assert result.exit_code == exitcodes.CATALOG_UNAVAILABLE
    assert len(result.output.strip().splitlines()) == 1
    assert "pw-s3cr3t" not in result.output and "Traceback" not in result.output


def test_the_daemons_start_backs_up_into_the_state_dir(tmp_path: Path) -> None:
    """A real ``ingestd scan --once`` (the daemon's start) on an old catalog: the backup is in
    <state_dir>/backups before the schema moved."""
    db_file = old_catalog(tmp_path)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "store").mkdir()
    config = write_config(tmp_path)
    config.write_text('http_listen = ""\n' + config.read_text())
    result = invoke("scan", "--once", "--config", str(config))
    assert result.exit_code == exitcodes.OK, result.output
    (copy,) = (tmp_path / "state" / "backups").iterdir()
    assert copy.name.startswith(f"catalog-{OLD}-")
    assert revision_of(copy) == OLD and rows_of(copy) == ROWS
    assert revision_of(db_file) == revision.HEAD_REVISION
