"""The first schema: principals, change log, versions, heads, blobs, locks.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# A migration is frozen: it spells out the tables as they were when it was written and
# never imports schema.py, which describes the newest schema.
PATH = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table("meta",
                    sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("value", sa.Text, nullable=False))
    op.create_table("principal",
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("name", sa.String(64), nullable=False, unique=True),
                    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
                    sa.Column("created_at", sa.Float, nullable=False))
    op.create_table("credential",
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("principal_id", sa.Integer, sa.ForeignKey("principal.id"),
                              nullable=False),
                    sa.Column("kind", sa.String(16), nullable=False),
                    sa.Column("secret_hash", sa.Text, nullable=False),
                    sa.Column("created_at", sa.Float, nullable=False),
                    sa.Column("revoked_at", sa.Float, nullable=True))
    op.create_index("ix_credential_principal", "credential", ["principal_id"])
    op.create_table("change",
                    sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
                    sa.Column("at", sa.Float, nullable=False),
                    sa.Column("op", sa.String(16), nullable=False),
                    sa.Column("owner_id", sa.Integer, nullable=True),
                    sa.Column("path", PATH, nullable=False),
                    sa.Column("actor_id", sa.Integer, nullable=True),
                    sa.Column("user_agent", sa.Text, nullable=True),
                    sa.Column("request_id", sa.String(64), nullable=True),
                    sqlite_autoincrement=True)
    op.create_table("version",
                    sa.Column("id", SEQ, primary_key=True, autoincrement=True),
                    sa.Column("seq", sa.BigInteger, sa.ForeignKey("change.seq"), nullable=False),
                    sa.Column("owner_id", sa.Integer, nullable=False),
                    sa.Column("path", PATH, nullable=False),
                    sa.Column("parent", PATH, nullable=False),
                    sa.Column("kind", sa.String(16), nullable=False),
                    sa.Column("op", sa.String(16), nullable=False),
                    sa.Column("deleted", sa.Boolean, nullable=False),
                    sa.Column("blob_hash", sa.String(64), nullable=True),
                    sa.Column("size", sa.BigInteger, nullable=False),
                    sa.Column("etag", sa.String(80), nullable=False),
                    sa.Column("content_type", sa.Text, nullable=True),
                    sa.Column("props", sa.Text, nullable=False),
                    sa.Column("created_at", sa.Float, nullable=False))
    op.create_index("ix_version_path_seq", "version", ["path", "seq"])
    op.create_index("ix_version_parent_seq", "version", ["parent", "seq"])
    op.create_index("ix_version_seq", "version", ["seq"])
    op.create_table("resource",
                    sa.Column("path", PATH, primary_key=True),
                    sa.Column("parent", PATH, nullable=False),
                    sa.Column("owner_id", sa.Integer, nullable=False),
                    sa.Column("kind", sa.String(16), nullable=False),
                    sa.Column("version_id", sa.BigInteger, nullable=False),
                    sa.Column("blob_hash", sa.String(64), nullable=True),
                    sa.Column("size", sa.BigInteger, nullable=False),
                    sa.Column("etag", sa.String(80), nullable=False),
                    sa.Column("content_type", sa.Text, nullable=True),
                    sa.Column("props", sa.Text, nullable=False),
                    sa.Column("seq", sa.BigInteger, nullable=False),
                    sa.Column("created_at", sa.Float, nullable=False),
                    sa.Column("modified_at", sa.Float, nullable=False))
    op.create_index("ix_resource_parent", "resource", ["parent"])
    op.create_table("blob",
                    sa.Column("hash", sa.String(64), primary_key=True),
                    sa.Column("size", sa.BigInteger, nullable=False),
                    sa.Column("chunks", sa.Integer, nullable=False),
                    sa.Column("codec", sa.String(16), nullable=False))
    op.create_table("blob_chunk",
                    sa.Column("hash", sa.String(64), primary_key=True),
                    sa.Column("idx", sa.Integer, primary_key=True),
                    sa.Column("data", sa.LargeBinary, nullable=False))
    op.create_table("dav_lock",
                    sa.Column("token", sa.String(80), primary_key=True),
                    sa.Column("path", PATH, nullable=False),
                    sa.Column("depth", sa.String(16), nullable=False),
                    sa.Column("scope", sa.String(16), nullable=False),
                    sa.Column("owner_xml", sa.Text, nullable=True),
                    sa.Column("principal_id", sa.Integer, nullable=False),
                    sa.Column("timeout", sa.Integer, nullable=False),
                    sa.Column("expires_at", sa.Float, nullable=False))
    op.create_index("ix_lock_path", "dav_lock", ["path"])


def downgrade() -> None:
    raise RuntimeError("safehold never downgrades by dropping data; restore a backup")
