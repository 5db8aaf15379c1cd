"""Mass-deletion incidents, and the record of retention pruning.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PATH = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "incident",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("owner_id", sa.Integer, nullable=False),
        sa.Column("collection", PATH, nullable=False),
        sa.Column("actor_id", sa.Integer, nullable=True),
        sa.Column("user_agent", sa.Text, nullable=False),
        sa.Column("opened_at", sa.Float, nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("resolved_at", sa.Float, nullable=True),
        sa.Column("undo_seq", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_incident_owner", "incident", ["owner_id", "state"])
    op.create_table(
        "pruned",
        sa.Column("version_id", sa.BigInteger, primary_key=True),
        sa.Column("pruned_at", sa.Float, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
    )
    op.create_table(
        "prune_run",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("versions", sa.Integer, nullable=False),
        sa.Column("blobs", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    raise RuntimeError("safehold never downgrades by dropping data; restore a backup")
