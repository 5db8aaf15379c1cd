"""The schema, as SQLAlchemy Core tables. Alembic migrations create it; this module
is what queries are written against. Rows of ``change`` and ``version`` are only
ever inserted (DESIGN promise 2); ``resource`` is a rebuildable cache of heads."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Paths are compared as byte strings (range scans for subtrees rely on "/" < "0"),
# so PostgreSQL must not apply a linguistic collation to them.
Path = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

principal = sa.Table(
    "principal",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

credential = sa.Table(
    "credential",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("principal_id", sa.Integer, sa.ForeignKey("principal.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("secret_hash", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Index("ix_credential_principal", "principal_id"),
)

# The change log: one row per mutation, totally ordered by seq (DESIGN "spine").
change = sa.Table(
    "change",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("op", sa.String(16), nullable=False),
    sa.Column("owner_id", sa.Integer, nullable=True),
    sa.Column("path", Path, nullable=False),
    sa.Column("actor_id", sa.Integer, nullable=True),
    sa.Column("user_agent", sa.Text, nullable=True),
    sa.Column("request_id", sa.String(64), nullable=True),
    # Revision 0007: deletions by time, for the mass-deletion guard (store/incidents.py);
    # partial, so that the writes that are not deletions pay nothing for it.
    sa.Index("ix_change_delete_at", "at", sqlite_where=sa.text("op = 'delete'"),
             postgresql_where=sa.text("op = 'delete'")),
    sqlite_autoincrement=True,
)

version = sa.Table(
    "version",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("seq", sa.BigInteger, sa.ForeignKey("change.seq"), nullable=False),
    sa.Column("owner_id", sa.Integer, nullable=False),
    sa.Column("path", Path, nullable=False),
    sa.Column("parent", Path, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("op", sa.String(16), nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("blob_hash", sa.String(64), nullable=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("etag", sa.String(80), nullable=False),
    sa.Column("content_type", sa.Text, nullable=True),
    sa.Column("props", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_version_path_seq", "path", "seq"),
    sa.Index("ix_version_parent_seq", "parent", "seq"),
    sa.Index("ix_version_seq", "seq"),
)

resource = sa.Table(
    "resource",
    metadata,
    sa.Column("path", Path, primary_key=True),
    sa.Column("parent", Path, nullable=False),
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
    sa.Column("modified_at", sa.Float, nullable=False),
    sa.Index("ix_resource_parent", "parent"),
    sqlite_with_rowid=False,  # revision 0008: one B-tree keyed by path, not two
)

blob = sa.Table(
    "blob",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("chunks", sa.Integer, nullable=False),
    sa.Column("codec", sa.String(16), nullable=False),
    # Revision 0009: the compressed body itself when it is small (blobs.INLINE_MAX); then
    # blob_chunk holds no row for it. NULL: its chunks are in blob_chunk.
    sa.Column("data", sa.LargeBinary, nullable=True),
    sqlite_with_rowid=False,  # revision 0008
)

blob_chunk = sa.Table(
    "blob_chunk",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

CALENDAR_ONLY = "component <> 'VCARD'"  # ix_item_index_range's condition

# Index of calendar objects and vCards (revision 0002): a cache of what parsing
# the head's bytes gives, written in the same transaction as the head, so that
# time-range queries and UID checks are index lookups, not parses.
item_index = sa.Table(
    "item_index",
    metadata,
    sa.Column("path", Path, primary_key=True),
    sa.Column("collection", Path, nullable=False),
    sa.Column("component", sa.String(16), nullable=False),
    sa.Column("uid", sa.Text, nullable=False),
    sa.Column("start", sa.Float, nullable=True),  # UTC epoch; NULL: unbounded
    sa.Column("end", sa.Float, nullable=True),
    sa.Column("recurring", sa.Boolean, nullable=False),
    # Revision 0006: a recurring event's instances, "start,end;..." in UTC epoch seconds
    # (core.formats.ical_spans); NULL: not expanded, a query parses the object.
    sa.Column("instances", sa.Text, nullable=True),
    sa.Index("ix_item_index_uid", "collection", "uid"),
    # Revision 0009: calendar components only; a vCard's start is always NULL and no
    # time-range lookup asks for one, so a contact's PUT writes no entry here.
    sa.Index("ix_item_index_range", "collection", "component", "start",
             sqlite_where=sa.text(CALENDAR_ONLY), postgresql_where=sa.text(CALENDAR_ONLY)),
    sqlite_with_rowid=False,  # revision 0008
)

# Mass-deletion incidents (revision 0003): one burst of deletions by one client.
incident = sa.Table(
    "incident",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("owner_id", sa.Integer, nullable=False),
    sa.Column("collection", Path, nullable=False),
    sa.Column("actor_id", sa.Integer, nullable=True),
    sa.Column("user_agent", sa.Text, nullable=False),
    sa.Column("opened_at", sa.Float, nullable=False),
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # open, undone, confirmed
    sa.Column("resolved_at", sa.Float, nullable=True),
    sa.Column("undo_seq", sa.BigInteger, nullable=True),
    sa.Index("ix_incident_owner", "owner_id", "state"),
)

# Retention (revision 0003): versions whose content was pruned. The version and
# change rows stay (sync tokens and history need them); only unreferenced blobs go.
pruned = sa.Table(
    "pruned",
    metadata,
    sa.Column("version_id", sa.BigInteger, primary_key=True),
    sa.Column("pruned_at", sa.Float, nullable=False),
    sa.Column("run_id", sa.Integer, nullable=False),
)

prune_run = sa.Table(
    "prune_run",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("versions", sa.Integer, nullable=False),
    sa.Column("blobs", sa.Integer, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
)

# Replication (revision 0004).
replica_state = sa.Table(
    "replica_state",
    metadata,
    sa.Column("url", sa.Text, primary_key=True),
    sa.Column("shipped_seq", sa.BigInteger, nullable=False),
    sa.Column("shipped_at", sa.Float, nullable=True),
    sa.Column("snapshot_seq", sa.BigInteger, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("error_at", sa.Float, nullable=True),
)

replica_blob = sa.Table(
    "replica_blob",
    metadata,
    sa.Column("url", sa.Text, primary_key=True),
    sa.Column("hash", sa.String(64), primary_key=True),
)

drill = sa.Table(
    "drill",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("replica", sa.Text, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

lock = sa.Table(
    "dav_lock",
    metadata,
    sa.Column("token", sa.String(80), primary_key=True),
    sa.Column("path", Path, nullable=False),
    sa.Column("depth", sa.String(16), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("owner_xml", sa.Text, nullable=True),
    sa.Column("principal_id", sa.Integer, nullable=False),
    sa.Column("timeout", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("ix_lock_path", "path"),
)

# Service levels (revision 0005): events with a start and an end, and the built-in
# prober's samples (kept for SAMPLE_DAYS, see store/sla.py).
sla_event = sa.Table(
    "sla_event",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # downtime, rpo_breach, durability
    sa.Column("source", sa.String(32), nullable=False),  # what saw it: probe, gate, errors, ...
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float, nullable=True),  # NULL: still open
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("value", sa.Float, nullable=True),  # rpo_breach: the worst lag seen
    sa.Index("ix_sla_event_started", "started_at"),
)

probe_sample = sa.Table(
    "probe_sample",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("latency", sa.Float, nullable=False),
    sa.Column("step", sa.String(16), nullable=False),  # the step that failed, or "all"
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_probe_sample_at", "at"),
)

# Web page logins (revision 0010): in the database, so that a session survives a restart
# and is the same in every process behind a load balancer. The key is the SHA-256 of the
# cookie's token, so that a copy of the database holds no usable session. Not versioned,
# not replicated: a restored server asks everyone to log in again.
web_session = sa.Table(
    "web_session",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user", sa.String(64), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("seen_at", sa.Float, nullable=False),
    sa.Column("flash", sa.Text, nullable=False),  # JSON list: messages for the next page
)

# Long operations started from a web page (revision 0011): in the database, so that the
# progress page and the export's download answer from every process behind a load
# balancer, and a job whose process stopped is shown as stopped, not as running forever.
# ``beat`` is the running process's last sign of life. Not versioned, not replicated.
web_job = sa.Table(
    "web_job",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # running, done, failed
    sa.Column("done", sa.BigInteger, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("finished", sa.Float, nullable=True),
    sa.Column("beat", sa.Float, nullable=False),
    sa.Column("result", sa.Text, nullable=False),  # JSON object
    sa.Column("file", sa.Text, nullable=True),  # the export's archive, on ``host``
    sa.Column("host", sa.Text, nullable=False),  # the process running it: "hostname pid N"
    sa.Column("back", sa.Text, nullable=False),
)
