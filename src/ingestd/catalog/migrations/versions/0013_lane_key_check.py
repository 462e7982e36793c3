"""each destination's key check: conditional PUTs or a HEAD first, and why

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 01:40:00.000000

The daemon decides at start whether a destination's single PUTs carry If-None-Match: * (for
conditional_writes = "auto" by a probe) and records it on the lane row, where `status --json`
reads it (docs/ARCHITECTURE.md, "S3 compatibility").
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: instant; NULL until a daemon of this version has started.
    op.add_column("lanes", sa.Column("conditional_writes", sa.Boolean(), nullable=True))
    op.add_column("lanes", sa.Column("key_check", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lanes", schema=None) as batch_op:
        batch_op.drop_column("key_check")
        batch_op.drop_column("conditional_writes")
