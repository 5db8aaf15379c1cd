"""Index of calendar objects and vCards for time-range queries and UID checks.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PATH = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "item_index",
        sa.Column("path", PATH, primary_key=True),
        sa.Column("collection", PATH, nullable=False),
        sa.Column("component", sa.String(16), nullable=False),
        sa.Column("uid", sa.Text, nullable=False),
        sa.Column("start", sa.Float, nullable=True),
        sa.Column("end", sa.Float, nullable=True),
        sa.Column("recurring", sa.Boolean, nullable=False),
    )
    op.create_index("ix_item_index_uid", "item_index", ["collection", "uid"])
    op.create_index("ix_item_index_range", "item_index", ["collection", "component", "start"])
    # Existing calendar objects and vCards (none before CalDAV/CardDAV existed) would
    # be indexed here; revision 0001 had no calendar or address book collections.


def downgrade() -> None:
    raise RuntimeError("safehold never downgrades by dropping data; restore a backup")
