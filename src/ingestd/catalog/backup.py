"""A copy of an SQLite catalog before its schema changes, and how many copies to keep.

The copy is made with SQLite's online backup API (``sqlite3.Connection.backup``): a consistent
snapshot page by page, the WAL's committed transactions included, without stopping readers.
It is written beside its final name, fsynced, renamed into place and the directory fsynced, so
a backup that exists is whole. Naming and pruning are pure (``backup_name``, ``to_prune``);
``backup_sqlite`` and ``prune`` do the I/O. See docs/ARCHITECTURE.md ("Upgrade, backup and
restore" in the README says how to restore one).
"""

from __future__ import annotations

import os
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

KEEP_BACKUPS = 5
_STAMP = "%Y%m%dT%H%M%SZ"
# catalog-<old revision>-<UTC timestamp>[.N].db; .N only when two backups share a second.
_NAME = re.compile(r"^catalog-(?P<rev>[^-]+)-(?P<stamp>\d{8}T\d{6}Z)(?:\.(?P<n>\d+))?\.db$")


def backup_name(*, revision: str | None, at: datetime, n: int = 0) -> str:
    """``catalog-0005-20261206T230800Z.db``: the revision the copy is at, and when (UTC)."""
    stamp = at.astimezone(UTC).strftime(_STAMP)
    return f"catalog-{revision or 'none'}-{stamp}" + (f".{n}" if n else "") + ".db"


def to_prune(names: list[str], *, keep: int) -> list[str]:
    """The backups among ``names`` beyond the newest ``keep`` (by time, then by .N); names
    that are not ingestd's backups are never listed."""
    ours = [
        (m.group("stamp"), int(m.group("n") or 0), name)
        for name in names
        if (m := _NAME.match(name))
    ]
    ours.sort(reverse=True)
    return [name for _, _, name in ours[max(keep, 0) :]]


def backup_sqlite(
    db_file: Path, backups: Path, *, revision: str | None, at: datetime | None = None
) -> Path:
    """Copy the SQLite catalog ``db_file`` into ``backups`` as ``backup_name``; the path."""
    backups.mkdir(mode=0o700, parents=True, exist_ok=True)
    when = at or datetime.now(UTC)
    n = 0
    while (target := backups / backup_name(revision=revision, at=when, n=n)).exists():
        n += 1
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    # mode=rw: never creates a missing file (read-only would fail on a WAL file without -shm).
    source = sqlite3.connect(f"file:{db_file}?mode=rw", uri=True)
    try:
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)
            # One self-contained file: a copy left in WAL mode would want -wal/-shm beside it.
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
    finally:
        source.close()
    _fsync_file(partial)
    os.replace(partial, target)
    _fsync_dir(backups)
    return target


def prune(backups: Path, *, keep: int = KEEP_BACKUPS) -> list[Path]:
    """Delete the backups beyond the newest ``keep``; the paths deleted."""
    gone = [backups / name for name in to_prune([p.name for p in backups.iterdir()], keep=keep)]
    for path in gone:
        path.unlink(missing_ok=True)
    if gone:
        _fsync_dir(backups)
    return gone


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
