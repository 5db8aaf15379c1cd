"""Service levels: events with a start and an end (downtime, RPO breaches, durability
breaches) and the prober's samples.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sla_event",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("value", sa.Float, nullable=True),
    )
    op.create_index("ix_sla_event_started", "sla_event", ["started_at"])
    op.create_table(
        "probe_sample",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("latency", sa.Float, nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_probe_sample_at", "probe_sample", ["at"])


def downgrade() -> None:
    raise RuntimeError("safehold never downgrades by dropping data; restore a backup")
