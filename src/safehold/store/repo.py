"""The versioned store: every mutation is one change-log row plus immutable version
rows; ``resource`` holds the heads. SQL lives here and nowhere above."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
import uuid
import weakref
from contextvars import ContextVar
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine, Row

from safehold.core.model import (
    COLLECTION, ITEM, Actor, Body, ItemIndex, Lock, Principal, Resource, dump_props,
    load_props, parent_of,
)
from safehold.errors import (
    AlreadyExists, Conflict, DomainError, NotFound, PreconditionFailed, StoreError, UidConflict,
    UnknownUser, UserExists, WriteBusy,
)
from safehold.store import blobs, fastsql, faults, sqlite_dbapi
from safehold.store import engine as engine_mod
from safehold.store.checkpoint import Checkpointer
from safehold.store.schema import (
    blob, change, credential, item_index, lock, meta, principal, resource, version,
)

T = TypeVar("T")
WRITE_LOCK_KEY = 0x5AFE0001  # PostgreSQL advisory lock serializing writers
SHIPPER_LOCK_KEY = 0x5AFE0002  # held by the one process that ships to replicas

@dataclass(frozen=True)
class NewItem:
    """One item of :meth:`Store.put_new_many`: small bytes, already validated."""

    path: str
    data: bytes
    content_type: str | None
    index: ItemIndex | None


# Paths are the DAV path below /dav/, without slashes at either end, e.g.
# "files/alice/docs/a.txt". Descendants of P are the paths in the half-open range
# [P + "/", P + "0"): "/" is 0x2F and "0" is 0x30, so this is an index range scan.


def _subtree(col: Any, path: str) -> Any:
    return sa.or_(col == path, sa.and_(col >= path + "/", col < path + "0"))


def _etag(seq: int, kind: str, blob_hash: str | None) -> str:
    if kind != ITEM:
        return f'"c-{seq}"'
    return f'"{seq}-{(blob_hash or "")[:16]}"'


# Statements of the write path, built once: SQLAlchemy caches a statement's compiled
# form by its cache key, and a statement built per call pays for construction and
# key generation every time (about a fifth of a PUT's CPU, measured with cProfile).
_HEAD = sa.select(resource).where(resource.c.path == sa.bindparam("k_path"))
# An item and its parent in one statement (PUT reads both, before and in its write).
_HEAD_PAIR = sa.select(resource).where(resource.c.path.in_(
    [sa.bindparam("k_path"), sa.bindparam("k_parent")]))
# Every write runs these; store/fastsql.py runs them on the driver's cursor.
_INSERT_CHANGE = fastsql.Statement(sa.insert(change).returning(change.c.seq))
_INSERT_VERSION = fastsql.Statement(sa.insert(version).returning(version.c.id))
_INSERT_HEAD = fastsql.Statement(sa.insert(resource))
_UPDATE_HEAD = fastsql.Statement(
    sa.update(resource).where(resource.c.path == sa.bindparam("k_path")))
_DELETE_INDEX = fastsql.Statement(
    sa.delete(item_index).where(item_index.c.path == sa.bindparam("k_path")))


def _upsert_index(insert: Any) -> fastsql.Statement:
    """An item's index row, inserted or replaced in one statement (a PUT wrote a
    DELETE and an INSERT, and a new item paid for the DELETE's index lookup too)."""
    stmt = insert(item_index)
    return fastsql.Statement(stmt.on_conflict_do_update(
        index_elements=[item_index.c.path],
        set_={c.name: stmt.excluded[c.name] for c in item_index.c if c.name != "path"}))


_UPSERT_INDEX = {"sqlite": _upsert_index(sqlite_dialect.insert),
                 "postgresql": _upsert_index(postgresql_dialect.insert)}
_F_HEAD_PAIR = fastsql.Statement(_HEAD_PAIR)
# A head with its body's stored chunk if the body is one chunk of at most SMALL_BODY
# bytes (Store.get_with_body): a GET of a contact in one statement, not two. A scalar
# subquery, not LEFT JOINs: with SQLite 3.54 the joins took 30-55 µs where this and
# each of the two statements it replaces take 7-25 µs.
SMALL_BODY = 256 * 1024
_SMALL_CHUNK = (sa.select(blobs.first_chunk(blob.c.hash))
                .where((blob.c.hash == resource.c.blob_hash)
                       & (blob.c.chunks == sa.literal_column("1"))
                       & (resource.c.size <= sa.literal_column(str(SMALL_BODY))))
                .correlate(resource).scalar_subquery())
_F_HEAD_BODY = fastsql.Statement(
    sa.select(resource, _SMALL_CHUNK).where(resource.c.path == sa.bindparam("k_path")))
_SAME_UID = fastsql.Statement(sa.select(item_index.c.path).where(
    (item_index.c.collection == sa.bindparam("k_collection"))
    & (item_index.c.uid == sa.bindparam("k_uid")) & (item_index.c.path != sa.bindparam("k_path"))))


# Listings and sync tokens: a collection's members, the highest seq among them and of
# the collection itself (Store.collection_seq), the highest seq of all.
_CHILDREN = (sa.select(resource).where(resource.c.parent == sa.bindparam("k_path"))
             .order_by(resource.c.path))
_MEMBERS_SEQ = sa.select(sa.func.max(version.c.seq)).where(version.c.parent == sa.bindparam("k_path"))
_OWN_SEQ = sa.select(sa.func.max(version.c.seq)).where(version.c.path == sa.bindparam("k_path"))
_LAST_SEQ = sa.select(sa.func.max(change.c.seq))
# Both in one statement (a PROPFIND of a collection asks for its sync token or ctag).
_F_COLLECTION_SEQ = fastsql.Statement(sa.select(_MEMBERS_SEQ.scalar_subquery(),
                                                _OWN_SEQ.scalar_subquery()))

# Sync-collection after a token (Store.changes_since): each member changed after
# k_seq with the seq of its last change, and its head (NULLs: deleted). The range scan
# of ix_version_parent_seq reads only the changes, so the cost does not grow with the
# collection. resource's columns come first, for _head.
_LATEST = (sa.select(version.c.path, sa.func.max(version.c.seq).label("seq"))
           .where((version.c.parent == sa.bindparam("k_parent"))
                  & (version.c.seq > sa.bindparam("k_seq")))
           .group_by(version.c.path).subquery())
# Only the head's columns a DAV response is made of: the other four cost a third of the
# statement at 100 changes (measured with APSW alone), and a Change and a Resource per
# row cost as much again (Store.changes_since returns plain tuples).
_CHANGES_SINCE = (sa.select(_LATEST.c.path.label("changed"), _LATEST.c.seq.label("changed_seq"),
                            resource.c.kind, resource.c.size, resource.c.etag,
                            resource.c.content_type, resource.c.props, resource.c.created_at,
                            resource.c.modified_at)
                  .select_from(_LATEST.outerjoin(resource, resource.c.path == _LATEST.c.path))
                  .order_by(_LATEST.c.seq, _LATEST.c.path))

# Reads of many rows run on the driver's cursor (store/fastsql.py): SQLAlchemy's result
# machinery cost about as much per row as building the Resource (cProfile of a
# calendar-query at 10,000 events).
_F_CHANGES_SINCE = fastsql.Statement(_CHANGES_SINCE)
_F_LAST_SEQ = fastsql.Statement(_LAST_SEQ)  # every incremental sync checks its token
# What a DAV response needs of a head (Store.heads): not its parent, owner, version or seq.
_HEAD_COLUMNS = [resource.c.path, resource.c.kind, resource.c.blob_hash, resource.c.size,
                 resource.c.etag, resource.c.content_type, resource.c.props,
                 resource.c.created_at, resource.c.modified_at]
# Store.get_many's and Store.heads's statements by number of paths.
_GET_MANY = fastsql.InList(lambda ps: sa.select(resource).where(resource.c.path.in_(ps)),
                           fastsql.Statement)
_HEADS = fastsql.InList(lambda ps: sa.select(*_HEAD_COLUMNS).where(resource.c.path.in_(ps)),
                        fastsql.Statement)
