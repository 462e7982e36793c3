"""the MD5 taken with the fingerprint, for files sent in one request

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 13:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: instant on SQLite and PostgreSQL whatever the table's size. Rows
    # without it (older rows, multipart-sized files) are hashed by the upload as before.
    op.add_column("files", sa.Column("md5", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_column("md5")
