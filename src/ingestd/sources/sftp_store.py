"""What an SFTP inbox remembers across restarts, in one SQLite file in its staging folder.

``<staging_dir>/.ingestd-sftp.sqlite`` (hidden, so a LocalSource over the staging folder never
reports it; WAL, ``synchronous=FULL``: every write is one committed transaction) holds:

* ``taken (remote_path, size, mtime)``: remote files fully downloaded into staging. A remote file
  whose (full remote path, size, mtime) is here is never downloaded again, which is what makes
  the ``keep`` post-action safe; a changed file (other size or mtime) is a new version and is
  taken again. Rows are forgotten once the remote file is deleted or moved away.
* ``partials (remote_path -> size, mtime)``: which remote version a ``.ingestd-part`` file in
  staging belongs to, so a download resumes only into bytes of that same version.
* ``outbox``: remote post-actions (delete, move, reject with its reason) asked for by the
  post-action stage (pipeline/post/) and not yet carried out. They are recorded here first
  (intent before effect) and run by the poll thread over the inbox's one connection, surviving
  restarts and server outages.

Remote paths and relpaths are stored through ``names.to_catalog`` (and read back through
``from_catalog``), the catalog's encoding: a UTF-8 name is stored as it is (stores written
before stay valid), any other exactly and reversibly (docs/ARCHITECTURE.md, "File names").
SQLite's text cannot hold the surrogate escapes a name that is not UTF-8 has in Python.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingestd.names import from_catalog, to_catalog
from ingestd.untrusted import shown

STORE_NAME = ".ingestd-sftp.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS taken (
    remote_path TEXT NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL,
    taken_at REAL NOT NULL, PRIMARY KEY (remote_path, size, mtime));
CREATE TABLE IF NOT EXISTS partials (
    remote_path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, relpath TEXT NOT NULL, action TEXT NOT NULL,
    reason BLOB, created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT);
"""


@dataclass(frozen=True)
class RemoteAction:
    """One remote post-action waiting in the outbox."""

    id: int
    relpath: str
    action: str  # "delete" | "move" | "reject"
    reason: bytes | None
    attempts: int


class PullStore:
    """The SQLite file of one SFTP inbox. Thread-safe (one connection behind a lock)."""

    def __init__(self, staging_dir: Path) -> None:
        staging_dir.mkdir(parents=True, exist_ok=True)
        self.path = staging_dir / STORE_NAME
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        with self._lock, self._db:  # one committed transaction per statement
            return self._db.execute(sql, args).fetchall()

    # -- taken ------------------------------------------------------------------------------

    def is_taken(self, remote_path: str, size: int, mtime: int) -> bool:
        """True if exactly this version of ``remote_path`` was downloaded before."""
        sql = "SELECT 1 FROM taken WHERE remote_path=? AND size=? AND mtime=?"
        return bool(self._run(sql, to_catalog(remote_path), size, mtime))

    def mark_taken(self, remote_path: str, size: int, mtime: int) -> None:
        """Remember this version as downloaded, and drop its partial record."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO taken VALUES (?, ?, ?, ?)",
                (to_catalog(remote_path), size, mtime, time.time()),
            )
            self._db.execute("DELETE FROM partials WHERE remote_path=?", (to_catalog(remote_path),))

    def last_taken(self, remote_path: str) -> tuple[int, int] | None:
        """(size, mtime) of the version of ``remote_path`` taken last, if any."""
        rows = self._run(
            "SELECT size, mtime FROM taken WHERE remote_path=? ORDER BY taken_at DESC LIMIT 1",
            to_catalog(remote_path),
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def forget_taken(self, remote_path: str) -> None:
        """The remote file is gone (deleted or moved by us): nothing left to remember."""
        self._run("DELETE FROM taken WHERE remote_path=?", to_catalog(remote_path))

    # -- partial downloads --------------------------------------------------------------------

    def partial_of(self, remote_path: str) -> tuple[int, int] | None:
        """(size, mtime) of the remote version the staged partial download belongs to."""
        sql = "SELECT size, mtime FROM partials WHERE remote_path=?"
        rows = self._run(sql, to_catalog(remote_path))
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def set_partial(self, remote_path: str, size: int, mtime: int) -> None:
        sql = "INSERT OR REPLACE INTO partials VALUES (?, ?, ?)"
        self._run(sql, to_catalog(remote_path), size, mtime)

    # -- outbox -------------------------------------------------------------------------------

    def enqueue(self, relpath: str, action: str, reason: bytes | None = None) -> None:
        """Record a remote post-action to carry out (once) as soon as the server answers."""
        self._run(
            "INSERT INTO outbox (relpath, action, reason, created_at) VALUES (?, ?, ?, ?)",
            to_catalog(relpath),
            action,
            reason,
            time.time(),
        )

    def pending(self, *, after_id: int = 0, limit: int = 100) -> list[RemoteAction]:
        """The oldest ``limit`` actions still to do whose id is above ``after_id``."""
        rows = self._run(
            "SELECT id, relpath, action, reason, attempts FROM outbox WHERE id > ?"
            " ORDER BY id LIMIT ?",
            after_id,
            limit,
        )
        return [
            RemoteAction(int(r[0]), from_catalog(str(r[1])), str(r[2]), r[3], int(r[4]))
            for r in rows
        ]

    def pending_count(self) -> int:
        return int(self._run("SELECT COUNT(*) FROM outbox")[0][0])

    def done(self, action_id: int) -> None:
        self._run("DELETE FROM outbox WHERE id=?", action_id)

    def failed(self, action_id: int, error: str) -> None:
        """Count a failed attempt; ``error`` is kept shown (it may quote a remote name)."""
        self._run(
            "UPDATE outbox SET attempts=attempts+1, last_error=? WHERE id=?",
            shown(error),
            action_id,
        )