_INDEX_ENTRIES: dict[tuple[str, bool, bool, bool, bool], Any] = {}  # by a query's shape
# Bounds the HTTP layer checks before it answers a REPORT on its event loop: whether a
# collection changed more than k_offset times after k_seq, whether it has more than
# k_limit index rows. Each reads at most that many index entries, whatever the size.
_MORE_CHANGES = (
    sa.select(version.c.seq).where((version.c.parent == sa.bindparam("k_parent"))
                                   & (version.c.seq > sa.bindparam("k_seq")))
    .order_by(version.c.seq).limit(sa.bindparam("k_limit")).offset(sa.bindparam("k_offset")))
# Store.sync_bound: the highest seq of all (a token from the future is unknown) and the
# bound above, in one statement (each costs less than running a statement at all).
_F_SYNC_BOUND = fastsql.Statement(sa.select(_LAST_SEQ.scalar_subquery(),
                                            _MORE_CHANGES.scalar_subquery()))
_INDEX_ROWS: dict[tuple[str, bool], fastsql.Statement] = {}  # by a lookup's shape


def _index_rows(component: str, end: bool) -> fastsql.Statement:
    """Store.index_rows_more_than's statement: an entry past the first k_offset that a
    lookup of the collection (the component, starting before k_end) reads, if there is
    one: the index range alone (covering), without a count(*) of a LIMITed subquery
    (which took three times as long on SQLite)."""
    st = _INDEX_ROWS.get((component, end))
    if st is None:
        bounded = _lookup(sa.select(item_index.c.path), component, False, end)
        st = _INDEX_ROWS[(component, end)] = fastsql.Statement(
            bounded.limit(sa.bindparam("k_limit")).offset(sa.bindparam("k_offset")))
    return st


def _component_shape(component: str | None) -> str:
    """A lookup's component, as its statement's shape: "" (any), "VCARD", or "calendar"
    (any other, the components ix_item_index_range holds since revision 0009)."""
    if not component:
        return ""
    return "VCARD" if component == "VCARD" else "calendar"


def _lookup(select: sa.Select[Any], component: str, start: bool, end: bool) -> Any:
    """``select`` (of item_index, joined or not) narrowed to the index entries a lookup
    of this shape reads: the collection's (of k_component), ending after k_start, and
    starting before k_end or undated. "start IS NULL OR start < :end" is two branches:
    with the OR, SQLite scanned every entry of the component in ix_item_index_range and
    looked each row up (1.1 ms of a 2 ms calendar-query at 1,000 events); each branch
    is a range of that index. The lookup (_index_entries) and its bound (_index_rows)
    both use this, so the bound counts what the lookup reads."""
    conds = [item_index.c.collection == sa.bindparam("k_collection")]
    if component:
        conds.append(item_index.c.component == sa.bindparam("k_component"))
    if component == "calendar":
        # The partial index's own condition (schema.CALENDAR_ONLY): SQLite uses a
        # partial index only for a query whose WHERE holds that term.
        conds.append(item_index.c.component != sa.literal_column("'VCARD'"))
    if start:
        conds.append(sa.or_(item_index.c.end.is_(None), item_index.c.end > sa.bindparam("k_start")))
    select = select.where(*conds)
    if not end:
        return select
    return sa.union_all(select.where(item_index.c.start.is_(None)),
                        select.where(item_index.c.start < sa.bindparam("k_end")))


Spans = tuple[tuple[int, int], ...]


def _dump_spans(spans: Spans) -> str:
    """item_index.instances: "start,end;start,end" (UTC epoch seconds, sorted)."""
    return ";".join(f"{s},{e}" for s, e in spans)


def index_row(path: str, index: ItemIndex) -> dict[str, Any]:
    """The ``item_index`` row of the item at ``path``: one shape for a write and for
    restore's rebuild, so that a restored store answers queries as the live one did."""
    return dict(path=path, collection=parent_of(path), component=index.component, uid=index.uid,
                start=index.start, end=index.end, recurring=index.recurring,
                instances=None if index.spans is None else _dump_spans(index.spans))


def _load_spans(text: str | None) -> Spans | None:
    if text is None:
        return None
    if not text:
        return ()
    # One split and int() by map, pairs by zip: a calendar-query loads the spans of
    # every recurring candidate, and a generator of partitions cost 3x as much.
    numbers = map(int, text.replace(";", ",").split(","))
    return tuple(zip(numbers, numbers, strict=True))


# Parsed item_index.instances by their text (a version's instances never change, and
# the same month is asked for again and again): a calendar-query at 1,000 events spent
# 5-9 % of its server samples parsing the spans of its 21 recurring candidates. Bounded
# by the characters of the texts held (~7 bytes held per character, measured with
# tracemalloc: ~3.5 MiB when full, ~2,000 weekly events of ten instances); when full,
# it starts again.
_SPANS_BUDGET = 500_000
_spans_seen: dict[str, Spans] = {}
_spans_chars = 0


def _cached_spans(text: str) -> Spans:
    global _spans_chars
    found = _spans_seen.get(text)
    if found is None:
        found = _load_spans(text)
        assert found is not None
        if _spans_chars + len(text) > _SPANS_BUDGET:
            _spans_seen.clear()  # under the GIL; a racing reader parses again
            _spans_chars = 0
        _spans_seen[text] = found
        _spans_chars += len(text)
    return found


def _index_entries(component: str, start: bool, end: bool, spans: bool = False) -> Any:
    """Store.index_entries's statement: heads (resource's columns first, for _head) and
    their index rows, for a query with or without a component and either bound. With
    ``spans``, Store.index_spans's: path, ETag and the envelope only."""
    if spans:
        select = (sa.select(item_index.c.path, resource.c.etag, item_index.c.start,
                            item_index.c.end, item_index.c.recurring, item_index.c.instances)
                  .join(resource, resource.c.path == item_index.c.path))
    else:
        select = (sa.select(resource, item_index.c.component, item_index.c.uid,
                            item_index.c.start, item_index.c.end, item_index.c.recurring,
                            item_index.c.instances)
                  .join(item_index, item_index.c.path == resource.c.path))
    found = _lookup(select, component, start, end)
    if not end:
        return found.order_by(select.selected_columns[0])
    return found.order_by(sa.literal_column("1"))  # the path: a compound orders by position


# Store.heads's rows: path, kind, blob hash, size, ETag, content type, properties (the
# stored JSON text, for core.model.load_props), creation and modification times.
HeadRow = tuple[str, str, str | None, int, str, str | None, str, float, float]
# Store.changes_since's rows: the changed member's path and the seq of its last change,
# then its head's kind, size, ETag, content type, properties, creation and modification
# times (all None: deleted).
ChangedRow = tuple[str, int, str | None, int | None, str | None, str | None,
                   dict[str, str] | None, float | None, float | None]
# Store.index_spans's rows: path, ETag, envelope start and end, recurring, instances.
IndexRow = tuple[str, str, float | None, float | None, bool, Spans | None]


def _index_query(collection: str, component: str | None, start: float | None,
                 end: float | None, limit: int | None, spans: bool
                 ) -> tuple[fastsql.Statement, dict[str, Any]]:
    """The statement of Store.index_entries (or, with ``spans``, Store.index_spans) for
    this shape of query, built once, and its parameters."""
    shape = (_component_shape(component), start is not None, end is not None,
             limit is not None, spans)
    stmt = _INDEX_ENTRIES.get(shape)
    if stmt is None:
        select = _index_entries(*shape[:3], spans=spans)
        if limit is not None:
            # An explicit offset: SQLite's compiler adds one, unnamed, to a LIMIT.
            select = select.limit(sa.bindparam("k_limit")).offset(sa.bindparam("k_offset"))
        stmt = _INDEX_ENTRIES[shape] = fastsql.Statement(select)
    params = {k: v for k, v in (("k_collection", collection), ("k_component", component),
                                ("k_start", start), ("k_end", end), ("k_limit", limit),
                                ("k_offset", None if limit is None else 0))
              if v is not None and v != ""}
    return stmt, params


# Store.locks_under's statement by number of roots, with its parameters' names per root
_LOCKS_UNDER: dict[int, tuple[fastsql.Statement, list[tuple[str, str, str]]]] = {}


