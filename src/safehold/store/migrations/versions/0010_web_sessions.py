"""Web page logins in the database: a session survives a restart and is the same in
every process of a PostgreSQL deployment (they were held in each process's memory, so
a load balancer needed sticky sessions and every restart logged everyone out).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_session",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
        sa.Column("flash", sa.Text, nullable=False),
    )


def downgrade() -> None:
    raise RuntimeError("safehold never downgrades by dropping data; restore a backup")
