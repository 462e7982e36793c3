"""Has anyone committed to the catalog since I last looked, and can I sleep until someone does?

An idle daemon's CPU is its wake-ups times what each one reads, and on a busy host the first
read after a sleep costs a thousand times a hot one (a catalog query 3-18 ms instead of 0.1).

* ``ChangeWatch.changed()``: ``PRAGMA data_version`` on a connection of its own, which changes
  whenever any other connection (this daemon's pool, an operator's CLI command) committed; no
  table is read.
* ``CommitSignal``: in WAL mode (the catalog's) every commit writes the WAL file, and inotify
  reports the write on a descriptor ``select`` can wait on, so an idle lane sleeps until a
  commit instead of looking on a timer (Linux). The write is reported before the commit is
  published (the writer syncs first, holding the WAL write lock), so ``writer_busy`` tells
  whether another process still holds that lock, read from ``/proc/locks``.

Nothing here opens the catalog's files other than through SQLite: POSIX locks belong to the
process, and closing any descriptor of a file drops every lock SQLite holds on it.

Other databases have no such cheap signal here: the answer is always "maybe".
"""

from __future__ import annotations

import ctypes
import os
import sqlite3
import threading
from urllib.parse import quote

from sqlalchemy import Engine

BUSY_TIMEOUT_SECONDS = 5.0
_IN_MODIFY = 0x00000002
_READ_BYTES = 4096
# The WAL write lock: one byte of the -shm file, held by a writer from its first write until its
# commit is published (https://sqlite.org/walformat.html, "WAL_WRITE_LOCK").
_WAL_WRITE_LOCK_BYTE = "120"


class ChangeWatch:
    """``changed()`` is True when a commit may have happened since its previous call (always
    on the first), False only when none did. Safe to share between threads."""

    def __init__(self, sqlite_file: str | None) -> None:
        self._path = sqlite_file
        self._conn: sqlite3.Connection | None = None
        self._wal = False
        self._seen: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, engine: Engine) -> ChangeWatch:
        """A watch on the database ``engine`` connects to (SQLite files; others: "maybe")."""
        path = engine.url.database
        is_file = engine.dialect.name == "sqlite" and path not in (None, "", ":memory:")
        return cls(path if is_file else None)

    def changed(self) -> bool:
        if self._path is None:
            return True
        with self._lock:
            try:
                version = self._version()
            except sqlite3.Error:
                # Unreadable now (locked, file gone): say "maybe" and reconnect next time.
                self._close()
                self._seen = None
                return True
            changed = version != self._seen
            self._seen = version
            return changed

    def signal(self) -> CommitSignal | None:
        """A descriptor that turns readable when the catalog is written, None where there is
        none (not SQLite in WAL mode, no inotify). The caller closes it."""
        if self._path is None:
            return None
        with self._lock:
            try:
                self._connect()
            except sqlite3.Error:
                self._close()
                return None
            if not self._wal:
                return None
            # This watch's connection keeps the WAL file in place (SQLite removes it only when
            # the last connection closes), so the inotify watch on it stays valid.
            return CommitSignal.open(f"{self._path}-wal", f"{self._path}-shm")

    def close(self) -> None:
        with self._lock:
            self._close()

    def _version(self) -> int:
        conn = self._connect()
        version: int = conn.execute("PRAGMA data_version").fetchone()[0]
        return version

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        assert self._path is not None
        conn = sqlite3.connect(
            f"file:{quote(self._path)}?mode=rw",  # never create a catalog
            uri=True,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute("PRAGMA query_only=1")
            self._wal = conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            # A read attaches the connection to the WAL, which then stays while it lives.
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class CommitSignal:
    """An inotify descriptor watching the catalog's WAL file for writes (select on it), and
    whether another process is in the middle of a write transaction."""

    def __init__(self, fd: int, shm_file: str) -> None:
        self._fd = fd
        self._shm_file = shm_file

    @classmethod
    def open(cls, wal_file: str, shm_file: str) -> CommitSignal | None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return None  # no inotify here
        if fd < 0:
            return None
        # A watch by path: no descriptor of the WAL file is opened (see the module's note).
        if libc.inotify_add_watch(fd, os.fsencode(wal_file), _IN_MODIFY) < 0:
            os.close(fd)  # file gone, or fs.inotify.max_user_watches reached
            return None
        return cls(fd, shm_file)

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> None:
        """Forget the writes reported so far (the caller looks at the catalog next)."""
        try:
            while os.read(self._fd, _READ_BYTES):
                pass
        except BlockingIOError:
            pass

    def writer_busy(self) -> bool:
        """Whether another process holds the WAL write lock: a write it made may not show as a
        commit yet. (This process's own locks are left out: its commits are its own news.)"""
        try:
            st = os.stat(self._shm_file)
            with open("/proc/locks") as fh:
                table = fh.read()
        except OSError:
            return False
        inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        me = str(os.getpid())
        for line in table.splitlines():
            # "1: POSIX  ADVISORY  WRITE 4242 fe:00:2318366 120 120"
            fields = line.split()
            if (
                len(fields) >= 8
                and fields[3] == "WRITE"
                and fields[5] == inode
                and fields[6] == _WAL_WRITE_LOCK_BYTE
                and fields[4] != me
            ):
                return True
        return False

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