def _head(row: Sequence[Any]) -> Resource:
    """``_resource`` of a row that begins with ``resource``'s columns in table order
    (``select(resource, ...)``): positional access, several times faster per row than
    by name, which counts in a listing of 10,000 members."""
    (path, parent, owner_id, kind, version_id, blob_hash, size, etag, content_type, props, seq,
     created_at, modified_at) = cast("tuple[Any, ...]", row)[:13]
    return Resource(path, parent, owner_id, kind, version_id, blob_hash, size, etag, content_type,
                    {} if props == "{}" else load_props(props), seq, created_at, modified_at)


assert [c.name for c in resource.c] == [  # the order _head reads
    "path", "parent", "owner_id", "kind", "version_id", "blob_hash", "size", "etag",
    "content_type", "props", "seq", "created_at", "modified_at"]


def _resource(row: Row[Any]) -> Resource:
    return Resource(
        path=row.path, parent=row.parent, owner_id=row.owner_id, kind=row.kind,
        version_id=row.version_id, blob_hash=row.blob_hash, size=row.size, etag=row.etag,
        content_type=row.content_type, props={} if row.props == "{}" else load_props(row.props),
        seq=row.seq,
        created_at=row.created_at, modified_at=row.modified_at,
    )


GROUP_MAX = 64  # writes committed together at most (Store._write)
# The connection of the innermost Store.reading block, with its store.
_PINNED: ContextVar[tuple[Store, Connection] | None] = ContextVar("safehold_reading", default=None)


class _Job:
    """One caller's write function, waiting to run in a (shared) write transaction."""

    __slots__ = ("fn", "done", "result", "error")

    def __init__(self, fn: Callable[[Connection], Any]) -> None:
        self.fn = fn
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


def _translate(exc: BaseException) -> BaseException:
    """A database error of a write as the caller sees it; a failed fsync stops the
    process (fsyncgate: a retried fsync can report success with the data gone)."""
    if isinstance(exc, sa.exc.OperationalError):
        if isinstance(exc.orig, sqlite_dbapi.FsyncFailed):
            engine_mod.fatal_fsync(exc)
        # A full disk or an I/O error as its own StoreError (HTTP 507, 503: faults.py).
        err = (faults.kind(exc) or StoreError)(f"database write failed: {exc.orig}")
        err.__cause__ = exc
        return err
    return exc


class _WriteBlock:
    """The write transaction of a ``Store.writing_now`` block: its writes run in it.
    ``pairs``: the heads of an item and its parent that ``Store._get_pair`` read in this
    transaction since its last write, by the item's path; a PUT's checks read them (RFC
    4918 §7) and its write reused them instead of reading them again. Every write
    forgets them."""

    __slots__ = ("store", "conn", "failed", "pairs")

    def __init__(self, store: Store, conn: Connection) -> None:
        self.store = store
        self.conn = conn
        self.failed = False  # a write raised: the block must not commit
        self.pairs: dict[str, tuple[Resource | None, Resource | None]] = {}

    def run(self, fn: Callable[[Connection], T]) -> T:
        try:
            return fn(self.conn)
        except Exception as exc:
            self.failed = True
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        finally:
            self.pairs.clear()


_WRITING: ContextVar[_WriteBlock | None] = ContextVar("safehold_writing", default=None)


class _SqliteTransaction:
    """``Store._write_transaction`` on SQLite: BEGIN IMMEDIATE and COMMIT (or ROLLBACK)
    on the writer connection's driver, without SQLAlchemy's transaction machinery. A
    plain context manager, not a generator one: every PUT enters one, and two nested
    generator ones (with ``writing_now``, three) cost ~5 µs, as much as a statement.
    Errors of the BEGIN and the COMMIT come as SQLAlchemy's (``_translate``); a failed
    fsync stops the process before anything else touches the database."""

    __slots__ = ("store", "no_wait", "conn", "lite")

    def __init__(self, store: Store, no_wait: bool) -> None:
        self.store = store
        self.no_wait = no_wait

    def __enter__(self) -> Connection:
        self.conn, self.lite = self.store._begin_sqlite(self.no_wait)
        return self.conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        store = self.store
        if exc_type is not None:
            store._end_sqlite(self.conn, self.lite, commit=False)
            return  # the block's exception goes on
        store._end_sqlite(self.conn, self.lite, commit=True)
        checkpointer = store._checkpointer
        if not self.no_wait and checkpointer is not None and checkpointer.due:
            checkpointer.run(self.lite)  # still under the write lock, as SQLite's own would


class _WritingNow:
    """``Store.writing_now``'s block: a plain context manager, not a generator one,
    for the same reason as ``_SqliteTransaction`` (every small PUT enters one)."""

    __slots__ = ("store", "tx", "block", "writing", "pinned")

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> None:
        store = self.store
        if store._pending or not store.write_lock.acquire(blocking=False):
            raise WriteBusy("the write lock is taken")
        try:
            self.tx = store._write_transaction(no_wait=True)
            conn = self.tx.__enter__()
        except sa.exc.SQLAlchemyError as exc:  # the BEGIN
            store.write_lock.release()
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        except BaseException:
            store.write_lock.release()
            raise
        block = self.block = _WriteBlock(store, conn)
        self.writing, self.pinned = _WRITING.set(block), _PINNED.set((store, conn))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _PINNED.reset(self.pinned)
        _WRITING.reset(self.writing)
        try:
            if exc is None and self.block.failed:
                failed = StoreError("internal error: the request went on after a failed "
                                    "write; nothing of it was stored")
                self.tx.__exit__(StoreError, failed, None)  # rolls back
                raise failed
            self.tx.__exit__(exc_type, exc, tb)  # commits, or rolls back
        except sa.exc.SQLAlchemyError as err:  # the commit (a failed fsync stops the process)
            translated = _translate(err)
            if translated is err:
                raise
            raise translated from err
        finally:
            self.store.write_lock.release()
        if isinstance(exc, sa.exc.SQLAlchemyError):  # the block's, rolled back
            translated = _translate(exc)
            if translated is not exc:
                raise translated from exc


