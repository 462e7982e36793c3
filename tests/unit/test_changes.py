"""ChangeWatch: a commit by anyone is seen; nothing else is."""

from __future__ import annotations

import select
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from ingestd.catalog import db
from ingestd.catalog.changes import ChangeWatch, CommitSignal
from ingestd.catalog.repo import Catalog


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield cat
    cat.close()


def beat(cat: Catalog, detail: str = "running") -> None:
    cat.heartbeat(node="n1", pid=1, host="h", version="0", started_at=0.0, detail=detail)


def test_a_commit_through_the_catalog_is_seen_once(catalog: Catalog) -> None:
    watch = ChangeWatch.of(catalog.engine)
    try:
        assert watch.changed(), "the first look always says maybe"
        assert not watch.changed()
        beat(catalog)
        assert watch.changed()
        assert not watch.changed(), "the same commit is not seen twice"
        catalog.is_paused("main")  # reads change nothing
        assert not watch.changed()
    finally:
        watch.close()


def test_an_operator_command_on_its_own_engine_is_seen(catalog: Catalog, tmp_path: Path) -> None:
    # What ``ingestd pause`` does beside a running daemon: its own catalog, its own commit.
    watch = ChangeWatch.of(catalog.engine)
    watch.changed()
    cli = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}", migrate=False)
    try:
        cli.set_paused(["main"], True)
    finally:
        cli.close()
    assert watch.changed()
    watch.close()


def test_every_commit_of_a_burst_counts_even_after_a_checkpoint(
    catalog: Catalog, tmp_path: Path
) -> None:
    watch = ChangeWatch.of(catalog.engine)
    watch.changed()
    with sqlite3.connect(tmp_path / "catalog.db", isolation_level=None) as other:
        for i in range(3):
            beat(catalog, f"beat {i}")
            assert watch.changed()
            # A checkpoint that restarts the WAL rewrites the header from scratch.
            other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            beat(catalog, f"after checkpoint {i}")
            assert watch.changed()
    watch.close()


def test_a_database_not_in_wal_mode_is_watched_through_data_version(tmp_path: Path) -> None:
    path = tmp_path / "rollback.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    watch = ChangeWatch(str(path))
    assert watch.changed()
    assert not watch.changed()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    assert watch.changed()
    assert not watch.changed()
    watch.close()


def test_a_missing_database_is_maybe_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    watch = ChangeWatch(str(path))
    assert watch.changed() and watch.changed()
    assert not path.exists()


def test_databases_without_a_cheap_signal_always_say_maybe(tmp_path: Path) -> None:
    engines = [
        create_engine("postgresql+psycopg://u:p@127.0.0.1:1/none"),  # never connects
        create_engine("sqlite://"),
    ]
    for engine in engines:
        watch = ChangeWatch.of(engine)
        assert watch.changed() and watch.changed() and watch.changed()
        engine.dispose()


@pytest.fixture
def signal(catalog: Catalog) -> Iterator[CommitSignal]:
    watch = ChangeWatch.of(catalog.engine)
    commits = watch.signal()
    assert commits is not None
    yield commits
    commits.close()
    watch.close()


def readable(signal: CommitSignal, timeout: float = 0.0) -> bool:
    ready, _, _ = select.select([signal.fileno()], [], [], timeout)
    return bool(ready)


def test_the_commit_signal_turns_readable_on_a_commit_and_quiet_after_drain(
    catalog: Catalog, signal: CommitSignal, tmp_path: Path
) -> None:
    signal.drain()
    catalog.is_paused("main")  # a read writes nothing
    assert not readable(signal)
    cli = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}", migrate=False)
    try:
        cli.set_paused(["main"], True)  # an operator's command, from its own connection
    finally:
        cli.close()
    assert readable(signal, timeout=5.0)
    signal.drain()
    assert not readable(signal)
    beat(catalog)  # and this daemon's own commits
    assert readable(signal, timeout=5.0)


def test_no_commit_signal_without_a_wal_file(tmp_path: Path) -> None:
    path = tmp_path / "rollback.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    assert ChangeWatch(str(path)).signal() is None, "rollback journal: no WAL to watch"
    assert ChangeWatch(None).signal() is None, "PostgreSQL: none"
    assert ChangeWatch(str(tmp_path / "absent.db")).signal() is None


def test_writer_busy_sees_another_process_inside_a_write_transaction(
    catalog: Catalog, signal: CommitSignal, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.db"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "c.execute('UPDATE lanes SET paused = 1')\n"
            "print('inside', flush=True)\n"
            "sys.stdin.readline()\n"
            "c.execute('COMMIT')\n",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "inside"
        assert signal.writer_busy()
        writer.stdin.write("\n")
        writer.stdin.flush()
        assert writer.wait(timeout=30) == 0
        assert not signal.writer_busy()
        with db.write_tx(catalog.engine):  # this process's own transaction: not news
            assert not signal.writer_busy()
    finally:
        writer.kill()
