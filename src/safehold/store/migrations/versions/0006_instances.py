"""Expanded instances of recurring events in the calendar index, so that time-range
queries decide them without parsing (DESIGN: "expanded instances over a bounded horizon").

Rows written before this revision keep NULL (not expanded): queries parse those objects,
as before, until the next PUT of each rewrites its index row.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("item_index", sa.Column("instances", sa.Text, nullable=True))


def downgrade() -> None:
    raise RuntimeError("safehold never downgrades by dropping data; restore a backup")
