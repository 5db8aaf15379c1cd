"""SQLite: ``resource``, ``item_index`` and ``blob`` become WITHOUT ROWID tables.

Each is keyed by text (a path, a hash). As rowid tables, each row lived in two B-trees:
the table and the automatic index of its primary key, and a PUT's commit wrote a page
of both. A WITHOUT ROWID table is one B-tree ordered by its key, so a PUT writes three
pages fewer (17 -> 14 WAL frames per new vCard, counted with a WAL hook; each page
of a commit costs ~0.04 ms of write and fsync, docs/benchmarks.md "Notes"). Lookups
by key read one B-tree instead of two; rows, columns and indexes stay as they were.

``blob_chunk`` stays a rowid table: it holds the content itself, and rebuilding it
would copy every byte of every file at upgrade time. ``change`` keeps AUTOINCREMENT:
canary compaction (store/sla.py) may delete the highest change row, and a plain rowid
would then hand that seq out again (a replica already holds it).

PostgreSQL has no rowid: nothing changes there.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("resource", "item_index", "blob")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in TABLES:
        # Copy-and-rename (Alembic's batch mode): the new table is created from the
        # reflected one, with its columns, primary key and indexes, and every row copied.
        with op.batch_alter_table(name, recreate="always",
                                  table_kwargs={"sqlite_with_rowid": False}):
            pass


def downgrade() -> None:
    raise RuntimeError("safehold never downgrades by dropping data; restore a backup")
