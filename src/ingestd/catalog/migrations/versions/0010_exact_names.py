"""file names kept exactly: escape the rare old values that start with names.MARK

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 23:45:00.000000

From this revision a stored name that starts with U+FFFF (``names.MARK``) is an escaped name
(docs/ARCHITECTURE.md, "File names"). Before it, a UTF-8 name starting with U+FFFF was stored
as it is; such values (in practice none) are rewritten into the escaped form so they still read
back as the same name. Every other value is already what the new code stores. No DDL.
"""

import sqlalchemy as sa
from alembic import op

import ingestd.names as names

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_COLUMNS = {
    "files": ("relpath", "source_path", "source_key", "post_path", "reason"),
    "events": ("detail",),
}


def upgrade() -> None:
    conn = op.get_bind()
    for table, columns in _COLUMNS.items():
        for column in columns:
            t = sa.table(table, sa.column("id"), sa.column(column, sa.Text))
            col = t.c[column]
            # LIKE would treat nothing in MARK specially, but substr is clearer and portable.
            hits = conn.execute(
                sa.select(t.c.id, col).where(sa.func.substr(col, 1, 1) == names.MARK)
            ).all()
            for row_id, value in hits:
                conn.execute(
                    sa.update(t).where(t.c.id == row_id).values({column: names.to_catalog(value)})
                )


def downgrade() -> None:
    pass  # the values stay readable: an old release shows an escaped name in its stored form
