"""Rebuilding a database from a replica and the key alone: the newest snapshot at
or before the target, then the segments after it (their chain checked for gaps),
then the blobs every version references, then heads and indexes."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from safehold.backup import manifest as manifest_mod
from safehold.backup import segment
from safehold.backup.crypto import CorruptObject, Key
from safehold.backup.replica_client import ReplicaClient
from safehold.core.items import InvalidItem, index_for
from safehold.errors import SafeholdError
from safehold.store import blobs as blobs_mod
from safehold.store import replication as rep
from safehold.store.repo import Store

Progress = Callable[[str, int, int], None]


class RestoreError(SafeholdError):
    pass


@dataclass(frozen=True)
class RestoreReport:
    seq: int
    lineage: str
    changes: int
    blobs: int
    bytes: int
    items: int


def _filter_user(tables: dict[str, list[dict[str, Any]]], user: str) -> dict[str, list[dict[str, Any]]]:
    ids = {p["id"] for p in tables.get("principal", []) if p["name"] == user}
    homes = tuple(f"{h}/{user}" for h in ("files", "calendars", "addressbooks"))

    def mine(path: str) -> bool:
        return any(path == h or path.startswith(h + "/") for h in homes)
    return {"principal": [p for p in tables.get("principal", []) if p["id"] in ids],
            "credential": [c for c in tables.get("credential", []) if c["principal_id"] in ids],
            "change": tables.get("change", []),
            "version": [v for v in tables.get("version", []) if mine(v["path"])],
            "pruned": tables.get("pruned", [])}


def restore(replica: ReplicaClient, key: Key, store: Store, to_seq: int | None = None,
            user: str | None = None, progress: Progress | None = None,
            snapshot_at_most: int | None = None) -> RestoreReport:
    """``snapshot_at_most`` starts from an older snapshot than the newest one, so that
    more of the chain is replayed (replica retention proves the whole kept chain)."""
    man = manifest_mod.read(replica, key)
    if man is None:
        raise RestoreError(f"{replica.url} holds no safehold replica (no manifest.json)")
    target = man.high_water if to_seq is None else min(to_seq, man.high_water)
    if store.last_seq() != 0:
        raise RestoreError("the target database is not empty; restore into a new data directory")
    say = progress or (lambda *_: None)
    blob_rows: dict[str, dict[str, Any]] = {}

    def apply(tables: dict[str, list[dict[str, Any]]], blob_list: list[dict[str, Any]]) -> None:
        if user is not None:
            tables = _filter_user(tables, user)
        rep.load(store, tables, upto=target)
        for row in blob_list:
            blob_rows[row["hash"]] = row

    base = 0
    limit = target if snapshot_at_most is None else min(target, snapshot_at_most)
    snaps = sorted((s for s in man.snapshots if int(s["seq"]) <= limit), key=lambda s: int(s["seq"]))
    if not snaps and man.snapshots and not any(
            (r := segment.parse_segment(o.path)) and r.first == 1
            for o in replica.list("segments/")):
        oldest = min(int(s["seq"]) for s in man.snapshots)
        raise RestoreError(f"the replica keeps history from seq {oldest} on (older segments "
                           f"were deleted by replica retention); restore to seq {oldest} or later")
    if snaps:
        snap = snaps[-1]
        say("snapshot", 0, 1)
        body = segment.decode(key, snap["name"], replica.get(snap["name"]))
        apply(body["tables"], body["blobs"])
        base = int(snap["seq"])
    refs = sorted((r for r in (segment.parse_segment(o.path) for o in replica.list("segments/"))
                   if r is not None and r.last > base), key=lambda r: r.first)
    expected_prev = None
    done = 0
    for ref in refs:
        if ref.first > target:
            break
        body = segment.decode(key, ref.name, replica.get(ref.name))
        prev = int(body["prev_last"])
        if expected_prev is not None and prev != expected_prev:
            raise CorruptObject(f"segment chain broken before {ref.name}: it follows seq {prev}, "
                                f"the previous segment ended at {expected_prev}; a segment is missing")
        if expected_prev is None and prev > base:
            raise CorruptObject(f"segments between seq {base} and {prev} are missing "
                                f"(first segment found: {ref.name})")
        expected_prev = int(body["last"])
        apply(body["tables"], body["blobs"])
        done += 1
        say("segments", done, len(refs))
    if store.last_seq() < target and user is None:
        raise CorruptObject(f"the replica ends at seq {store.last_seq()}, but its manifest "
                            f"claims {target}; segments are missing")
    needed = rep.referenced_blobs(store)
    total_bytes = 0
    pending: list[tuple[dict[str, Any], list[bytes]]] = []
    pending_bytes = 0
    for i, h in enumerate(needed):
        row = blob_rows.get(h)
        if row is None:
            raise CorruptObject(f"no blob description for {h} in the replica")
        chunks = []
        for idx in range(int(row["chunks"])):
            name = segment.blob_chunk_name(key, h, idx)
            chunks.append(key.open(replica.get(name), name))
        pending.append((row, chunks))
        pending_bytes += sum(len(c) for c in chunks)
        total_bytes += int(row["size"])
        if len(pending) >= 500 or pending_bytes > 64 << 20 or i == len(needed) - 1:
            rep.load_blobs(store, pending)  # one commit per batch, not per body
            pending, pending_bytes = [], 0
        if i % 100 == 0 or i == len(needed) - 1:
            say("blobs", i + 1, len(needed))
    items = _reindex(store, rep.rebuild_heads(store))
    lineage = man.lineage if target == man.high_water and user is None else secrets.token_hex(8)
    rep.set_meta(store, "lineage", lineage)
    if lineage != man.lineage:
        # An earlier point is a new history: devices with newer tokens must resync
        # (DESIGN promise 8) and the old replica is not ours to extend.
        rep.set_meta(store, "restored_from", f"{man.lineage}:{target}")
    return RestoreReport(target, lineage, store.last_seq(), len(needed), total_bytes, items)


def _reindex(store: Store, items: list[tuple[str, str, str | None]]) -> int:
    from safehold.store.schema import item_index
    rows = []
    for path, parent_kind, blob_hash in items:
        if parent_kind not in ("calendar", "addressbook") or blob_hash is None:
            continue
        try:
            ix = index_for(parent_kind, blobs_mod.read_all(store.engine, blob_hash))
        except InvalidItem:
            continue
        if ix is not None:
            rows.append({"path": path, "collection": path.rsplit("/", 1)[0],
                         "component": ix.component, "uid": ix.uid, "start": ix.start,
                         "end": ix.end, "recurring": ix.recurring})
    if rows:
        store._write(lambda c: c.execute(sa.insert(item_index), rows))
    return len(items)


def seq_for_time(replica: ReplicaClient, key: Key, when: float) -> int:
    """The last change committed at or before ``when``, read from the segments."""
    refs = sorted((r for r in (segment.parse_segment(o.path) for o in replica.list("segments/"))
                   if r is not None), key=lambda r: r.first)
    best = 0
    for ref in refs:
        body = segment.decode(key, ref.name, replica.get(ref.name))
        for row in body["tables"]["change"]:
            if float(row["at"]) > when:
                return best
            best = int(row["seq"])
    return best
