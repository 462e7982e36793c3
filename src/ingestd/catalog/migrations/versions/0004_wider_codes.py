"""wider reason codes: a rejection may carry several comma-separated codes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 03:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.alter_column(
            "reason_code",
            existing_type=sa.String(length=32),
            type_=sa.Text(),
            existing_nullable=True,
        )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column(
            "code", existing_type=sa.String(length=32), type_=sa.Text(), existing_nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column(
            "code", existing_type=sa.Text(), type_=sa.String(length=32), existing_nullable=True
        )
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.alter_column(
            "reason_code",
            existing_type=sa.Text(),
            type_=sa.String(length=32),
            existing_nullable=True,
        )