class Store:
    """One store per database. Thread-safe; writes are serialized by ``write_lock``
    (SQLite has one writer anyway; the lock keeps waiting in Python, not in
    SQLITE_BUSY retries)."""

    def __init__(self, engine: Engine, tmp_dir: Path, clock: Callable[[], float] = time.time):
        self.engine = engine
        self.tmp_dir = tmp_dir
        self.clock = clock
        self.write_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: list[_Job] = []  # writes waiting for the write lock (group commit)
        self._no_wait = threading.local()
        self._writer: Connection | None = None  # SQLite: every write's (_sqlite_transaction)
        self._checkpointer = Checkpointer.of(engine)  # SQLite

    # -- plumbing --------------------------------------------------------------

    @contextlib.contextmanager
    def no_wait(self) -> Iterator[None]:
        """In this block (on this thread) a write runs only if the write lock is free
        and no writer is queued for it; otherwise it raises WriteBusy and writes
        nothing. For a caller that must never wait for another writer: the HTTP
        layer's event loop (http/app.py). The write is still committed and fsync'd
        before it returns."""
        self._no_wait.on = True
        try:
            yield
        finally:
            self._no_wait.on = False

    def _write_transaction(self, no_wait: bool) -> contextlib.AbstractContextManager[Connection]:
        """A write transaction (the caller holds ``write_lock``), committed when the
        block ends, rolled back if it raises. SQLite: BEGIN IMMEDIATE (with ``no_wait``,
        WriteBusy at once if another connection holds the database's lock). PostgreSQL:
        the transaction-scoped advisory lock (with ``no_wait``, WriteBusy if another
        process holds it)."""
        if engine_mod.is_sqlite(self.engine):
            return _SqliteTransaction(self, no_wait)
        return self._pg_transaction(no_wait)

    @contextlib.contextmanager
    def _pg_transaction(self, no_wait: bool) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            with conn.begin():
                if not no_wait:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
                elif not conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"),
                                      {"k": WRITE_LOCK_KEY}).scalar():
                    raise WriteBusy("another process holds the write lock")
                yield conn

    def _writer_conn(self) -> Connection:
        """SQLite: the one connection all of this store's writes use, one at a time
        (the caller holds ``write_lock``), kept checked out: a pool checkout, return and
        SQLAlchemy's begin and commit per write cost a tenth of a one-client PUT's
        server CPU (py-spy). Replaced after a failure that may have left it in a
        transaction; closed when the store goes."""
        conn = self._writer
        if conn is None or conn.closed or conn.invalidated:
            conn = self._writer = self.engine.connect()
            weakref.finalize(self, conn.close)
        return conn

    def _begin_sqlite(self, no_wait: bool) -> tuple[Connection, sqlite_dbapi.Connection]:
        """BEGIN IMMEDIATE on the writer connection's driver (``_SqliteTransaction``).
        Its errors come as SQLAlchemy's (``_translate``)."""
        checkpointer = self._checkpointer
        if no_wait and checkpointer is not None and checkpointer.due:
            # The event loop never checkpoints (store/checkpoint.py): this write goes
            # to a worker thread, which checkpoints after its commit.
            raise WriteBusy("a WAL checkpoint is due")
        conn = self._writer_conn()
        lite = conn.connection.dbapi_connection
        assert isinstance(lite, sqlite_dbapi.Connection)
        try:
            lite.begin_immediate(wait=not no_wait)
        except sqlite_dbapi.Busy as exc:
            if no_wait:
                raise WriteBusy("the database is locked by another connection") from exc
            raise sa.exc.DBAPIError.instance("BEGIN IMMEDIATE", (), exc, sqlite_dbapi.Error) from exc
        except sqlite_dbapi.Error as exc:  # e.g. left in a transaction: the next write gets a new one
            self._writer = None
            conn.invalidate()
            raise sa.exc.DBAPIError.instance("BEGIN IMMEDIATE", (), exc, sqlite_dbapi.Error) from exc
        return conn, lite

    def _end_sqlite(self, conn: Connection, lite: sqlite_dbapi.Connection, *, commit: bool) -> None:
        """COMMIT or ROLLBACK the writer's transaction; a statement run through
        SQLAlchemy began SQLAlchemy's side of it too, which then ends both. If that
        fails, the connection is dropped (closing it rolls back whatever is left)."""
        try:
            ends = (conn.commit, conn.rollback) if conn.in_transaction() else (lite.commit, lite.rollback)
            ends[0 if commit else 1]()
        except (sqlite_dbapi.Error, sa.exc.DBAPIError) as exc:
            orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
            if isinstance(orig, sqlite_dbapi.FsyncFailed):
                engine_mod.fatal_fsync(orig)  # fsyncgate: nothing more on this database
            self._writer = None
            conn.invalidate()
            if isinstance(exc, sa.exc.DBAPIError):
                raise
            raise sa.exc.DBAPIError.instance("COMMIT" if commit else "ROLLBACK", (), exc,
                                             sqlite_dbapi.Error) from exc

    def writing_now(self) -> contextlib.AbstractContextManager[None]:
        """One write transaction for the whole block, taken only if the write lock is
        free and no writer is queued for it (else WriteBusy, and nothing was read or
        written): every read of this store in the block (on this thread or task) and
        every write run in it, and it commits (fsync'd) when the block ends, or rolls
        back if the block raises. For the HTTP layer's event loop (http/app.py): a small
        PUT reads its item, parent and locks (RFC 4918 §7) and writes in one
        transaction instead of a read one and a write one, and its checks see exactly
        the state its write replaces. A write that fails inside the block fails the
        block: it is rolled back even if the caller went on."""
        return _WritingNow(self)

    def _write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in a write transaction. SQLite: BEGIN IMMEDIATE. PostgreSQL: a
        transaction-scoped advisory lock, so that writers in every process are
        serialized and commit in ``seq`` order (a sync token never skips a change
        that commits later with a lower seq).

        Group commit: writers that queue while another one holds the write lock are run
        by the holder, in its transaction, each in a savepoint of its own (one that
        fails is rolled back alone and gets its own error; the others go on), then
        committed together with one fsync. Every caller returns only after the commit
        that holds its write (promise 1). Under contention the lock is held for
        waits (the fsync, the GIL, the CPU) more than for work: with 8 writers a
        transaction held it 6-11 ms of which ~1 ms was work (docs/benchmarks.md). A
        writer alone runs without a savepoint, as before."""
        block = _WRITING.get()
        if block is not None and block.store is self:
            return block.run(fn)  # in the block's transaction (writing_now)
        job = _Job(fn)
        if getattr(self._no_wait, "on", False):
            # Queued writers go first (they would starve behind a caller that never
            # queues); the caller retries where it may wait, and joins their group.
            if self._pending or not self.write_lock.acquire(blocking=False):
                raise WriteBusy("the write lock is taken")
            try:
                self._run_batch([job], no_wait=True)
            finally:
                self.write_lock.release()
            if job.error is not None:
                raise job.error
            return cast(T, job.result)
        with self._pending_lock:
            self._pending.append(job)
        with self.write_lock:
            while not job.done:  # still queued: nobody ran it, so it is in _pending
                with self._pending_lock:
                    batch = self._pending[:GROUP_MAX]
                    del self._pending[:GROUP_MAX]
                if not batch:
                    raise StoreError("internal error: a queued write was lost")
                self._run_batch(batch)
        if job.error is not None:
            raise job.error
        return cast(T, job.result)

    def _run_batch(self, batch: list[_Job], *, no_wait: bool = False) -> None:
        """Run ``batch`` in one transaction under the write lock; set each job's
        result or error (all of them an error if the commit fails). ``no_wait``: if
        another process holds the database's write lock (`safehold import`, the CLI),
        fail at once with WriteBusy instead of waiting for it."""
        failure: BaseException | None = None
        try:
            with self._write_transaction(no_wait=no_wait) as conn:
                if len(batch) == 1:
                    batch[0].result = batch[0].fn(conn)
                else:
                    for job in batch:
                        fastsql.raw(conn, "SAVEPOINT safehold_write")
                        try:
                            job.result = job.fn(conn)
                        except Exception as exc:  # noqa: BLE001 - delivered to its caller
                            fastsql.raw(conn, "ROLLBACK TO SAVEPOINT safehold_write")
                            job.error = _translate(exc)
                        fastsql.raw(conn, "RELEASE SAVEPOINT safehold_write")
        except Exception as exc:  # noqa: BLE001 - nothing of the batch committed
            failure = _translate(exc)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            for job in batch:
                if failure is not None and job.error is None:
                    job.error, job.result = failure, None
                job.done = True

    @contextlib.contextmanager
    def reading(self, kept: Connection | None = None) -> Iterator[None]:
        """Every read of this store in the block (on this thread or task) runs in one
        read transaction, one snapshot (REPEATABLE READ on PostgreSQL): a request that
        reads a head, then a body, then a listing checks out one connection and begins
        and ends one transaction instead of one per read (a GET paid for two). Only for
        blocks that write nothing: a write commits on its own connection, and reads
        after it here would not see it. Nested blocks join the outer one. ``kept``: a
        connection of this engine the caller keeps checked out between blocks, used
        by one block at a time (the HTTP layer's reads on its event loop): the pool's
        checkout and return cost as much as the two statements of a GET."""
        pinned = _PINNED.get()
        if pinned is not None and pinned[0] is self:
            yield
            return
        lite = None if kept is None else kept.connection.dbapi_connection
        if isinstance(lite, sqlite_dbapi.Connection) and kept is not None \
                and not kept.in_transaction():
            # SQLite begins the read transaction at the block's first statement
            # (sqlite_dbapi) and it ends here, without SQLAlchemy's begin and commit (a
            # tenth of a GET's CPU): a read transaction has nothing to commit.
            token = _PINNED.set((self, kept))
            try:
                yield
            finally:
                _PINNED.reset(token)
                if kept.in_transaction():
                    kept.rollback()  # a statement run through SQLAlchemy began one
                else:
                    lite.rollback()
            return
        with contextlib.nullcontext(kept) if kept is not None else self.engine.connect() as conn:
            with conn.begin():
                if conn.dialect.name != "sqlite":
                    conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                token = _PINNED.set((self, conn))
                try:
                    yield
                finally:
                    _PINNED.reset(token)

    def _pinned(self) -> Connection | None:
        pinned = _PINNED.get()
        return pinned[1] if pinned is not None and pinned[0] is self else None

    def _read(self, fn: Callable[[Connection], T]) -> T:
        conn = self._pinned()
        if conn is not None:
            return fn(conn)
        with self.engine.connect() as conn:
            with conn.begin():
                return fn(conn)

    def _snapshot(self, fn: Callable[[Connection], T]) -> T:
        """A read whose statements must all see one state of the database. A SQLite
        read transaction is one snapshot already; PostgreSQL's READ COMMITTED takes a
        new one per statement, so this asks for REPEATABLE READ (read only: it never
        fails with a serialization error)."""
        pinned = self._pinned()
        if pinned is not None:
            return fn(pinned)  # Store.reading's transaction is one snapshot already
        with self.engine.connect() as conn:
            with conn.begin():
                if conn.dialect.name != "sqlite":
                    conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return fn(conn)

    def _append_change(self, conn: Connection, op: str, owner_id: int | None, path: str,
                       actor: Actor) -> int:
        (seq,), = fastsql.rows(conn, _INSERT_CHANGE, dict(
            at=self.clock(), op=op, owner_id=owner_id, path=path, actor_id=actor.principal_id,
            user_agent=(actor.user_agent or "")[:512] or None, request_id=actor.request_id,
        ))
        return int(seq)

    def _write_version(self, conn: Connection, seq: int, op: str, *, path: str, owner_id: int,
                       kind: str, blob_hash: str | None, size: int, content_type: str | None,
                       props: dict[str, str], created_at: float | None = None,
                       head_exists: bool | None = None) -> Resource:
        """``head_exists``: whether ``path`` has a head row now (None: not known)."""
        now = self.clock()
        etag = _etag(seq, kind, blob_hash)
        parent = parent_of(path)
        props_text = dump_props(props) if props else "{}"  # json.dumps costs 5 µs, even of {}
        (vid,), = fastsql.rows(conn, _INSERT_VERSION, dict(
            seq=seq, owner_id=owner_id, path=path, parent=parent, kind=kind, op=op,
            deleted=False, blob_hash=blob_hash, size=size, etag=etag,
            content_type=content_type, props=props_text, created_at=now,
        ))
        vid = int(vid)
        head = dict(path=path, parent=parent, owner_id=owner_id, kind=kind, version_id=vid,
                    blob_hash=blob_hash, size=size, etag=etag, content_type=content_type,
                    props=props_text, seq=seq, modified_at=now)
        if head_exists is False or (head_exists is None and fastsql.execute(
                conn, _UPDATE_HEAD, dict(k_path=path, **head)) == 0):
            fastsql.execute(conn, _INSERT_HEAD, dict(created_at=created_at or now, **head))
        elif head_exists:
            fastsql.execute(conn, _UPDATE_HEAD, dict(k_path=path, **head))
        return Resource(path=path, parent=parent, owner_id=owner_id, kind=kind, version_id=vid,
                        blob_hash=blob_hash, size=size, etag=etag, content_type=content_type,
                        props=props, seq=seq, created_at=created_at or now, modified_at=now)

    def _tombstone_tree(self, conn: Connection, seq: int, op: str, path: str) -> int:
        """Write a tombstone for ``path`` and everything below it; drop their heads."""
        rows = conn.execute(sa.select(resource).where(_subtree(resource.c.path, path))).all()
        now = self.clock()
        if rows:
            conn.execute(sa.insert(version), [dict(
                seq=seq, owner_id=r.owner_id, path=r.path, parent=r.parent, kind=r.kind, op=op,
                deleted=True, blob_hash=None, size=0, etag="", content_type=None,
                props="{}", created_at=now) for r in rows])
            conn.execute(sa.delete(resource).where(_subtree(resource.c.path, path)))
            conn.execute(sa.delete(lock).where(_subtree(lock.c.path, path)))
            conn.execute(sa.delete(item_index).where(_subtree(item_index.c.path, path)))
        return len(rows)

    def _get(self, conn: Connection, path: str) -> Resource | None:
        row = conn.execute(_HEAD, {"k_path": path}).first()
        return _head(row) if row else None

    def _get_pair(self, conn: Connection, path: str) -> tuple[Resource | None, Resource | None]:
        """``path`` and its parent, in one statement; in a ``writing_now`` block, read
        once between two writes (``_WriteBlock.pairs``)."""
        block = _WRITING.get()
        if block is not None and block.conn is conn:
            pair = block.pairs.get(path)
            if pair is None:
                pair = block.pairs[path] = self._read_pair(conn, path)
            return pair
        return self._read_pair(conn, path)

    def _read_pair(self, conn: Connection, path: str) -> tuple[Resource | None, Resource | None]:
        parent = parent_of(path)
        found = {r[0]: _head(r) for r in fastsql.rows(
            conn, _F_HEAD_PAIR, {"k_path": path, "k_parent": parent})}
        return found.get(path), found.get(parent)

    def _need_parent(self, conn: Connection, path: str) -> Resource:
        parent = self._get(conn, parent_of(path))
        if parent is None or not parent.is_collection:
            raise Conflict(f"the parent collection of {path!r} does not exist")
        return parent

    def _check_uid(self, conn: Connection, collection: str, uid: str, path: str,
                   ignore: tuple[str, ...] = ()) -> None:
        found = [r[0] for r in fastsql.rows(conn, _SAME_UID, dict(
            k_collection=collection, k_uid=uid, k_path=path))]
        other = [o for o in found if not any(o == i or o.startswith(i + "/") for i in ignore)]
        if other:
            raise UidConflict(f"UID {uid!r} is already used by {other[0]!r}", other[0], uid)

    def _write_index(self, conn: Connection, path: str, index: ItemIndex | None) -> None:
        if index is None:
            fastsql.execute(conn, _DELETE_INDEX, {"k_path": path})
        else:
            fastsql.execute(conn, _UPSERT_INDEX[conn.dialect.name], index_row(path, index))

    # -- reads -----------------------------------------------------------------

    def get(self, path: str) -> Resource | None:
        return self._read(lambda c: self._get(c, path))

    def get_pair(self, path: str) -> tuple[Resource | None, Resource | None]:
        """The heads of ``path`` and of its parent collection, read together."""
        return self._read(lambda c: self._get_pair(c, path))

    def get_with_body(self, path: str) -> tuple[Resource | None, bytes | None]:
        """The head of ``path`` and, if its body is one chunk of at most SMALL_BODY
        bytes, that body (else None: ``read_body``), from one statement."""
        def q(c: Connection) -> tuple[Resource | None, bytes | None]:
            found = fastsql.rows(c, _F_HEAD_BODY, {"k_path": path})
            if not found:
                return None, None
            data = found[0][13]
            return _head(found[0]), None if data is None else blobs.decompress(data)
        return self._read(q)

    def children(self, path: str) -> list[Resource]:
        return self._read(lambda c: [_head(r) for r in c.execute(_CHILDREN, {"k_path": path}).all()])

    def subtree(self, path: str) -> list[Resource]:
        return self._read(lambda c: [_head(r) for r in c.execute(
            sa.select(resource).where(_subtree(resource.c.path, path)).order_by(resource.c.path))])

    def read_body(self, res: Resource) -> Iterator[bytes]:
        if res.blob_hash is None:
            return iter(())
        return blobs.read(self.engine, res.blob_hash)

    def changes_for(self, path: str) -> list[dict[str, Any]]:
        """Every version of ``path`` with its change-log row, oldest first."""
        def q(c: Connection) -> list[dict[str, Any]]:
            rows = c.execute(sa.select(version, change.c.op.label("change_op"), change.c.at,
                                       change.c.user_agent, change.c.request_id,
                                       change.c.actor_id)
                             .join(change, change.c.seq == version.c.seq)
                             .where(version.c.path == path).order_by(version.c.seq)).all()
            return [dict(r._mapping) for r in rows]
        return self._read(q)

    def last_seq(self) -> int:
        return self._read(lambda c: int(fastsql.rows(c, _F_LAST_SEQ, {})[0][0] or 0))

    def change_count(self) -> int:
        return self._read(lambda c: int(c.execute(sa.select(sa.func.count()).select_from(change)).scalar() or 0))

    # -- writes ----------------------------------------------------------------

    def put(self, path: str, owner_id: int, body: Body | bytes, content_type: str | None,
            actor: Actor, *, if_match: str | None = None, if_none_match: bool = False,
            check: Callable[[Resource | None], None] | None = None,
            index: ItemIndex | None = None) -> tuple[Resource, bool]:
        """Create or replace an item. ``if_match``/``if_none_match`` are evaluated inside
        the write transaction so that two racing writers cannot both win. A body of one
        chunk is stored in the same transaction (one fsync'd commit per PUT); larger
        ones go first, in transactions of their own (bounded memory)."""
        small: bytes | None = None
        if isinstance(body, Body):
            if body.size <= blobs.CHUNK:
                with open(body.path, "rb") as fh:
                    small = fh.read()
            else:
                blobs.store(self.engine, body, self._write)

        def tx(conn: Connection) -> tuple[Resource, bool]:
            existing, parent = self._get_pair(conn, path)
            if check is not None:
                check(existing)
            if existing is not None and existing.is_collection:
                raise AlreadyExists(f"{path!r} is a collection")
            if if_none_match and existing is not None:
                raise PreconditionFailed("If-None-Match: * but the resource exists")
            if if_match is not None and (existing is None or
                                         (if_match != "*" and if_match != existing.etag)):
                raise PreconditionFailed("If-Match does not match the current ETag")
            if existing is None and (parent is None or not parent.is_collection):
                raise Conflict(f"the parent collection of {path!r} does not exist")
            if index is not None:
                self._check_uid(conn, parent_of(path), index.uid, path)
            if small is not None:
                blob_hash, size = blobs.store_bytes_in(conn, small), len(small)
            elif isinstance(body, Body):
                blob_hash, size = body.sha256, body.size
            else:
                blob_hash, size = blobs.store_bytes_in(conn, body), len(body)
            seq = self._append_change(conn, "put", owner_id, path, actor)
            res = self._write_version(
                conn, seq, "put", path=path, owner_id=owner_id, kind=ITEM, blob_hash=blob_hash,
                size=size, content_type=content_type,
                props=existing.props if existing else {},
                created_at=existing.created_at if existing else None,
                head_exists=existing is not None)
            self._write_index(conn, path, index)
            return res, existing is None
        return self._write(tx)

    def delete(self, path: str, actor: Actor, *, if_match: str | None = None,
               check: Callable[[Resource], None] | None = None) -> int:
        def tx(conn: Connection) -> int:
            existing = self._get(conn, path)
            if existing is None:
                raise NotFound(path)
            if if_match is not None and if_match != "*" and if_match != existing.etag:
                raise PreconditionFailed("If-Match does not match the current ETag")
            if check is not None:
                check(existing)
            seq = self._append_change(conn, "delete", existing.owner_id, path, actor)
            return self._tombstone_tree(conn, seq, "delete", path)
        return self._write(tx)

    def mkcol(self, path: str, owner_id: int, actor: Actor, props: dict[str, str] | None = None,
              *, root: bool = False, kind: str = COLLECTION) -> Resource:
        def tx(conn: Connection) -> Resource:
            if self._get(conn, path) is not None:
                raise AlreadyExists(f"{path!r} already exists")
            if not root:
                self._need_parent(conn, path)
            seq = self._append_change(conn, "mkcol", owner_id, path, actor)
            return self._write_version(conn, seq, "mkcol", path=path, owner_id=owner_id,
                                       kind=kind, blob_hash=None, size=0,
                                       content_type=None, props=props or {})
        return self._write(tx)

    def proppatch(self, path: str, set_props: dict[str, str], remove: list[str],
                  actor: Actor) -> Resource:
        def tx(conn: Connection) -> Resource:
            existing = self._get(conn, path)
            if existing is None:
                raise NotFound(path)
            props = dict(existing.props)
            for name in remove:
                props.pop(name, None)
            props.update(set_props)
            seq = self._append_change(conn, "proppatch", existing.owner_id, path, actor)
            return self._write_version(
                conn, seq, "proppatch", path=path, owner_id=existing.owner_id,
                kind=existing.kind, blob_hash=existing.blob_hash, size=existing.size,
                content_type=existing.content_type, props=props,
                created_at=existing.created_at)
        return self._write(tx)

    def copy_or_move(self, op: str, src: str, dst: str, actor: Actor, *, deep: bool = True,
                     overwrite: bool = True,
                     check: Callable[[Resource, Resource | None], None] | None = None,
                     accepts: Callable[[Resource, str], None] | None = None) -> bool:
        """COPY or MOVE ``src`` to ``dst`` in one change. Returns True if ``dst`` was
        created (False if it replaced something). ``accepts(parent, component)`` may
        refuse an indexed item (by raising) for the collection it would land in: the
        destination's PUT preconditions hold for COPY and MOVE (RFC 4791 §5.3.2.1)."""
        assert op in ("copy", "move")

        def tx(conn: Connection) -> bool:
            source = self._get(conn, src)
            if source is None:
                raise NotFound(src)
            target = self._get(conn, dst)
            if check is not None:
                check(source, target)
            if target is not None and not overwrite:
                raise PreconditionFailed(f"{dst!r} exists and Overwrite is F")
            if dst == src or dst.startswith(src + "/") and source.is_collection:
                raise Forbidden_(f"cannot {op} {src!r} into itself")
            dst_parent = self._need_parent(conn, dst)
            src_parent = self._get(conn, parent_of(src))
            if not source.is_collection and src_parent is not None \
                    and src_parent.kind != dst_parent.kind:
                raise Forbidden_(f"cannot {op} an item between a {src_parent.kind} and a "
                                 f"{dst_parent.kind}; GET it and PUT it instead")
            if source.is_collection and source.kind != COLLECTION and dst_parent.kind != COLLECTION:
                raise Forbidden_(f"a {source.kind} cannot be nested in a {dst_parent.kind}")
            indexes = {r.path: r for r in conn.execute(
                sa.select(item_index).where(_subtree(item_index.c.path, src)))}
            if not source.is_collection and src in indexes:
                if accepts is not None:
                    accepts(dst_parent, indexes[src].component)
                self._check_uid(conn, parent_of(dst), indexes[src].uid, dst,
                                ignore=(src,) if op == "move" else ())
            seq = self._append_change(conn, op, source.owner_id, src, actor)
            if target is not None:
                self._tombstone_tree(conn, seq, op, dst)
            rows = [source] if not (deep and source.is_collection) else [
                _resource(r) for r in conn.execute(
                    sa.select(resource).where(_subtree(resource.c.path, src))
                    .order_by(resource.c.path))]
            pending: list[tuple[str, ItemIndex]] = []
            for r in rows:
                new_path = dst + r.path[len(src):]
                self._write_version(conn, seq, op, path=new_path, owner_id=source.owner_id,
                                    kind=r.kind, blob_hash=r.blob_hash, size=r.size,
                                    content_type=r.content_type, props=r.props,
                                    created_at=r.created_at if op == "move" else None)
                ix = indexes.get(r.path)
                if ix is not None:
                    pending.append((new_path, ItemIndex(ix.component, ix.uid, ix.start, ix.end,
                                                        bool(ix.recurring),
                                                        _load_spans(ix.instances))))
            if op == "move":
                self._tombstone_tree(conn, seq, "move", src)
            for new_path, new_index in pending:
                self._write_index(conn, new_path, new_index)
            return target is None
        return self._write(tx)

    # -- collection sync and queries ---------------------------------------------

    def collection_seq(self, path: str) -> int:
        """The highest seq that touched the collection or a member (its sync token)."""
        return self._snapshot(lambda c: self._collection_seq(c, path))

    def _collection_seq(self, c: Connection, path: str) -> int:
        (members, own), = fastsql.rows(c, _F_COLLECTION_SEQ, {"k_path": path})
        return int(max(members or 0, own or 0))

    def changes_since(self, path: str, seq: int) -> list[ChangedRow]:
        """Members of collection ``path`` changed after ``seq``: each with its latest
        state (ChangedRow; kind None: deleted), ordered by seq (RFC 6578 §3.5: report
        only the final state). One statement, so one snapshot: the state reported for a
        member is the version its seq names, never a newer one that committed meanwhile
        (which the next sync would report again). Writers commit in seq order
        (``_write``), so the snapshot holds every change up to its highest seq and none
        missing below it."""
        def q(c: Connection) -> list[ChangedRow]:
            return [(path_, int(seq_), kind, size, etag, ctype,
                     None if props is None else {} if props == "{}" else load_props(props),
                     created, modified)
                    for path_, seq_, kind, size, etag, ctype, props, created, modified
                    in fastsql.rows(c, _F_CHANGES_SINCE, {"k_parent": path, "k_seq": seq})]
        return self._read(q)

    def sync_bound(self, path: str, seq: int, count: int) -> tuple[int, bool]:
        """The highest seq of all, and whether members of collection ``path`` changed
        more than ``count`` times after ``seq`` (``last_seq`` and ``changed_more_than``
        in one statement: a sync checks its token and its size together)."""
        def q(c: Connection) -> tuple[int, bool]:
            (last, beyond), = fastsql.rows(c, _F_SYNC_BOUND, {
                "k_parent": path, "k_seq": seq, "k_limit": 1, "k_offset": count})
            return int(last or 0), beyond is not None
        return self._read(q)

    def listing(self, path: str) -> tuple[int, list[Resource]]:
        """The collection's sync seq (see ``collection_seq``) and its members, read in
        one snapshot (RFC 6578 §3.2 initial sync): nothing listed is newer than the
        token, so nothing listed is reported again by the next sync."""
        def q(c: Connection) -> tuple[int, list[Resource]]:
            members = [_head(r) for r in c.execute(_CHILDREN, {"k_path": path}).all()]
            return self._collection_seq(c, path), members
        return self._snapshot(q)

    def index_rows_more_than(self, collection: str, count: int, component: str | None = None,
                             end: float | None = None) -> bool:
        """Whether collection ``collection`` has more than ``count`` index rows (of
        ``component``, starting before ``end`` or unbounded: those ``index_spans`` with
        these arguments reads)."""
        st = _index_rows(_component_shape(component), end is not None)
        params = {k: v for k, v in (("k_collection", collection), ("k_component", component),
                                    ("k_end", end), ("k_limit", 1), ("k_offset", count))
                  if v is not None and v != ""}
        return self._read(lambda c: bool(fastsql.rows(c, st, params)))

    def get_many(self, paths: list[str]) -> dict[str, Resource]:
        def q(c: Connection) -> dict[str, Resource]:
            out: dict[str, Resource] = {}
            for st, params in _GET_MANY.parts(paths):
                for r in fastsql.rows(c, st, params):
                    res = _head(r)
                    out[res.path] = res
            return out
        return self._read(q)

    def heads(self, paths: list[str]) -> list[HeadRow]:
        """``get_many`` as the driver's rows (HeadRow), in no particular order: a
        multiget of 100 spent as long building the Resources as SQLite spent finding
        them. The caller decodes ``props`` as it builds its own object per row (one
        tuple per member, not two)."""
        def q(c: Connection) -> list[HeadRow]:
            out: list[HeadRow] = []
            for st, params in _HEADS.parts(paths):
                out += fastsql.rows(c, st, params)
            return out
        return self._read(q)

    def index_candidates(self, collection: str, component: str | None,
                         start: float | None, end: float | None) -> list[Resource]:
        """Members whose indexed time envelope may overlap [start, end)."""
        return [res for res, _ in self.index_entries(collection, component, start, end)]

    def index_entries(self, collection: str, component: str | None, start: float | None,
                      end: float | None, limit: int | None = None) -> list[tuple[Resource, ItemIndex]]:
        """``index_candidates`` with each member's index row (its envelope decides
        many time-range matches without parsing, see core.formats.ical.CalendarInfo);
        at most ``limit`` of them (the first by path) if given."""
        stmt, params = _index_query(collection, component, start, end, limit, False)

        def q(c: Connection) -> list[tuple[Resource, ItemIndex]]:
            return [(_head(r), ItemIndex(r[13], r[14], r[15], r[16], bool(r[17]), _load_spans(r[18])))
                    for r in fastsql.rows(c, stmt, params)]
        return self._read(q)

    def index_spans(self, collection: str, component: str | None, start: float | None,
                    end: float | None, limit: int | None = None) -> list[IndexRow]:
        """``index_entries`` without the heads: each candidate's path, ETag and envelope
        (start, end, recurring, instances), which decide most time-range queries and
        find their responses in the caches; heads are read only for what they do not
        decide (Store.get_many). A calendar-query at 1,000 events spent half its time
        building heads, most of them for members whose response was cached."""
        stmt, params = _index_query(collection, component, start, end, limit, True)
        return self._read(lambda c: [
            (r[0], r[1], r[2], r[3], bool(r[4]), None if r[5] is None else _cached_spans(r[5]))
            for r in fastsql.rows(c, stmt, params)])

    def read_bytes(self, res: Resource) -> bytes:
        return b"".join(self.read_body(res))

    def read_small(self, hashes: list[str]) -> dict[str, bytes]:
        """The bodies of those blobs that are one chunk, by hash, in this thread's read
        transaction if it has one (``reading``); larger ones are left to ``read_body``."""
        return self._read(lambda c: blobs.read_small_in(c, hashes))

    # -- locks (RFC 4918 §6, §9.10): not user data, so not versioned ------------

    def locks_for(self, path: str, *, ancestors: bool = True, descendants: bool = False) -> list[Lock]:
        now = self.clock()
        conds = [lock.c.path == path]
        if ancestors:
            parts = path.split("/")
            anc = ["/".join(parts[:i]) for i in range(1, len(parts))]
            if anc:
                conds.append(sa.and_(lock.c.path.in_(anc), lock.c.depth == "infinity"))
        if descendants:
            conds.append(sa.and_(lock.c.path >= path + "/", lock.c.path < path + "0"))

        def q(c: Connection) -> list[Lock]:
            rows = c.execute(sa.select(lock).where(sa.or_(*conds)).where(lock.c.expires_at > now)).all()
            return [Lock(token=r.token, path=r.path, depth=r.depth, scope=r.scope,
                         owner_xml=r.owner_xml, principal_id=r.principal_id, timeout=r.timeout,
                         expires_at=r.expires_at) for r in rows]
        return self._read(q)

    def _locks_under(self, c: Connection, roots: list[str]) -> list[Lock]:
        now = self.clock()
        found = _LOCKS_UNDER.get(len(roots))
        if found is None:
            # Every request that may write asks this (RFC 4918 §7): run on the driver's
            # cursor (store/fastsql.py), in Lock's field order.
            names = [(f"k_root{i}", f"k_low{i}", f"k_high{i}") for i in range(len(roots))]
            found = _LOCKS_UNDER[len(roots)] = (fastsql.Statement(sa.select(
                lock.c.token, lock.c.path, lock.c.depth, lock.c.scope, lock.c.owner_xml,
                lock.c.principal_id, lock.c.timeout, lock.c.expires_at).where(sa.or_(*[
                    (lock.c.path == sa.bindparam(k_root))
                    | ((lock.c.path >= sa.bindparam(k_low)) & (lock.c.path < sa.bindparam(k_high)))
                    for k_root, k_low, k_high in names])).where(lock.c.expires_at > sa.bindparam("k_now"))),
                names)
        stmt, names = found
        params: dict[str, Any] = {"k_now": now}
        for (k_root, k_low, k_high), root in zip(names, roots, strict=True):
            params[k_root], params[k_low], params[k_high] = root, root + "/", root + "0"
        return [Lock(*r) for r in fastsql.rows(c, stmt, params)]

    def locks_under(self, roots: list[str]) -> list[Lock]:
        """Every unexpired lock on the trees ``roots`` (a request's user's homes): one
        query, from which ``locks_for`` answers for any path below them."""
        return self._read(lambda c: self._locks_under(c, roots)) if roots else []

    def get_pair_and_locks(self, path: str, roots: list[str]
                           ) -> tuple[Resource | None, Resource | None, list[Lock]]:
        """``get_pair`` and ``locks_under`` in one read: what a write request checks
        before it writes (RFC 4918 §7), for one connection checkout instead of two."""
        def q(c: Connection) -> tuple[Resource | None, Resource | None, list[Lock]]:
            head, parent = self._get_pair(c, path)
            return head, parent, self._locks_under(c, roots) if roots else []
        return self._read(q)

    def add_lock(self, path: str, depth: str, scope: str, owner_xml: str | None,
                 principal_id: int, timeout: int,
                 check: Callable[[], None] | None = None) -> Lock:
        token = f"urn:uuid:{uuid.uuid4()}"
        expires = self.clock() + timeout

        def tx(conn: Connection) -> Lock:
            if check is not None:
                check()
            conn.execute(sa.delete(lock).where(lock.c.expires_at <= self.clock()))
            conn.execute(sa.insert(lock).values(token=token, path=path, depth=depth, scope=scope,
                                                owner_xml=owner_xml, principal_id=principal_id,
                                                timeout=timeout, expires_at=expires))
            return Lock(token, path, depth, scope, owner_xml, principal_id, timeout, expires)
        return self._write(tx)

    def refresh_lock(self, token: str, timeout: int) -> Lock | None:
        def tx(conn: Connection) -> Lock | None:
            row = conn.execute(sa.select(lock).where(lock.c.token == token)
                               .where(lock.c.expires_at > self.clock())).first()
            if row is None:
                return None
            expires = self.clock() + timeout
            conn.execute(sa.update(lock).where(lock.c.token == token)
                         .values(timeout=timeout, expires_at=expires))
            return Lock(row.token, row.path, row.depth, row.scope, row.owner_xml,
                        row.principal_id, timeout, expires)
        return self._write(tx)

    def remove_lock(self, token: str) -> bool:
        return self._write(lambda c: c.execute(sa.delete(lock).where(lock.c.token == token)).rowcount > 0)

    # -- principals -------------------------------------------------------------

    def add_principal(self, name: str, secret_hash: str, actor: Actor,
                      homes: tuple[str, ...]) -> Principal:
        def tx(conn: Connection) -> Principal:
            if conn.execute(sa.select(principal.c.id).where(principal.c.name == name)).first():
                raise UserExists(f"user {name!r} already exists")
            now = self.clock()
            pid = int(conn.execute(sa.insert(principal).values(
                name=name, disabled=False, created_at=now)).inserted_primary_key[0])  # type: ignore[index]
            conn.execute(sa.insert(credential).values(principal_id=pid, kind="password",
                                                      secret_hash=secret_hash, created_at=now))
            for home in homes:
                path = f"{home}/{name}"
                if self._get(conn, path) is None:
                    seq = self._append_change(conn, "mkcol", pid, path, actor)
                    self._write_version(conn, seq, "mkcol", path=path, owner_id=pid,
                                        kind=COLLECTION, blob_hash=None, size=0,
                                        content_type=None, props={})
            return Principal(pid, name, False, now)
        return self._write(tx)

    def principal(self, name: str) -> Principal | None:
        row = self._read(lambda c: c.execute(sa.select(principal).where(principal.c.name == name)).first())
        return Principal(row.id, row.name, bool(row.disabled), row.created_at) if row else None

    def principals(self) -> list[Principal]:
        rows = self._read(lambda c: c.execute(sa.select(principal).order_by(principal.c.name)).all())
        return [Principal(r.id, r.name, bool(r.disabled), r.created_at) for r in rows]

    def password_hash(self, principal_id: int) -> str | None:
        return self._read(lambda c: c.execute(
            sa.select(credential.c.secret_hash)
            .where(credential.c.principal_id == principal_id)
            .where(credential.c.kind == "password").where(credential.c.revoked_at.is_(None))
            .order_by(credential.c.id.desc())).scalar())

    def set_password(self, name: str, secret_hash: str) -> None:
        def tx(conn: Connection) -> None:
            pid = conn.execute(sa.select(principal.c.id).where(principal.c.name == name)).scalar()
            if pid is None:
                raise UnknownUser(f"no user named {name!r}")
            now = self.clock()
            conn.execute(sa.update(credential).where(credential.c.principal_id == pid)
                         .where(credential.c.kind == "password")
                         .where(credential.c.revoked_at.is_(None)).values(revoked_at=now))
            conn.execute(sa.insert(credential).values(principal_id=pid, kind="password",
                                                      secret_hash=secret_hash, created_at=now))
        self._write(tx)

    def set_disabled(self, name: str, disabled: bool) -> None:
        def tx(conn: Connection) -> None:
            n = conn.execute(sa.update(principal).where(principal.c.name == name)
                             .values(disabled=disabled)).rowcount
            if n == 0:
                raise UnknownUser(f"no user named {name!r}")
        self._write(tx)

    # -- meta ---------------------------------------------------------------------

    def lineage(self) -> str:
        def tx(conn: Connection) -> str:
            value = conn.execute(sa.select(meta.c.value).where(meta.c.key == "lineage")).scalar()
            if value is None:
                value = secrets.token_hex(8)
                conn.execute(sa.insert(meta).values(key="lineage", value=value))
            return str(value)
        return self._write(tx)

    @contextlib.contextmanager
    def shipping_turn(self) -> Iterator[bool]:
        """The turn to ship the change log (DESIGN "Scale-out"): exactly one process
        ships at a time — a PostgreSQL session advisory lock, or an exclusive file lock
        beside the SQLite database. Taken per pass, so when the shipping process dies
        another takes over at its next pass. Yields False if another process has it."""
        if self.engine.dialect.name == "sqlite":
            import fcntl
            with open(self.tmp_dir.parent / "shipper.lock", "a+") as fh:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    yield False
                    return
                try:
                    yield True
                finally:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return
        with self.engine.connect() as conn:
            got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"),
                                    {"k": SHIPPER_LOCK_KEY}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": SHIPPER_LOCK_KEY})
                    conn.commit()

    def writable(self) -> bool:
        """Take the write lock and roll back: the store is open and writable."""
        with self.write_lock:
            with self.engine.connect() as conn:
                dbapi = conn.connection.dbapi_connection
                if isinstance(dbapi, sqlite_dbapi.Connection):
                    dbapi.apsw.execute("BEGIN IMMEDIATE")
                    dbapi.apsw.execute("ROLLBACK")
                elif conn.exec_driver_sql("SELECT pg_is_in_recovery()").scalar():
                    raise StoreError("the PostgreSQL server is a read-only standby")
        return True

    def put_new_many(self, owner_id: int, items: list[NewItem],
                     actor: Actor) -> list[DomainError | None]:
        """Create several small items in one write transaction (a bulk import): each
        with If-None-Match semantics, its own change-log row and version, exactly as
        :meth:`put` would. An item that cannot go in (it exists, its parent is missing,
        its UID is taken) gets its error in the returned list and writes nothing;
        the others are committed. Every check runs before that item's first write, so no
        savepoint is needed. The caller keeps batches small: the write lock is held for
        the whole batch, and other writers (SQLite has one) wait for it."""
        def tx(conn: Connection) -> list[DomainError | None]:
            out: list[DomainError | None] = []
            parents: dict[str, Resource | None] = {}
            for it in items:
                try:
                    if self._get(conn, it.path) is not None:
                        raise PreconditionFailed("If-None-Match: * but the resource exists")
                    parent_path = parent_of(it.path)
                    if parent_path not in parents:
                        parents[parent_path] = self._get(conn, parent_path)
                    found = parents[parent_path]
                    if found is None or not found.is_collection:
                        raise Conflict(f"the parent collection of {it.path!r} does not exist")
                    if it.index is not None:
                        self._check_uid(conn, parent_path, it.index.uid, it.path)
                except DomainError as exc:
                    out.append(exc)
                    continue
                blob_hash = blobs.store_bytes_in(conn, it.data)
                seq = self._append_change(conn, "put", owner_id, it.path, actor)
                self._write_version(conn, seq, "put", path=it.path, owner_id=owner_id, kind=ITEM,
                                    blob_hash=blob_hash, size=len(it.data),
                                    content_type=it.content_type, props={}, head_exists=False)
                self._write_index(conn, it.path, it.index)
                out.append(None)
            return out
        return self._write(tx)


class Forbidden_(PreconditionFailed):
    """Copy/move into itself (RFC 4918 §9.8.5: 403)."""
    status = 403
