"""The store side of replication: reading change-log ranges, snapshots and blobs
out, and loading them into an empty database on restore."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from safehold.store.repo import Store
from safehold.store.sla import CANARY_PREFIX
from safehold.store.schema import (
    blob, blob_chunk, change, credential, drill, meta, principal, pruned, replica_blob,
    replica_state, resource, version,
)

# The tables a replica carries. Heads (resource) and indexes are rebuilt on restore.
DUMPED = {"principal": principal, "credential": credential, "change": change, "version": version}


def _rows(c: Connection, stmt: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in c.execute(stmt)]


def accounts_digest(principals: list[dict[str, Any]], credentials: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps([principals, credentials], sort_keys=True,
                                     default=str).encode()).hexdigest()


def changes_after(store: Store, seq: int, limit: int,
                  known_accounts: str | None = None) -> dict[str, Any]:
    """Up to ``limit`` changes after ``seq`` with their versions, plus the current
    principals and credentials (they are not in the change log) unless their digest
    is still ``known_accounts``; their digest is returned as "accounts_digest"."""
    def q(c: Connection) -> dict[str, Any]:
        changes = _rows(c, sa.select(change).where(change.c.seq > seq)
                        .order_by(change.c.seq).limit(limit))
        if not changes:
            return {"change": []}
        last = changes[-1]["seq"]
        principals = _rows(c, sa.select(principal).order_by(principal.c.id))
        credentials = _rows(c, sa.select(credential).order_by(credential.c.id))
        digest = accounts_digest(principals, credentials)
        out: dict[str, Any] = {
            "change": changes,
            "version": _rows(c, sa.select(version).where(version.c.seq > seq)
                             .where(version.c.seq <= last).order_by(version.c.id)),
            "accounts_digest": digest}
        if digest != known_accounts:
            out["principal"], out["credential"] = principals, credentials
        return out
    return store._read(q)


def snapshot(store: Store, upto: int) -> dict[str, list[dict[str, Any]]]:
    def q(c: Connection) -> dict[str, list[dict[str, Any]]]:
        return {"change": _rows(c, sa.select(change).where(change.c.seq <= upto).order_by(change.c.seq)),
                "version": _rows(c, sa.select(version).where(version.c.seq <= upto)
                                 .order_by(version.c.id)),
                "principal": _rows(c, sa.select(principal)),
                "credential": _rows(c, sa.select(credential)),
                # Versions whose content history retention dropped: their bodies are
                # gone, and a restore must not look for them.
                "pruned": _rows(c, sa.select(pruned).where(pruned.c.version_id.in_(
                    sa.select(version.c.id).where(version.c.seq <= upto))))}
    return store._read(q)


def blob_rows(store: Store, hashes: list[str]) -> list[dict[str, Any]]:
    def q(c: Connection) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(0, len(hashes), 500):
            out += _rows(c, sa.select(blob).where(blob.c.hash.in_(hashes[i:i + 500])))
        return out
    return store._read(q)


def chunks(store: Store, sha256: str, count: int) -> Iterator[bytes]:
    """The stored (zstd-compressed) chunks of a blob, one query each."""
    for idx in range(count):
        yield store._read(lambda c, i=idx: c.execute(  # type: ignore[misc]
            sa.select(blob_chunk.c.data).where(blob_chunk.c.hash == sha256, blob_chunk.c.idx == i)
        ).scalar_one())


def shipped_blobs(store: Store, url: str, hashes: list[str]) -> set[str]:
    def q(c: Connection) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(hashes), 500):
            out |= set(c.execute(sa.select(replica_blob.c.hash).where(
                replica_blob.c.url == url, replica_blob.c.hash.in_(hashes[i:i + 500]))).scalars())
        return out
    return store._read(q)


def mark_blobs(store: Store, url: str, hashes: list[str]) -> None:
    if hashes:
        def tx(c: Connection) -> None:
            have = set(c.execute(sa.select(replica_blob.c.hash).where(
                replica_blob.c.url == url, replica_blob.c.hash.in_(hashes))).scalars())
            new = [{"url": url, "hash": h} for h in set(hashes) - have]
            if new:
                c.execute(sa.insert(replica_blob), new)
        store._write(tx)


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
    row = store._read(lambda c: c.execute(sa.select(replica_state)
                                          .where(replica_state.c.url == url)).first())
    return dict(row._mapping) if row else None


def save_replica_row(store: Store, url: str, **values: Any) -> None:
    def tx(c: Connection) -> None:
        if c.execute(sa.update(replica_state).where(replica_state.c.url == url)
                     .values(**values)).rowcount == 0:
            base = {"shipped_seq": 0, "snapshot_seq": 0, **values}
            c.execute(sa.insert(replica_state).values(url=url, **base))
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

def load(store: Store, tables: dict[str, list[dict[str, Any]]], upto: int | None = None) -> None:
    """Insert dumped rows (skipping any already present, so segments may overlap a
    snapshot) in one transaction."""
    def tx(c: Connection) -> None:
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
        if tables.get("pruned"):
            known = set(c.execute(sa.select(pruned.c.version_id)).scalars())
            new_pruned = [r for r in tables["pruned"] if r["version_id"] not in known]
            if new_pruned:
                c.execute(sa.insert(pruned), new_pruned)
        have = int(c.execute(sa.select(sa.func.max(change.c.seq))).scalar() or 0)
        new_changes = [r for r in tables.get("change", [])
                       if r["seq"] > have and (upto is None or r["seq"] <= upto)]
        if new_changes:
            c.execute(sa.insert(change), new_changes)
            last = new_changes[-1]["seq"]
            rows = [r for r in tables.get("version", []) if have < r["seq"] <= last]
            for i in range(0, len(rows), 1000):
                c.execute(sa.insert(version), rows[i:i + 1000])
    store._write(tx)


def load_blob(store: Store, row: dict[str, Any], chunk_data: list[bytes]) -> None:
    load_blobs(store, [(row, chunk_data)])


def load_blobs(store: Store, items: list[tuple[dict[str, Any], list[bytes]]]) -> None:
    """Several bodies in one transaction (one fsync, not one per body)."""
    def tx(c: Connection) -> None:
        for row, chunk_data in items:
            if c.execute(sa.select(blob.c.hash).where(blob.c.hash == row["hash"])).first():
                continue
            c.execute(sa.insert(blob_chunk), [{"hash": row["hash"], "idx": i, "data": d}
                                              for i, d in enumerate(chunk_data)])
            c.execute(sa.insert(blob).values(**row))
    if items:
        store._write(tx)


def rebuild_heads(store: Store) -> list[tuple[str, str, str | None]]:
    """Recompute ``resource`` from the latest version of every path. Returns
    (path, parent kind, blob hash) of live items, for the caller to re-index."""
    def tx(c: Connection) -> list[tuple[str, str, str | None]]:
        c.execute(sa.delete(resource))
        latest = sa.select(sa.func.max(version.c.id)).group_by(version.c.path)
        rows = c.execute(sa.select(version).where(version.c.id.in_(latest))
                         .where(version.c.deleted.is_(False))).all()
        created = dict(c.execute(sa.select(version.c.path, sa.func.min(version.c.created_at))
                                 .group_by(version.c.path)).all())
        for i in range(0, len(rows), 1000):
            c.execute(sa.insert(resource), [dict(
                path=r.path, parent=r.parent, owner_id=r.owner_id, kind=r.kind, version_id=r.id,
                blob_hash=r.blob_hash, size=r.size, etag=r.etag, content_type=r.content_type,
                props=r.props, seq=r.seq, created_at=created.get(r.path, r.created_at),
                modified_at=r.created_at) for r in rows[i:i + 1000]])
        kinds = {r.path: r.kind for r in rows}
        return [(r.path, kinds.get(r.parent, ""), r.blob_hash) for r in rows if r.kind == "item"]
    return store._write(tx)


def referenced_blobs(store: Store) -> list[str]:
    """Bodies a restored database needs: those of versions history retention kept."""
    return store._read(lambda c: list(c.execute(
        sa.select(version.c.blob_hash).where(version.c.blob_hash.is_not(None))
        .where(version.c.id.not_in(sa.select(pruned.c.version_id))).distinct()).scalars()))


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
