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
collation). ``parent || ''`` keeps SQLite off ix_resource_parent, whose rows come in
rowid order and would be sorted for every page.

A range's *stamp* (count and highest seq of its members) names its contents: a write
gives the member it writes a seq above every seq there is, and a head only ever moves
forward (restores write new versions), so two states of a range with the same stamp
hold the same (path, seq) pairs. The DAV layer caches serialized pages by it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from safehold.core.model import Resource
from safehold.store.repo import Store, _head
from safehold.store.schema import resource

_IN = sa.and_(resource.c.path > sa.bindparam("k_after"), resource.c.path < sa.bindparam("k_end"),
              resource.c.parent.concat("") == sa.bindparam("k_parent"))
_PAGE = (sa.select(resource).where(_IN).order_by(resource.c.path)
         .limit(sa.bindparam("k_limit")))
_STAMP = (sa.select(sa.func.count(), sa.func.max(resource.c.seq))
          .where(_IN & (resource.c.path <= sa.bindparam("k_last"))))


def stamp_of(page: list[Resource]) -> str:
    """``Snapshot.stamp`` of the range a page spans, from the page itself: its members
    are all the members in (after, its last path]."""
    return f"{len(page)}:{max((r.seq for r in page), default=0)}"


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

    def stamp(self, after: str, last: str) -> str:
        """The stamp of the members in (after, last]: equal stamps, equal members."""
        if self._conn is None:
            raise RuntimeError("the listing snapshot is closed")
        count, top = self._conn.execute(_STAMP, self._params(after, k_last=last)).one()
        return f"{count}:{top or 0}"

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # rolls the read transaction back, returns the connection
