"""Which schema revision this ingestd expects, and what to tell a user whose catalog is not
there yet or not at it. Free of SQLAlchemy and Alembic, so fast commands can check it."""

from __future__ import annotations

from pathlib import Path

from ingestd.errors import CatalogMissing, CatalogOutdated

# The newest migration's revision (test_catalog.py checks it against the migrations directory).
HEAD_REVISION = "0013"


def require_head(current: str | None) -> None:
    """Raise CatalogOutdated unless ``current`` (the catalog's alembic_version, None when it
    has none) is this ingestd's revision: the daemon migrates at start, and commands run
    beside it must not query tables it has not created yet."""
    if current == HEAD_REVISION:
        return
    if current is None or current < HEAD_REVISION:
        raise CatalogOutdated(
            f"the catalog's schema is at revision {current or 'none'}, this ingestd expects "
            f"{HEAD_REVISION}: restart the daemon (it backs the catalog up and migrates it at "
            "start) or run 'ingestd migrate'"
        )
    raise CatalogOutdated(
        f"the catalog's schema is at revision {current}, newer than this ingestd's "
        f"{HEAD_REVISION}: another node runs a newer ingestd; upgrade this one"
    )


def require_file(db_file: str | Path) -> None:
    """Raise CatalogMissing when the SQLite catalog ``db_file`` does not exist yet."""
    if not Path(db_file).exists():
        raise CatalogMissing(
            f"no catalog at {db_file}: the daemon has not run with this configuration "
            "yet (start it with 'ingestd run' or 'ingestd scan --once')"
        )
