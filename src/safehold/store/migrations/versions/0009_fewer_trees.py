"""Fewer B-trees written per PUT: a small body lives in its ``blob`` row, and vCards
have no entry in the time-range index.

A PUT's commit writes one or more pages of every B-tree it touches, and the pages are
most of its cost (docs/benchmarks.md "Notes": 20 WAL frames per new vCard, counted with
a WAL hook). Two of those trees served a small body poorly:

- ``blob.data``: the compressed body itself, when it is one chunk that compresses to at
  most ``blobs.INLINE_MAX`` bytes; ``blob_chunk`` then holds no row for it. A contact or
  an event no longer writes ``blob_chunk`` and its primary-key index (about 2.2 pages).
  Bodies stored before stay in ``blob_chunk``; readers take either form.
- ``ix_item_index_range`` only holds calendar components: a vCard's start is always
  NULL, and time-range lookups never ask for VCARD (about 2 pages per vCard).

Neither rewrites existing rows: a column added as NULL and one index rebuilt from
``item_index``.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CALENDAR_ONLY = "component <> 'VCARD'"


def upgrade() -> None:
    op.add_column("blob", sa.Column("data", sa.LargeBinary, nullable=True))
    op.drop_index("ix_item_index_range", table_name="item_index")
    op.create_index("ix_item_index_range", "item_index", ["collection", "component", "start"],
                    sqlite_where=sa.text(CALENDAR_ONLY), postgresql_where=sa.text(CALENDAR_ONLY))


def downgrade() -> None:
    raise RuntimeError("safehold never downgrades by dropping data; restore a backup")
