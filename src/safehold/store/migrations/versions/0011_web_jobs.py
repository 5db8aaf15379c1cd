"""Long operations started from a web page (rollback, export, drill) in the database:
their progress page and the export's download answer from every process of a
PostgreSQL deployment, and survive a restart as "stopped" instead of vanishing (they
were held in the memory of the process that ran them).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_job",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("done", sa.BigInteger, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("finished", sa.Float, nullable=True),
        sa.Column("beat", sa.Float, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("file", sa.Text, nullable=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("back", sa.Text, nullable=False),
    )


def downgrade() -> None:
    raise RuntimeError("safehold never downgrades by dropping data; restore a backup")
