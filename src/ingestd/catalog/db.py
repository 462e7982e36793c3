"""Engine set-up (SQLite WAL pragmas, write transactions) and automatic migrations, an SQLite
catalog backed up before any of them (``catalog.backup``)."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from ingestd.catalog import backup, revision
from ingestd.errors import CatalogBackupFailed

if TYPE_CHECKING:
    # Alembic costs a third of a second to import: only migrations need it, not the CLI.
    from alembic.config import Config as AlembicConfig

T = TypeVar("T")
MIGRATIONS = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK = 0x696E6765  # "inge": serialises migrations of nodes starting together
log = logging.getLogger("ingestd.catalog")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and explicit write locking."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    if parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 60}, pool_size=8, max_overflow=16
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # We issue BEGIN ourselves: pysqlite's implicit transactions defer the write lock,
        # which turns concurrent writers into "database is locked" errors.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: every committed state change survives a power cut (non-negotiable 4).
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("ingestd_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A short write transaction; on SQLite it holds the write lock from its first statement."""
    with engine.connect() as conn:
        conn.execution_options(ingestd_write=True)
        with conn.begin():
            yield conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction: one consistent snapshot."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # READ COMMITTED takes a new snapshot per statement; a read-only REPEATABLE READ
            # transaction sees one snapshot and never fails with a serialization error.
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


# PostgreSQL's "try the transaction again" errors: serialization_failure, deadlock_detected.
_PG_RETRY_SQLSTATES = frozenset({"40001", "40P01"})


def retry_locked(fn: Callable[[], T], *, attempts: int = 20) -> T:
    """Run ``fn`` again when SQLite still reports a lock past its busy timeout, or PostgreSQL
    aborted the transaction as a deadlock victim or serialization failure."""
    for i in range(attempts):
        try:
            return fn()
        except OperationalError as exc:
            retry = "locked" in str(exc).lower() or (
                getattr(exc.orig, "sqlstate", None) in _PG_RETRY_SQLSTATES
            )
            if not retry or i == attempts - 1:
                raise
            time.sleep(min(0.05 * 2**i, 2.0))
    raise AssertionError("unreachable")


def _alembic_config(conn: Connection) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def migrate(
    engine: Engine,
    *,
    backups: Path | None = None,
    keep: int = backup.KEEP_BACKUPS,
    pg_dumped: bool = False,
) -> Path | None:
    """Bring the schema to the newest revision (idempotent; safe for nodes starting together).

    Before an existing SQLite schema changes, the catalog is copied into ``backups`` (default:
    ``backups/`` beside the file; the daemon passes ``<state_dir>/backups``) and all but the
    newest ``keep`` copies deleted; the copy's path is returned. A failed copy raises
    CatalogBackupFailed and nothing is migrated. PostgreSQL is not copied (pg_dump is the
    operator's, see the README's "Upgrade, backup and restore"): a warning says so, unless
    the operator confirmed a dump (``pg_dumped``: ``ingestd migrate --yes``).

    A catalog already at HEAD_REVISION (every start but the first after an upgrade) is left
    alone without importing Alembic: 70 ms of start-up and 10 MB of RSS, for the daemon's life.
    """
    if engine.dialect.name == "sqlite" and engine.url.database:
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    current = current_revision(engine)
    if current == revision.HEAD_REVISION:
        return None
    copy = None
    if current is not None and current < revision.HEAD_REVISION:
        copy = _backup_before_migrating(
            engine, current=current, backups=backups, keep=keep, pg_dumped=pg_dumped
        )
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            conn.commit()
        try:
            from alembic import command

            command.upgrade(_alembic_config(conn), "head")
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
    if current is not None:
        log.info(
            "migrated the catalog's schema from revision %s to %s", current, revision.HEAD_REVISION
        )
    return copy


def _backup_before_migrating(
    engine: Engine, *, current: str, backups: Path | None, keep: int, pg_dumped: bool
) -> Path | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite":
        if pg_dumped:
            return None
        log.warning(
            "migrating the catalog's schema from revision %s to %s: ingestd cannot back up a "
            "PostgreSQL catalog itself; pg_dump it before upgrading (README: Upgrade, backup "
            "and restore)",
            current,
            revision.HEAD_REVISION,
        )
        return None
    if not database or database == ":memory:":
        return None  # nothing on disk to lose
    db_file = Path(database)
    where = backups if backups is not None else db_file.parent / "backups"
    try:
        copy = backup.backup_sqlite(db_file, where, revision=current)
        backup.prune(where, keep=keep)
    except (OSError, sqlite3.Error) as exc:
        raise CatalogBackupFailed(
            f"cannot back up the catalog {db_file} into {where} before migrating its schema "
            f"from revision {current} to {revision.HEAD_REVISION}: {exc}; nothing was migrated"
        ) from None
    log.info(
        "backed up the catalog at revision %s to %s before migrating it to %s",
        current,
        copy,
        revision.HEAD_REVISION,
    )
    return copy


def schema_status(engine: Engine) -> tuple[str | None, str]:
    """(current revision, head revision) of the catalog."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config_for_script())
    head = script.get_current_head() or ""
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head


def _alembic_config_for_script() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def current_revision(engine: Engine) -> str | None:
    """The catalog's schema revision; None before the first migration."""
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (OperationalError, ProgrammingError):
            return None


def require_head(engine: Engine) -> None:
    """Raise CatalogOutdated unless the schema is at this ingestd's revision."""
    revision.require_head(current_revision(engine))


def require_existing(url: str) -> None:
    """Raise CatalogMissing for a SQLite catalog file that does not exist yet."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        revision.require_file(parsed.database)


FileIdentity = tuple[str, int, int]
"""A SQLite catalog's path with the (st_dev, st_ino) of the file opened there."""


def sqlite_identity(url: str) -> FileIdentity | None:
    """The identity of a SQLite catalog file (None for other databases and in-memory ones)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    st = os.stat(parsed.database)
    return parsed.database, st.st_dev, st.st_ino


def identity_problem(identity: FileIdentity | None) -> str | None:
    """Why the file at the catalog's path is no longer the one opened: a process keeps
    writing to a deleted or replaced SQLite file without error, and all it writes is lost."""
    if identity is None:
        return None
    path, dev, ino = identity
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"the catalog {path} was deleted"
    if (st.st_dev, st.st_ino) != (dev, ino):
        return f"the catalog {path} was replaced by another file"
    return None
