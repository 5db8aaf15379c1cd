"""A collection's members read in pages from one snapshot, with its sync seq.

A listing of 100,000 members held whole cost 81 MiB of Resource objects and, built
in one piece, kept every member alive at once, so the garbage collector walked them
again and again (a third of a PROPFIND at 10,000 members). A ``Snapshot`` holds one
read transaction (SQLite WAL: writers go on; PostgreSQL: REPEATABLE READ) and reads
the members a page at a time by keyset, so that memory does not grow with the
collection and the members and the sync token are one state of the database: the
token never claims a change the listing does not show (RFC 6578 §3.2).

Pages walk the primary key on ``path``: a collection's children are the range
(P + "/", P + "0") ("/" is 0x2F, "0" is 0x30; PostgreSQL compares paths with the C
collation). ``parent || ''`` keeps SQLite off ix_resource_parent: while ``resource`` was
a rowid table that index gave its rows in rowid order, to be sorted for every page. Since
revision 0008 (WITHOUT ROWID) its entries end with the path, so they come in path order
too (the children query, EXPLAIN QUERY PLAN, needs no sort); the range scan stays.

A range's *stamp* (count and highest seq of its members) names its contents: a write
gives the member it writes a seq above every seq there is, and a head only ever moves
forward (restores write new versions), so two states of a range with the same stamp
hold the same (path, seq) pairs. The DAV layer caches serialized pages by it.

``rows`` is the listing's hot path: the columns a listing shows, as the driver's own
tuples (store/fastsql.py). Through SQLAlchemy's row objects and ``Resource`` a member
cost ~10 µs at 10,000 members, most of a cold PROPFIND's database time; so, ~2 µs.
(``page`` is the same members as ``Resource``s, for tests and for reading by name.)

``changed_since`` says which ranges a write touched without reading them: a stamp
reads every row of its range (~1.4 ms per thousand members on SQLite), the members
changed since a sync token come from the version index at the cost of the changes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from safehold.core.model import Resource
from safehold.store import fastsql
from safehold.store.repo import Store, _head
from safehold.store.schema import resource, version

# ``|| ''`` rather than SQLAlchemy's concat(""), whose anonymous parameter fastsql
# would not be given.
_IN = sa.and_(resource.c.path > sa.bindparam("k_after"), resource.c.path < sa.bindparam("k_end"),
              resource.c.parent.concat(sa.literal_column("''")) == sa.bindparam("k_parent"))
_PAGE = (sa.select(resource).where(_IN).order_by(resource.c.path)
         .limit(sa.bindparam("k_limit")))
# The columns ``rows`` returns, in the order of ``Row``.
_ROWS = (sa.select(resource.c.path, resource.c.kind, resource.c.etag, resource.c.size,
                   resource.c.content_type, resource.c.props, resource.c.seq,
                   resource.c.created_at, resource.c.modified_at)
         .where(_IN).order_by(resource.c.path))
_F_ROWS = fastsql.Statement(_ROWS.limit(sa.bindparam("k_limit")).offset(sa.bindparam("k_offset")))
_F_ROWS_THROUGH = fastsql.Statement(
    _ROWS.where(resource.c.path <= sa.bindparam("k_last"))
    .limit(sa.bindparam("k_limit")).offset(sa.bindparam("k_offset")))
_F_STAMP = fastsql.Statement(sa.select(sa.func.count(), sa.func.max(resource.c.seq))
                             .where(_IN & (resource.c.path <= sa.bindparam("k_last"))))
# Members changed after a seq: what an incremental sync from that seq reports
# (Store.changes_since), by the same index (ix_version_parent_seq).
_F_CHANGED = fastsql.Statement(
    sa.select(version.c.path)
    .where((version.c.parent == sa.bindparam("k_parent")) & (version.c.seq > sa.bindparam("k_seq")))
    .limit(sa.bindparam("k_limit")).offset(sa.bindparam("k_offset")))


class Row(NamedTuple):
    """The shape of a ``Snapshot.rows`` tuple (the driver's tuples are not Rows: read
    them by position, in this order). ``props`` is the stored JSON text."""

    path: str
    kind: str
    etag: str
    size: int
    content_type: str | None
    props: str
    seq: int
    created_at: float
    modified_at: float


SEQ = Row._fields.index("seq")


def stamp_of(page: list[Resource]) -> str:
    """``Snapshot.stamp`` of the range a page spans, from the page itself: its members
    are all the members in (after, its last path]."""
    return f"{len(page)}:{max((r.seq for r in page), default=0)}"


def stamp_of_rows(rows: list[tuple[Any, ...]]) -> str:
    """``stamp_of`` of ``Snapshot.rows``."""
    return f"{len(rows)}:{max((r[SEQ] for r in rows), default=0)}"


class Snapshot:
    """Members of one collection, page by page, and its sync seq, all from one read
    transaction. ``close`` ends it (idempotent); reading the last page closes it too."""

    def __init__(self, store: Store, path: str) -> None:
        self.path = path
        self._conn: Connection | None = store.engine.connect()
        try:
            self._conn.begin()
            if self._conn.dialect.name != "sqlite":
                self._conn.exec_driver_sql(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            self.seq = store._collection_seq(self._conn, path)
        except BaseException:
            self.close()
            raise

    def _params(self, after: str, **more: Any) -> dict[str, Any]:
        return {"k_after": after or self.path + "/", "k_end": self.path + "0",
                "k_parent": self.path, **more}

    def page(self, after: str, limit: int) -> list[Resource]:
        """Up to ``limit`` members whose paths sort after ``after`` ("": the first)."""
        if self._conn is None:
            raise RuntimeError("the listing snapshot is closed")
        return [_head(r) for r in self._conn.execute(_PAGE, self._params(after, k_limit=limit))]

    def rows(self, after: str, limit: int, last: str | None = None) -> list[tuple[Any, ...]]:
        """The next ``limit`` members whose paths sort after ``after`` ("": the first),
        as ``Row``-shaped tuples; with ``last``, only those up to and including it."""
        if self._conn is None:
            raise RuntimeError("the listing snapshot is closed")
        if last is None:
            return fastsql.rows(self._conn, _F_ROWS, self._params(after, k_limit=limit, k_offset=0))
        return fastsql.rows(self._conn, _F_ROWS_THROUGH,
                            self._params(after, k_limit=limit, k_offset=0, k_last=last))

    def stamp(self, after: str, last: str) -> str:
        """The stamp of the members in (after, last]: equal stamps, equal members."""
        if self._conn is None:
            raise RuntimeError("the listing snapshot is closed")
        (count, top), = fastsql.rows(self._conn, _F_STAMP, self._params(after, k_last=last))
        return f"{count}:{top or 0}"

    def changed_since(self, seq: int, limit: int) -> list[str] | None:
        """The sorted paths of the members that changed, came or went after ``seq`` (a
        seq of this collection's sync token); None when there are more than ``limit``
        changes. A range of members that holds none of them is as it was at ``seq``:
        this is what an incremental sync reports (RFC 6578), by the same index."""
        if self._conn is None:
            raise RuntimeError("the listing snapshot is closed")
        found = fastsql.rows(self._conn, _F_CHANGED, {
            "k_parent": self.path, "k_seq": seq, "k_limit": limit + 1, "k_offset": 0})
        return None if len(found) > limit else sorted({path for path, in found})

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # rolls the read transaction back, returns the connection
