"""queue priorities: files.priority and the claim's index

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-07 02:00:00.000000

Every existing row gets priority 0 (the order it had: first come). A constant default is
instant on both SQLite and PostgreSQL (>= 11) whatever the table's size.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("files", sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
    op.create_index(
        "ix_files_lane_priority",
        "files",
        ["destination", "state", sa.text("priority DESC"), "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_files_lane_priority", table_name="files")
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_column("priority")
