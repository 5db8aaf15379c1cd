"""Reading the past and writing restores. A restore is one new change whose
versions bring paths back to earlier content (or delete them): the past is never
rewritten, and clients see ordinary forward changes (DESIGN promise 8)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from safehold.core.history import HOMES
from safehold.core.model import ITEM, Actor, RestoreOp, Version, load_props, parent_of
from safehold.errors import Conflict
from safehold.store import blobs
from safehold.store.repo import Store, _subtree
from safehold.store.schema import change, item_index, lock, principal, resource, version


def _version(r: Any) -> Version:
    return Version(id=int(r.id), seq=int(r.seq), path=r.path, kind=r.kind, op=r.op,
                   deleted=bool(r.deleted), blob_hash=r.blob_hash, size=int(r.size), etag=r.etag,
                   content_type=r.content_type, props=load_props(r.props), at=float(r.at),
                   actor=r.actor, user_agent=r.user_agent, request_id=r.request_id,
                   change_op=r.change_op)


def _select() -> sa.Select[Any]:
    return (sa.select(version, change.c.at, change.c.user_agent, change.c.request_id,
                      change.c.op.label("change_op"), principal.c.name.label("actor"))
            .join(change, change.c.seq == version.c.seq)
            .outerjoin(principal, principal.c.id == change.c.actor_id))


def versions_of(store: Store, path: str) -> list[Version]:
    """Every version of ``path``, oldest first."""
    def q(c: Connection) -> list[Version]:
        return [_version(r) for r in c.execute(
            _select().where(version.c.path == path).order_by(version.c.id))]
    return store._read(q)


def members_history(store: Store, collection: str, limit: int = 1000) -> list[Version]:
    """The latest changes to members of ``collection``, newest first."""
    def q(c: Connection) -> list[Version]:
        return [_version(r) for r in c.execute(
            _select().where(version.c.parent == collection).order_by(version.c.id.desc()).limit(limit))]
    return store._read(q)


def deleted_members(store: Store, collection: str) -> list[Version]:
    """Members of ``collection`` that are deleted now: their tombstones, newest first."""
    def q(c: Connection) -> list[Version]:
        latest = (sa.select(sa.func.max(version.c.id).label("id"))
                  .where(version.c.parent == collection).group_by(version.c.path).subquery())
        rows = c.execute(_select().where(version.c.id.in_(sa.select(latest.c.id)))
                         .where(version.c.deleted.is_(True)).order_by(version.c.id.desc()))
        return [_version(r) for r in rows]
    return store._read(q)


def state_at(store: Store, prefix: str, seq: int) -> dict[str, Version]:
    """The latest version at or before ``seq`` of every path in the subtree (deleted
    ones included, as tombstones). Version ids grow with seq, so max(id) is the latest."""
    def q(c: Connection) -> dict[str, Version]:
        latest = (sa.select(sa.func.max(version.c.id).label("id"))
                  .where(_subtree(version.c.path, prefix)).where(version.c.seq <= seq)
                  .group_by(version.c.path).subquery())
        rows = c.execute(_select().where(version.c.id.in_(sa.select(latest.c.id))))
        return {r.path: _version(r) for r in rows}
    return store._read(q)


def seq_at(store: Store, when: float) -> int:
    """The last change committed at or before ``when`` (0 if none)."""
    return store._read(lambda c: int(c.execute(
        sa.select(sa.func.max(change.c.seq)).where(change.c.at <= when)).scalar() or 0))


def version_by_seq(store: Store, path: str, seq: int) -> Version | None:
    for v in reversed(versions_of(store, path)):
        if v.seq == seq:
            return v
    return None


def apply(store: Store, owner_id: int, changes: list[tuple[str, list[RestoreOp]]], actor: Actor,
          op: str = "restore") -> list[int]:
    """Write each (target, ops) as a change of its own, all in ONE transaction: if one
    fails, none is written (a restore-user is all or nothing), and a Conflict says which
    target failed. Returns their seqs."""
    def tx(conn: Connection) -> list[int]:
        seqs = []
        for target, ops in changes:
            try:
                seqs.append(_write_restore(store, conn, owner_id, target, ops, actor, op))
            except Conflict as exc:
                if len(changes) == 1:
                    raise  # the message names the path already (rollback, undelete)
                raise Conflict(f"restoring {target!r} failed, so nothing was restored: "
                               f"{exc}") from exc
        return seqs
    return store._write(tx)


def _write_restore(store: Store, conn: Connection, owner_id: int, target: str,
                   ops: list[RestoreOp], actor: Actor, op: str) -> int:
    """Write ``ops`` as one change in ``conn``'s transaction; returns its seq. Deletions
    go first so that a rollback that swaps UIDs between paths never trips the UID check
    half-way."""
    seq = store._append_change(conn, op, owner_id, target, actor)
    now = store.clock()
    for step in sorted((o for o in ops if o.action == "delete"), key=lambda o: o.path, reverse=True):
        row = conn.execute(sa.select(resource).where(resource.c.path == step.path)).first()
        if row is None:
            continue
        conn.execute(sa.insert(version).values(
            seq=seq, owner_id=row.owner_id, path=row.path, parent=row.parent, kind=row.kind,
            op=op, deleted=True, blob_hash=None, size=0, etag="", content_type=None,
            props="{}", created_at=now))
        conn.execute(sa.delete(resource).where(resource.c.path == step.path))
        conn.execute(sa.delete(item_index).where(item_index.c.path == step.path))
        conn.execute(sa.delete(lock).where(lock.c.path == step.path))
    writes = sorted((o for o in ops if o.action != "delete"), key=lambda o: o.path)
    # Every path being rewritten gives up its index row first: a rollback across a
    # UID swap (a.vcf and b.vcf exchanged UIDs) must not trip over itself.
    paths = [o.path for o in writes]
    for i in range(0, len(paths), 500):
        conn.execute(sa.delete(item_index).where(item_index.c.path.in_(paths[i:i + 500])))
    for step in writes:
        src = step.source
        assert src is not None
        parent = conn.execute(sa.select(resource.c.kind).where(
            resource.c.path == parent_of(step.path))).scalar()
        # A home ("addressbooks/alice") has no stored parent: its own properties are
        # restored like any collection's (a restore-user failed on them).
        is_home = step.path.count("/") == 1 and parent_of(step.path) in HOMES
        if not is_home and (parent is None or parent == ITEM):
            raise Conflict(f"cannot restore {step.path!r}: its parent collection does not "
                           "exist; restore the parent first")
        if step.index is not None:
            store._check_uid(conn, parent_of(step.path), step.index.uid, step.path)
        if src.blob_hash is not None and not blobs.exists(conn, src.blob_hash):
            raise Conflict(f"the content of {step.path!r} at change {src.seq} was removed by "
                           "retention (safehold prune); choose a later version")
        existing = store._get(conn, step.path)
        store._write_version(conn, seq, op, path=step.path, owner_id=owner_id, kind=src.kind,
                             blob_hash=src.blob_hash, size=src.size,
                             content_type=src.content_type, props=src.props,
                             created_at=existing.created_at if existing else None)
        store._write_index(conn, step.path, step.index)
    return seq


class History:
    """The store's history, as core.history.HistoryPort wants it."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def versions_of(self, path: str) -> list[Version]:
        return versions_of(self.store, path)

    def deleted_members(self, collection: str) -> list[Version]:
        return deleted_members(self.store, collection)

    def members_history(self, collection: str, limit: int = 1000) -> list[Version]:
        return members_history(self.store, collection, limit)

    def state_at(self, prefix: str, seq: int) -> dict[str, Version]:
        return state_at(self.store, prefix, seq)

    def seq_at(self, when: float) -> int:
        return seq_at(self.store, when)

    def last_seq(self) -> int:
        return self.store.last_seq()

    def current(self, prefix: str) -> dict[str, Version]:
        return state_at(self.store, prefix, self.store.last_seq())

    def kind_of(self, path: str) -> str | None:
        res = self.store.get(path)
        return res.kind if res else None

    def blob(self, blob_hash: str) -> bytes:
        return blobs.read_all(self.store.engine, blob_hash)

    def apply(self, owner_id: int, changes: list[tuple[str, list[RestoreOp]]],
              actor: Actor) -> list[int]:
        return apply(self.store, owner_id, changes, actor)
