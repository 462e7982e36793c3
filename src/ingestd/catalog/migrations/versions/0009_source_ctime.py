"""the source's ctime when it was hashed

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 14:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: instant whatever the table's size; rows queued before it are
    # checked by size and mtime only, as before.
    op.add_column("files", sa.Column("ctime_ns", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_column("ctime_ns")
