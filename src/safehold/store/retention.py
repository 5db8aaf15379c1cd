"""Applying retention: mark versions pruned, then drop blobs nothing unpruned needs."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from safehold.core.retention import Candidate, to_prune
from safehold.store.repo import Store
from safehold.store.schema import blob, blob_chunk, prune_run, pruned, resource, version


@dataclass(frozen=True)
class PruneResult:
    run_id: int | None
    versions: int
    blobs: int
    bytes: int


def candidates(store: Store, older_than: float) -> list[Candidate]:
    def q(c: Connection) -> list[Candidate]:
        heads = sa.select(resource.c.version_id)
        rows = c.execute(
            sa.select(version.c.id, version.c.path, version.c.created_at,
                      version.c.id.in_(heads).label("is_head"))
            .where(version.c.created_at < older_than, version.c.deleted.is_(False),
                   version.c.blob_hash.is_not(None),
                   version.c.id.not_in(sa.select(pruned.c.version_id)))).all()
        return [Candidate(int(r.id), r.path, float(r.created_at), bool(r.is_head)) for r in rows]
    return store._read(q)


def _orphans(c: Connection) -> list[tuple[str, int]]:
    live = (sa.select(version.c.blob_hash).where(version.c.blob_hash.is_not(None))
            .where(version.c.id.not_in(sa.select(pruned.c.version_id))))
    heads = sa.select(resource.c.blob_hash).where(resource.c.blob_hash.is_not(None))
    rows = c.execute(sa.select(blob.c.hash, blob.c.size)
                     .where(blob.c.hash.not_in(live), blob.c.hash.not_in(heads))).all()
    return [(r.hash, int(r.size)) for r in rows]


def prune(store: Store, days: int, dry_run: bool = False) -> PruneResult:
    now = store.clock()
    ids = to_prune(candidates(store, now - days * 86400), days, now)
    if dry_run:
        return PruneResult(None, len(ids), 0, 0)

    def tx(c: Connection) -> PruneResult:
        run_id = int(c.execute(sa.insert(prune_run).values(at=now, versions=len(ids), blobs=0,
                                                           bytes=0)).inserted_primary_key[0])  # type: ignore[index]
        for i in range(0, len(ids), 500):
            c.execute(sa.insert(pruned), [{"version_id": v, "pruned_at": now, "run_id": run_id}
                                          for v in ids[i:i + 500]])
        orphans = _orphans(c)
        for i in range(0, len(orphans), 500):
            hashes = [h for h, _ in orphans[i:i + 500]]
            c.execute(sa.delete(blob_chunk).where(blob_chunk.c.hash.in_(hashes)))
            c.execute(sa.delete(blob).where(blob.c.hash.in_(hashes)))
        size = sum(s for _, s in orphans)
        c.execute(sa.update(prune_run).where(prune_run.c.id == run_id)
                  .values(blobs=len(orphans), bytes=size))
        return PruneResult(run_id, len(ids), len(orphans), size)
    return store._write(tx)


def pruned_ids(store: Store, ids: list[int]) -> set[int]:
    return set(store._read(lambda c: c.execute(
        sa.select(pruned.c.version_id).where(pruned.c.version_id.in_(ids))).scalars().all()))
