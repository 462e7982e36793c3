"""A read-only connection to the catalog for ``ingestd status``, which must answer at once.

Importing SQLAlchemy alone takes 0.15 s, many times what status's queries take on a catalog of
1,000,000 files (17 ms: triggers keep the totals, indexes find the rest). So status opens the
catalog with the DBAPI driver itself (sqlite3, or psycopg for PostgreSQL) and runs plain SQL
that both databases accept. Everything else, and every write, goes through SQLAlchemy
(``catalog.db``); ``tests/unit/test_catalog.py`` runs status on the same catalogs.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import ingestd.names as names
from ingestd.catalog import revision
from ingestd.errors import CatalogUnreachable

SQLITE_SCHEMES = frozenset({"sqlite", "sqlite+pysqlite"})
POSTGRES_SCHEMES = frozenset({"postgresql", "postgresql+psycopg", "postgres"})
# As the daemon's engine: wait for a writer to finish rather than fail with "locked".
BUSY_TIMEOUT_SECONDS = 60.0


# The columns schema.NameText stores with names.to_catalog: read back as the exact names, as
# SQLAlchemy does (docs/ARCHITECTURE.md, "File names").
NAME_COLUMNS = frozenset({"relpath", "source_path", "source_key", "post_path", "reason", "detail"})


def _names_decoded(row: Sequence[Any], indexes: list[int]) -> list[Any]:
    out = list(row)
    for i in indexes:
        if isinstance(out[i], str):
            out[i] = names.from_catalog(out[i])
    return out


@lru_cache(maxsize=64)
def _row_type(columns: tuple[str, ...]) -> Any:
    return namedtuple("Row", columns)


class Reader:
    """One DBAPI connection. SQL is written with ``?`` placeholders; rows come back as named
    tuples, so ``row.state`` reads as it does on a SQLAlchemy row."""

    def __init__(self, conn: Any, *, postgres: bool) -> None:
        self._conn = conn
        self._postgres = postgres

    @property
    def postgres(self) -> bool:
        """Whether the catalog is PostgreSQL (for the few expressions the two spell apart)."""
        return self._postgres

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        cur = self._conn.cursor()
        try:
            cur.execute(sql.replace("?", "%s") if self._postgres else sql, tuple(params))
            columns = tuple(d[0] for d in cur.description)
            make = _row_type(columns)._make
            exact = [i for i, c in enumerate(columns) if c in NAME_COLUMNS]
            if not exact:
                return [make(r) for r in cur.fetchall()]
            return [make(_names_decoded(r, exact)) for r in cur.fetchall()]
        finally:
            cur.close()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.rows(sql, params)
        if len(rows) != 1:
            raise LookupError(f"{len(rows)} rows where one was expected: {sql}")
        return rows[0]

    @contextmanager
    def snapshot(self) -> Iterator[Reader]:
        """A read-only transaction: every query inside sees the catalog at one moment."""
        cur = self._conn.cursor()
        cur.execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if self._postgres else "BEGIN"
        )
        try:
            yield self
        finally:
            cur.execute("ROLLBACK")  # nothing was written; ending it is all that is left
            cur.close()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def sqlite_path(url: str) -> str | None:
    """The database file of a SQLite URL (as SQLAlchemy reads it), None for other URLs.

    ``sqlite:///relative.db`` and ``sqlite:////absolute.db``; percent escapes decoded; query
    parameters (SQLAlchemy connect options) ignored.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SQLITE_SCHEMES:
        return None
    path = unquote(rest[1:].partition("?")[0]) if rest.startswith("/") else ""
    if not path or path == ":memory:":
        raise ValueError("catalog_url names an in-memory SQLite database, which no command shares")
    return path


def open_reader(url: str) -> Reader:
    """A Reader on the catalog at ``url``, checked to exist and to be at this ingestd's schema
    revision (CatalogMissing, CatalogOutdated); ValueError for a URL that is neither SQLite
    nor PostgreSQL."""
    path = sqlite_path(url)
    if path is not None:
        revision.require_file(path)
        try:
            conn: Any = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            conn.execute("PRAGMA query_only=1")
        except sqlite3.Error as exc:
            raise CatalogUnreachable.of(url, exc) from None
        reader = Reader(conn, postgres=False)
        no_table: tuple[type[Exception], ...] = (sqlite3.OperationalError,)
        unreachable: tuple[type[Exception], ...] = (sqlite3.DatabaseError,)
    elif url.partition("://")[0] in POSTGRES_SCHEMES:
        import psycopg  # only PostgreSQL catalogs pay for it

        try:
            conn = psycopg.connect("postgresql://" + url.partition("://")[2], autocommit=True)
        except psycopg.Error as exc:
            raise CatalogUnreachable.of(url, exc) from None
        reader = Reader(conn, postgres=True)
        no_table = (psycopg.errors.UndefinedTable,)
        unreachable = (psycopg.Error,)
    else:
        raise ValueError(
            "catalog_url must be sqlite:///<file> or postgresql://user:password@host/db"
        )
    try:
        try:
            versions = reader.rows("SELECT version_num FROM alembic_version")
        except no_table as exc:
            if path is not None and "no such table" not in str(exc):
                raise  # "unable to open database file", "disk I/O error", ...
            versions = []  # no migration has run: the table does not exist yet
        revision.require_head(versions[0].version_num if versions else None)
    except unreachable as exc:
        reader.close()
        raise CatalogUnreachable.of(url, exc) from None
    except BaseException:
        reader.close()
        raise
    return reader
