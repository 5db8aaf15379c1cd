"""The first schema: principals, change log, versions, heads, blobs, locks.

Revision ID: 0001
"""

from alembic import op

from safehold.store.schema import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The first migration creates exactly the tables of schema.py at the time it was
# written. Later migrations must spell out their changes instead of importing.
TABLES = ["meta", "principal", "credential", "change", "version", "resource", "blob",
          "blob_chunk", "dav_lock"]


def upgrade() -> None:
    bind = op.get_bind()
    metadata.create_all(bind, tables=[metadata.tables[t] for t in TABLES])


def downgrade() -> None:
    raise RuntimeError("safehold never downgrades by dropping data; restore a backup")
