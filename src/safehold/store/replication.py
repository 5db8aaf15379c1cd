"""The store side of replication: reading change-log ranges, snapshots and blobs
out, and loading them into an empty database on restore."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import sqlalchemy as sa
import zstandard
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection

from safehold.errors import StoreUnavailable
from safehold.store import blobs as blobs_mod
from safehold.store import fastsql
from safehold.store.repo import Store
from safehold.store.sla import CANARY_PREFIX
from safehold.store.schema import (
    blob, blob_chunk, change, credential, drill, meta, principal, pruned, replica_blob,
    replica_state, resource, version,
)

# The tables a replica carries. Heads (resource) and indexes are rebuilt on restore.
DUMPED = {"principal": principal, "credential": credential, "change": change, "version": version}


def _rows(c: Connection, stmt: Any) -> list[dict[str, Any]]:
    """Each row as a dict by column name, in column order: the same dicts as
    ``dict(row._mapping)`` in a third of the time (the shipper reads every change and
    version this way; per row it was most of the shipper's CPU, py-spy)."""
    result = c.execute(stmt)
    keys = list(result.keys())
    return [dict(zip(keys, r, strict=True)) for r in result]


def accounts_digest(principals: list[dict[str, Any]], credentials: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps([principals, credentials], sort_keys=True,
                                     default=str).encode()).hexdigest()


class _Query:
    """A statement the shipper runs on every pass, built once and run on the driver
    (store/fastsql.py), its rows as ``_rows`` gives them: dicts by column name, in
    column order, booleans as booleans (SQLite's driver gives 0 and 1). Building the
    statements anew and SQLAlchemy's execution and result machinery were most of a
    pass's fixed cost (~10 ms of CPU per pass, py-spy), which every PUT shares."""

    def __init__(self, stmt: Any, bools: tuple[str, ...] = ()) -> None:
        self.statement = fastsql.Statement(stmt)
        self.keys = tuple(c.name for c in stmt.selected_columns)
        self.bools = bools

    def dicts(self, c: Connection, params: dict[str, Any]) -> list[dict[str, Any]]:
        keys = self.keys
        out = [dict(zip(keys, r, strict=True)) for r in fastsql.rows(c, self.statement, params)]
        for name in self.bools:
            for d in out:
                d[name] = bool(d[name])
        return out


_CHANGES_AFTER = _Query(sa.select(change).where(change.c.seq > sa.bindparam("k_seq"))
                        .order_by(change.c.seq).limit(sa.bindparam("k_limit"))
                        .offset(sa.bindparam("k_offset")))  # SQLite's LIMIT has an OFFSET
_VERSIONS_IN = _Query(sa.select(version).where((version.c.seq > sa.bindparam("k_seq"))
                                               & (version.c.seq <= sa.bindparam("k_last")))
                      .order_by(version.c.id), bools=("deleted",))
_PRINCIPALS = _Query(sa.select(principal).order_by(principal.c.id), bools=("disabled",))
_CREDENTIALS = _Query(sa.select(credential).order_by(credential.c.id))
_REPLICA_ROW = _Query(sa.select(replica_state).where(replica_state.c.url == sa.bindparam("k_url")))
# A blob's row as segments carry it: without an inline body (revision 0009), which
# travels as the blob's chunk 0 like any other (``chunks``), so replicas keep one form.
_BLOB_ROW = (blob.c.hash, blob.c.size, blob.c.chunks, blob.c.codec)
_BLOBS_IN = fastsql.InList(lambda ps: sa.select(*_BLOB_ROW).where(blob.c.hash.in_(ps)), _Query)
_SHIPPED_IN = fastsql.InList(lambda ps: sa.select(replica_blob.c.hash).where(
    (replica_blob.c.url == sa.bindparam("k_url")) & replica_blob.c.hash.in_(ps)), _Query)


def changes_after(store: Store, seq: int, limit: int,
                  known_accounts: str | None = None) -> dict[str, Any]:
    """Up to ``limit`` changes after ``seq`` with their versions, plus the current
    principals and credentials (they are not in the change log) unless their digest
    is still ``known_accounts``; their digest is returned as "accounts_digest"."""
    def q(c: Connection) -> dict[str, Any]:
        changes = _CHANGES_AFTER.dicts(c, {"k_seq": seq, "k_limit": limit, "k_offset": 0})
        if not changes:
            return {"change": []}
        last = changes[-1]["seq"]
        principals = _PRINCIPALS.dicts(c, {})
        credentials = _CREDENTIALS.dicts(c, {})
        digest = accounts_digest(principals, credentials)
        out: dict[str, Any] = {
            "change": changes,
            "version": _VERSIONS_IN.dicts(c, {"k_seq": seq, "k_last": last}),
            "accounts_digest": digest}
        if digest != known_accounts:
            out["principal"], out["credential"] = principals, credentials
        return out
    return store._read(q)


def _versions_upto(upto: int) -> Any:
    return sa.select(version.c.id).where(version.c.seq <= upto)


def _snapshot_statements(upto: int) -> list[tuple[str, Any]]:
    """A snapshot's tables in the order it lists them, each with its statement."""
    return [("change", sa.select(change).where(change.c.seq <= upto).order_by(change.c.seq)),
            ("version", sa.select(version).where(version.c.seq <= upto).order_by(version.c.id)),
            ("principal", sa.select(principal)),
            ("credential", sa.select(credential)),
            # Versions whose content history retention dropped: their bodies are
            # gone, and a restore must not look for them.
            ("pruned", sa.select(pruned).where(pruned.c.version_id.in_(_versions_upto(upto))))]


def snapshot(store: Store, upto: int) -> dict[str, list[dict[str, Any]]]:
    return store._read(lambda c: {name: _rows(c, stmt) for name, stmt in _snapshot_statements(upto)})


SNAPSHOT_ROWS_AT_ONCE = 1000


def snapshot_json(store: Store, upto: int, out: BinaryIO) -> tuple[int, list[str]]:
    """``snapshot``'s tables written to ``out`` as ``json.dumps(snapshot(store, upto),
    separators=(",", ":"))`` would write them, a thousand rows at a time, in one read
    transaction: at 100,000 events the tables held as dicts were most of a snapshot
    child's 552 MiB. Returns the bytes written and the sorted hashes of the bodies that
    the unpruned versions reference (what the snapshot must carry)."""
    def q(c: Connection) -> tuple[int, list[str]]:
        statements = _snapshot_statements(upto)
        gone = set(c.execute(sa.select(pruned.c.version_id).where(
            pruned.c.version_id.in_(_versions_upto(upto)))).scalars())
        hashes: set[str] = set()
        written = 0

        def emit(text: str) -> None:
            nonlocal written
            data = text.encode()
            out.write(data)
            written += len(data)
        for i, (name, stmt) in enumerate(statements):
            emit(("," if i else "{") + json.dumps(name) + ":[")
            result = c.execute(stmt.execution_options(stream_results=True,
                                                      max_row_buffer=SNAPSHOT_ROWS_AT_ONCE))
            keys = list(result.keys())
            first = True
            while rows := result.fetchmany(SNAPSHOT_ROWS_AT_ONCE):
                dicts = [dict(zip(keys, r, strict=True)) for r in rows]
                if name == "version":
                    hashes.update(d["blob_hash"] for d in dicts
                                  if d["blob_hash"] and d["id"] not in gone)
                emit(("" if first else ",") + json.dumps(dicts, separators=(",", ":"))[1:-1])
                first = False
            emit("]")
        emit("}")
        return written, sorted(hashes)
    return store._read(q)


def blob_rows(store: Store, hashes: list[str]) -> list[dict[str, Any]]:
    def q(c: Connection) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for query, params in _BLOBS_IN.parts(hashes):
            out += query.dicts(c, params)
        return out
    return store._read(q) if hashes else []


def chunks(store: Store, sha256: str, count: int) -> Iterator[bytes]:
    """The stored (zstd-compressed) chunks of a blob, one query each (blobs.stored_chunk)."""
    for idx in range(count):
        yield store._read(lambda c, i=idx: blobs_mod.stored_chunk(c, sha256, i))  # type: ignore[misc]


def shipped_blobs(store: Store, url: str, hashes: list[str]) -> set[str]:
    def q(c: Connection) -> set[str]:
        out: set[str] = set()
        for query, params in _SHIPPED_IN.parts(hashes):
            params["k_url"] = url
            out |= {r[0] for r in fastsql.rows(c, query.statement, params)}
        return out
    return store._read(q) if hashes else set()


def mark_blobs(store: Store, url: str, hashes: list[str]) -> None:
    if hashes:
        store._write(lambda c: _mark_in(c, url, hashes))


# Rows already there are kept as they are: one statement, where a SELECT of the known
# hashes (an IN list compiled anew for each length) and the INSERT of the others were
# two thirds of the shipper's bookkeeping commit per pass, which holds the write lock.
_MARK = {"sqlite": sqlite_dialect.insert(replica_blob).on_conflict_do_nothing(),
         "postgresql": postgresql_dialect.insert(replica_blob).on_conflict_do_nothing()}


_F_MARK = {name: fastsql.Statement(stmt) for name, stmt in _MARK.items()}


def _mark_in(c: Connection, url: str, hashes: list[str]) -> None:
    if hashes:
        fastsql.execute_many(c, _F_MARK[c.dialect.name],
                             [{"url": url, "hash": h} for h in sorted(set(hashes))])


def _inline_key(url: str, snapshot_seq: int) -> str:
    """``replica_blob`` rows under this key: small bodies a restore from the snapshot
    at ``snapshot_seq`` onwards finds without another copy (backup/segment.py, the
    dedupe rule). Keyed by that snapshot, so a newer snapshot starts a new set."""
    return f"{url}#inline@{snapshot_seq}"


def inline_known(store: Store, url: str, snapshot_seq: int, hashes: list[str]) -> set[str]:
    return shipped_blobs(store, _inline_key(url, snapshot_seq), hashes)


def forget_inline(store: Store, url: str, keep: int | None) -> None:
    """Forget every inline set of ``url`` but the one of the snapshot at ``keep`` (None:
    all -- the replica was emptied or replaced, nothing is known). Always safe: a
    forgotten body is only carried again.

    In short transactions of at most ``_RESET_BATCH`` rows: a snapshot of 100,000 items
    carries as many bodies, and one transaction over all of them held the write lock
    for 20 s (other users' PUTs waited)."""
    kept = _inline_key(url, keep) if keep is not None else None
    prefix = replica_blob.c.url.startswith(f"{url}#inline@", autoescape=True)
    stale = prefix if kept is None else prefix & (replica_blob.c.url != kept)
    while True:
        rows = store._read(lambda c: c.execute(
            sa.select(replica_blob.c.url, replica_blob.c.hash).where(stale)
            .limit(_RESET_BATCH)).all())
        if not rows:
            break
        by_url: dict[str, list[str]] = {}
        for u, h in rows:
            by_url.setdefault(u, []).append(h)
        for u, hs in by_url.items():
            unmark_blobs(store, u, hs)


def mark_inline_set(store: Store, url: str, snapshot_seq: int, hashes: list[str]) -> None:
    """Record what the snapshot at ``snapshot_seq`` carries, in batches of
    ``_RESET_BATCH``. Written before the manifest names the snapshot: the shipper reads
    only the set of the newest snapshot the manifest names (a partial set only makes it
    carry a body again)."""
    key = _inline_key(url, snapshot_seq)
    unique = sorted(set(hashes))
    for i in range(0, len(unique), _RESET_BATCH):
        mark_blobs(store, key, unique[i:i + _RESET_BATCH])


_RESET_BATCH = 1000


def small_bodies(store: Store, hashes: list[str]) -> dict[str, bytes]:
    """The original bytes of single-chunk bodies (what segments carry inline)."""
    return store.read_small(hashes) if hashes else {}


def replica_blob_hashes(store: Store, url: str) -> list[str]:
    return store._read(lambda c: list(c.execute(
        sa.select(replica_blob.c.hash).where(replica_blob.c.url == url)).scalars()))


def unmark_blobs(store: Store, url: str, hashes: list[str]) -> None:
    """Forget that ``url`` holds these blobs (replica retention deleted them), so that
    a new version with the same bytes ships them again."""
    def tx(c: Connection) -> None:
        for i in range(0, len(hashes), 500):
            c.execute(sa.delete(replica_blob).where(replica_blob.c.url == url,
                                                    replica_blob.c.hash.in_(hashes[i:i + 500])))
    if hashes:
        store._write(tx)


def replica_row(store: Store, url: str) -> dict[str, Any] | None:
    rows = store._read(lambda c: _REPLICA_ROW.dicts(c, {"k_url": url}))
    return rows[0] if rows else None


def save_replica_row(store: Store, url: str, **values: Any) -> None:
    store._write(lambda c: _save_row_in(c, url, values))


_UPDATE_ROW = fastsql.Statement(sa.update(replica_state).where(
    replica_state.c.url == sa.bindparam("k_url")))
_INSERT_ROW = fastsql.Statement(sa.insert(replica_state))


def _save_row_in(c: Connection, url: str, values: dict[str, Any]) -> None:
    if fastsql.execute(c, _UPDATE_ROW, {"k_url": url, **values}) == 0:
        fastsql.execute(c, _INSERT_ROW, {"url": url, "shipped_seq": 0, "snapshot_seq": 0,
                                         **values})


def record_segment(store: Store, url: str, snapshot_seq: int, inline: list[str],
                   **values: Any) -> None:
    """After the manifest names a segment: the bodies it carried inline (``mark_blobs``)
    and the replica's row (``save_replica_row``), in one write transaction -- two cost
    two fsyncs and two turns of the write lock per segment, while users' PUTs waited."""
    def tx(c: Connection) -> None:
        if inline:
            _mark_in(c, _inline_key(url, snapshot_seq), inline)
        _save_row_in(c, url, values)
    store._write(tx)


def replica_rows(store: Store) -> list[dict[str, Any]]:
    return store._read(lambda c: _rows(c, sa.select(replica_state).order_by(replica_state.c.url)))


def record_drill(store: Store, **values: Any) -> None:
    store._write(lambda c: c.execute(sa.insert(drill).values(**values)))


def drills(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    return store._read(lambda c: _rows(c, sa.select(drill).order_by(drill.c.id.desc()).limit(limit)))


def get_meta(store: Store, key: str) -> str | None:
    return store._read(lambda c: c.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar())


def set_meta(store: Store, key: str, value: str) -> None:
    def tx(c: Connection) -> None:
        if c.execute(sa.update(meta).where(meta.c.key == key).values(value=value)).rowcount == 0:
            c.execute(sa.insert(meta).values(key=key, value=value))
    store._write(tx)


# -- loading (restore) ------------------------------------------------------------

def _insert_bodies(c: Connection, bodies: list[tuple[str, bytes]]) -> int:
    """Store bodies (original bytes) unless present; the caller checked each against
    its hash. Returns the bytes of the bodies stored."""
    have: set[str] = set()
    names = sorted({h for h, _ in bodies})
    for i in range(0, len(names), 500):
        have |= set(c.execute(sa.select(blob.c.hash).where(blob.c.hash.in_(names[i:i + 500])))
                    .scalars())
    comp = zstandard.ZstdCompressor(level=3)
    chunk_rows: list[dict[str, Any]] = []
    blob_rows_: list[dict[str, Any]] = []
    stored = 0
    for sha, data in bodies:
        if sha in have:
            continue
        have.add(sha)
        parts = [data[i:i + blobs_mod.CHUNK] for i in range(0, max(len(data), 1), blobs_mod.CHUNK)]
        chunk_rows += [{"hash": sha, "idx": i, "data": comp.compress(p)} for i, p in enumerate(parts)]
        blob_rows_.append({"hash": sha, "size": len(data), "chunks": len(parts),
                           "codec": blobs_mod.CODEC})
        stored += len(data)
    for i in range(0, len(chunk_rows), 1000):
        c.execute(sa.insert(blob_chunk), chunk_rows[i:i + 1000])
    for i in range(0, len(blob_rows_), 1000):
        c.execute(sa.insert(blob), blob_rows_[i:i + 1000])
    return stored


@dataclass
class LoadBound:
    """What the batches of one replica object are loaded against, read once before its
    first batch (``load_bound``) instead of by each: the last change loaded before
    the object (its changes and versions above it are new; rows at or below it came
    from an earlier object) and the pruned versions already recorded. ``last`` is the
    object's last change loaded so far: its versions up to it go in, so its change
    rows must be loaded before its version rows (a snapshot lists them first)."""
    after: int
    pruned: set[int]
    last: int = 0

    def __post_init__(self) -> None:
        self.last = max(self.last, self.after)


def load_bound(store: Store) -> LoadBound:
    return store._read(lambda c: _bound_in(c, True))


def _bound_in(c: Connection, with_pruned: bool) -> LoadBound:
    return LoadBound(int(c.execute(sa.select(sa.func.max(change.c.seq))).scalar() or 0),
                     set(c.execute(sa.select(pruned.c.version_id)).scalars()) if with_pruned
                     else set())


def load(store: Store, tables: dict[str, list[dict[str, Any]]], upto: int | None = None,
         bodies: list[tuple[str, bytes]] | None = None, bound: LoadBound | None = None) -> int:
    """Insert dumped rows (skipping any already present, so segments may overlap a
    snapshot) and ``bodies`` (sha256, original bytes) in one transaction. Returns the
    bytes of the bodies stored. ``bound``: this is one batch of an object whose other
    batches share it (and it is updated); without it, the call is a whole object."""
    def tx(c: Connection) -> int:
        stored = _insert_bodies(c, bodies) if bodies else 0
        if "principal" in tables:
            for row in tables["principal"]:
                if c.execute(sa.update(principal).where(principal.c.id == row["id"])
                             .values(**row)).rowcount == 0:
                    c.execute(sa.insert(principal).values(**row))
        if "credential" in tables:
            for row in tables["credential"]:
                if c.execute(sa.update(credential).where(credential.c.id == row["id"])
                             .values(**row)).rowcount == 0:
                    c.execute(sa.insert(credential).values(**row))
        if not (tables.get("pruned") or tables.get("change") or tables.get("version")):
            return stored
        b = bound or _bound_in(c, bool(tables.get("pruned")))
        new_pruned = [r for r in tables.get("pruned", []) if r["version_id"] not in b.pruned]
        if new_pruned:
            c.execute(sa.insert(pruned), new_pruned)
            b.pruned.update(r["version_id"] for r in new_pruned)
        new_changes = [r for r in tables.get("change", [])
                       if r["seq"] > b.after and (upto is None or r["seq"] <= upto)]
        if new_changes:
            c.execute(sa.insert(change), new_changes)
            b.last = max(b.last, new_changes[-1]["seq"])
        rows = [r for r in tables.get("version", []) if b.after < r["seq"] <= b.last]
        for i in range(0, len(rows), 1000):
            c.execute(sa.insert(version), rows[i:i + 1000])
        return stored
    return store._write(tx)


def load_blob(store: Store, row: dict[str, Any], chunk_data: list[bytes]) -> None:
    load_blobs(store, [(row, chunk_data)])


def load_blobs(store: Store, items: list[tuple[dict[str, Any], list[bytes]]]) -> None:
    """Several bodies in one transaction (one fsync, not one per body)."""
    def tx(c: Connection) -> None:
        names = sorted({row["hash"] for row, _ in items})
        have: set[str] = set()
        for i in range(0, len(names), 500):
            have |= set(c.execute(sa.select(blob.c.hash).where(
                blob.c.hash.in_(names[i:i + 500]))).scalars())
        chunk_rows: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        for row, chunk_data in items:
            if row["hash"] in have:
                continue
            have.add(row["hash"])
            chunk_rows += [{"hash": row["hash"], "idx": i, "data": d}
                           for i, d in enumerate(chunk_data)]
            rows.append(row)
        for i in range(0, len(chunk_rows), 100):  # chunks are up to 1 MiB each
            c.execute(sa.insert(blob_chunk), chunk_rows[i:i + 100])
        for i in range(0, len(rows), 1000):
            c.execute(sa.insert(blob), rows[i:i + 1000])
    if items:
        store._write(tx)


def restore_target_problem(engine: sa.Engine) -> str | None:
    """Why the database behind ``engine`` cannot take a whole-server restore (it holds
    accounts, changes or bodies already: nothing is overwritten), or None. Reads only,
    before the restore creates anything; an unreachable server is StoreUnavailable."""
    try:
        with engine.connect() as c:
            present = set(sa.inspect(c).get_table_names())
            held = [t.name for t in (principal, change, blob) if t.name in present
                    and c.execute(sa.select(sa.func.count()).select_from(t)).scalar()]
    except sa.exc.DBAPIError as exc:
        url = engine.url.set(drivername=engine.url.get_backend_name())  # as the user wrote it
        why = " ".join(str(exc.orig).split())
        raise StoreUnavailable(f"cannot reach the database "
                               f"{url.render_as_string(hide_password=True)} ({why})") from exc
    if held:
        return f"it already holds safehold data (rows in {', '.join(held)})"
    return None


def resync_sequences(store: Store) -> None:
    """PostgreSQL: move each restored table's id sequence past the ids the replica
    brought (rows were inserted with their own ids, which a sequence does not see), so
    that the next change gets seq = last restored seq + 1 instead of a duplicate key.
    SQLite picks max(rowid) + 1 by itself."""
    if store.engine.dialect.name != "postgresql":
        return

    def tx(c: Connection) -> None:
        for table in DUMPED.values():
            col = next(iter(table.primary_key.columns)).name
            # setval(seq, max, true) hands out max + 1 next; (seq, 1, false) hands out 1.
            c.execute(sa.text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{col}'), "
                f'COALESCE(MAX({col}), 1), MAX({col}) IS NOT NULL) FROM "{table.name}"'))
    store._write(tx)


def rebuild_heads(store: Store) -> int:
    """Recompute ``resource`` from the latest version of every path. Returns the number
    of live items (``live_items`` gives them, for the caller to re-index).

    One INSERT ... SELECT, in the database: fetching the latest versions as rows held
    them all at once (at 100,000 events the restore's peak, +100 MiB)."""
    def tx(c: Connection) -> int:
        c.execute(sa.delete(resource))
        latest = (sa.select(sa.func.max(version.c.id).label("id"),
                            sa.func.min(version.c.created_at).label("created"))
                  .group_by(version.c.path).subquery())
        c.execute(sa.insert(resource).from_select(
            ["path", "parent", "owner_id", "kind", "version_id", "blob_hash", "size", "etag",
             "content_type", "props", "seq", "created_at", "modified_at"],
            sa.select(version.c.path, version.c.parent, version.c.owner_id, version.c.kind,
                      version.c.id, version.c.blob_hash, version.c.size, version.c.etag,
                      version.c.content_type, version.c.props, version.c.seq, latest.c.created,
                      version.c.created_at)
            .join_from(version, latest, version.c.id == latest.c.id)
            .where(version.c.deleted.is_(False))))
        return int(c.execute(sa.select(sa.func.count()).select_from(resource)
                             .where(resource.c.kind == "item")).scalar() or 0)
    return store._write(tx)


def live_items(store: Store, after: str, limit: int) -> list[tuple[str, str, str | None]]:
    """(path, parent's kind or "", blob hash) of up to ``limit`` live items whose path
    sorts after ``after``, in path order: a restore re-indexes them a page at a time."""
    parent = resource.alias("parent_head")
    rows = store._read(lambda c: c.execute(
        sa.select(resource.c.path, parent.c.kind, resource.c.blob_hash)
        .join_from(resource, parent, parent.c.path == resource.c.parent, isouter=True)
        .where(resource.c.kind == "item", resource.c.path > after)
        .order_by(resource.c.path).limit(limit)).all())
    return [(path, kind or "", blob_hash) for path, kind, blob_hash in rows]


def referenced_blobs(store: Store) -> list[str]:
    """Bodies a restored database needs: those of versions history retention kept."""
    return store._read(lambda c: list(c.execute(
        sa.select(version.c.blob_hash).where(version.c.blob_hash.is_not(None))
        .where(version.c.id.not_in(sa.select(pruned.c.version_id))).distinct()).scalars()))


def missing_blobs(store: Store) -> tuple[int, list[str]]:
    """How many distinct bodies the restored versions need (``referenced_blobs``), and
    the sorted hashes of those the database lacks: counted and compared in the
    database, not as lists and sets of every hash (at 100,000 items ~16 MiB of a
    restore's peak)."""
    def q(c: Connection) -> tuple[int, list[str]]:
        kept = (version.c.blob_hash.is_not(None)
                & version.c.id.not_in(sa.select(pruned.c.version_id)))
        count = int(c.execute(sa.select(sa.func.count(sa.distinct(version.c.blob_hash)))
                              .where(kept)).scalar() or 0)
        absent = c.execute(sa.select(version.c.blob_hash).where(kept).where(
            ~sa.exists().where(blob.c.hash == version.c.blob_hash)).distinct()).scalars()
        return count, sorted(absent)
    return store._read(q)


def digest_at(store: Store, seq: int) -> dict[str, str]:
    """Per-collection digest of the state at ``seq``: what a drill compares."""
    def q(c: Connection) -> dict[str, str]:
        latest = (sa.select(sa.func.max(version.c.id)).where(version.c.seq <= seq)
                  .group_by(version.c.path))
        rows = c.execute(sa.select(version.c.path, version.c.parent, version.c.kind,
                                   version.c.blob_hash, version.c.props)
                         .where(version.c.id.in_(latest)).where(version.c.deleted.is_(False))
                         # The SLA canary's old rows are compacted here but kept in
                         # replicas (store/sla.py): not data a drill should compare.
                         .where(sa.not_(version.c.path.startswith(CANARY_PREFIX)))
                         .order_by(version.c.path)).all()
        per: dict[str, Any] = {}
        for r in rows:
            h = per.setdefault(r.parent, hashlib.sha256())
            h.update(json.dumps([r.path, r.kind, r.blob_hash, r.props]).encode())
        return {k: v.hexdigest() for k, v in per.items()}
    return store._read(q)
