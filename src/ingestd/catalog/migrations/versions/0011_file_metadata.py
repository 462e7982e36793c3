"""what validation read off a file's content, as JSON

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 01:45:00.000000

Merged after 0012 (queue priorities) was written against 0010; 0012 now revises this one,
so the chain stays linear: 0010 -> 0011 -> 0012.

``files.metadata`` holds the facts of ingestd.metadata (pages, encrypted, width, height,
format, sheets, slides). Rows taken in before this revision keep NULL: ``show`` and
``files --json`` print ``"metadata": null`` for them (docs/ARCHITECTURE.md, "Metadata").
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: instant on SQLite and PostgreSQL whatever the table's size.
    op.add_column("files", sa.Column("metadata", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35 has it), not batch mode: rebuilding ``files`` would
    # drop the file_totals triggers of migration 0006.
    op.drop_column("files", "metadata")
