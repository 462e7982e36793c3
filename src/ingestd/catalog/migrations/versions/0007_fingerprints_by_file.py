"""fingerprints indexed by file

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 11:30:00.000000
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Recording an upload's key on its fingerprint and releasing a failed file's fingerprint
    # look rows up by file id; without the index each scanned every fingerprint ever kept.
    op.create_index("ix_fingerprints_file", "fingerprints", ["file_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_fingerprints_file", table_name="fingerprints")
