"""An index of deletions by time, for the mass-deletion guard: it counted a client's
recent deletions by walking every change of the window (at N = 100,000 items written
within ten minutes, 150 ms per DELETE); the partial index holds only the deletions.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_change_delete_at", "change", ["at"],
                    sqlite_where=sa.text("op = 'delete'"), postgresql_where=sa.text("op = 'delete'"))


def downgrade() -> None:
    raise RuntimeError("safehold never downgrades by dropping data; restore a backup")
