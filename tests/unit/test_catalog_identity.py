"""The daemon notices its SQLite catalog deleted or replaced under it (SQLite itself keeps
writing to the unlinked file without an error, and every record written is lost)."""

from __future__ import annotations

import os
from pathlib import Path

from ingestd.catalog.db import identity_problem, sqlite_identity


def test_a_deleted_or_replaced_catalog_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    path.write_bytes(b"x")
    identity = sqlite_identity(f"sqlite:///{path}")
    assert identity is not None
    assert identity_problem(identity) is None
    held = os.open(path, os.O_RDONLY)  # as the daemon's connection does: no inode reuse
    path.unlink()
    assert identity_problem(identity) == f"the catalog {path} was deleted"
    (tmp_path / "other.db").write_bytes(b"y")
    os.rename(tmp_path / "other.db", path)
    assert identity_problem(identity) == f"the catalog {path} was replaced by another file"
    os.close(held)


def test_other_databases_have_no_file_to_watch() -> None:
    assert sqlite_identity("postgresql://u:p@localhost/ingestd") is None
    assert sqlite_identity("sqlite://") is None
    assert identity_problem(None) is None
