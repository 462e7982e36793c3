"""Which schema revision this ingestd expects, and what to tell a user whose catalog is not
there yet or not at it. Free of SQLAlchemy and Alembic, so fast commands can check it."""

from __future__ import annotations

from pathlib import Path

from ingestd.errors import CatalogMissing, CatalogOutdated
from ingestd.redact import MASK, mask_url, redact_text

# The newest migration's revision (test_catalog.py checks it against the migrations directory).
HEAD_REVISION = "0009"


def require_head(current: str | None) -> None:
    """Raise CatalogOutdated unless ``current`` (the catalog's alembic_version, None when it
    has none) is this ingestd's revision: the daemon migrates at start, and commands run
    beside it must not query tables it has not created yet."""
    if current == HEAD_REVISION:
        return
    if current is None or current < HEAD_REVISION:
        raise CatalogOutdated(
            f"the catalog's schema is at revision {current or 'none'}, this ingestd expects "
            f"{HEAD_REVISION}: restart the daemon (it migrates the catalog at start)"
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


def unreachable_message(url: str, exc: BaseException) -> str:
    """One line for a catalog that cannot be reached: the URL and the driver's first line,
    credentials masked (the URL's password too, should the driver quote it)."""
    lines = str(exc).strip().splitlines()
    reason = redact_text(lines[0].strip() if lines else type(exc).__name__)
    authority = url.partition("://")[2].partition("/")[0]
    userinfo, at, _ = authority.rpartition("@")
    password = userinfo.partition(":")[2] if at else ""
    if len(password) >= 3:
        reason = reason.replace(password, MASK)
    return f"cannot reach the catalog at {mask_url(url)}: {reason}"
