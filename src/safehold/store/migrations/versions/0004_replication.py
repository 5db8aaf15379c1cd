"""Replication state per replica, shipped blobs, and drill results.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replica_state",
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column("shipped_seq", sa.BigInteger, nullable=False),
        sa.Column("shipped_at", sa.Float, nullable=True),
        sa.Column("snapshot_seq", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("error_at", sa.Float, nullable=True),
    )
    op.create_table(
        "replica_blob",
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column("hash", sa.String(64), primary_key=True),
    )
    op.create_table(
        "drill",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("replica", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )


def downgrade() -> None:
    raise RuntimeError("safehold never downgrades by dropping data; restore a backup")
