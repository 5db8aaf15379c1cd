"""Replica retention, in two phases: nothing is deleted from a replica before a
restore of what remains has been proven.

Phase 1 (plan and prove): keep the newest ``keep_snapshots`` snapshots, every snapshot
younger than ``keep_days``, every snapshot pinned into the future (``pinned_until``,
set for upgrades), every segment after the oldest kept snapshot and every blob a kept
snapshot or segment names. Then authenticate each kept snapshot and restore the kept
chain -- the oldest kept snapshot plus every later segment, and the newest kept
snapshot plus the segments after it, through a view of the replica that already hides
the doomed objects -- into scratch databases, and compare their per-collection digests
with the live data at the replica's high-water mark. A restore fails when a body that
a kept version needs is in no object it reads: small bodies travel inside segments
and snapshots (format 2), so this is what proves that a doomed segment's bodies are
carried by a kept snapshot or a later segment.

Phase 2 (delete), holding the shipping turn so that no segment is shipped meanwhile
that names a blob about to go: drop the doomed snapshots from the manifest (it never
names a missing object), delete the objects, and forget the deleted blobs in
``replica_blob`` so that a later version with the same bytes ships them again. A
crash in phase 2 leaves only unnamed objects, which the next run deletes."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safehold.backup import manifest as manifest_mod
from safehold.backup import segment
from safehold.backup.crypto import Key
from safehold.backup.replica_client import ObjectInfo, ObjectMissing, ReplicaClient
from safehold.backup.restore import restore
from safehold.errors import SafeholdError
from safehold.store import engine as engine_mod
from safehold.store import replication as rep
from safehold.store.repo import Store

Progress = Callable[[str, int, int], None]


class RetentionError(SafeholdError):
    """The kept chain did not prove restorable: nothing was deleted."""


@dataclass
class Plan:
    replica: str
    high_water: int
    keep_from_seq: int  # the oldest kept snapshot: restores reach back to here
    kept_snapshots: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    delete_bytes: int = 0
    kept_objects: int = 0
    kept_bytes: int = 0
    deleted_blob_hashes: list[str] = field(default_factory=list)
    proven: bool = False
    deleted: int = 0
    detail: str = ""


class _Without:
    """The replica as it will be after phase 2: doomed objects are already missing."""

    def __init__(self, replica: ReplicaClient, gone: set[str]) -> None:
        self._replica, self._gone, self.url = replica, gone, replica.url

    def put_once(self, path: str, data: bytes) -> bool:
        raise RetentionError("the retention proof never writes")

    def put(self, path: str, data: bytes) -> None:
        raise RetentionError("the retention proof never writes")

    def get(self, path: str) -> bytes:
        if path in self._gone:
            raise ObjectMissing(f"{path} would be deleted by retention but the restore needs it")
        return self._replica.get(path)

    def exists(self, path: str) -> bool:
        return path not in self._gone and self._replica.exists(path)

    def list(self, prefix: str, after: str | None = None) -> Iterator[ObjectInfo]:
        return (o for o in self._replica.list(prefix, after) if o.path not in self._gone)

    def delete(self, path: str) -> None:
        raise RetentionError("the retention proof never deletes")


def _blob_prefixes(key: Key, rows: list[dict[str, Any]]) -> set[str]:
    return {segment.blob_prefix(key, r["hash"]) for r in rows}


def _blob_of(name: str) -> str | None:
    parts = name.split("/")
    return "/".join(parts[:3]) + "/" if len(parts) == 4 and parts[0] == "blobs" else None


def plan(replica: ReplicaClient, key: Key, keep_snapshots: int, keep_days: float,
         now: float | None = None, progress: Progress | None = None) -> Plan:
    """Phase 1a: choose what to keep (reads the kept snapshots and segments)."""
    now = time.time() if now is None else now
    say = progress or (lambda *_: None)
    man = manifest_mod.read(replica, key)
    if man is None:
        raise RetentionError(f"{replica.url} holds no safehold replica (no manifest.json)")
    snaps = sorted(man.snapshots, key=lambda s: int(s["seq"]))
    newest = {s["name"] for s in snaps[-max(keep_snapshots, 1):]}
    kept = [s for s in snaps if s["name"] in newest
            or float(s.get("at", 0)) >= now - keep_days * 86400
            or float(s.get("pinned_until") or 0) > now]
    objects = list(replica.list(""))
    result = Plan(replica.url, man.high_water, min((int(s["seq"]) for s in kept), default=0),
                  [s["name"] for s in kept])
    if not kept:
        result.kept_objects = len(objects)
        result.kept_bytes = sum(o.size for o in objects)
        result.detail = "no snapshot yet: the whole chain from seq 0 is needed"
        return result
    cutoff = result.keep_from_seq
    named = {s["name"] for s in man.snapshots}
    keep_blobs: set[str] = set()
    reads = [s["name"] for s in kept] + [
        r.name for r in (segment.parse_segment(o.path) for o in objects)
        if r is not None and r.last > cutoff]
    for i, name in enumerate(reads):
        # Read as a stream: only the header's blob rows are needed, and a snapshot's
        # tables decoded whole were most of this process's memory.
        head = segment.scan(key, name, replica.get(name))
        keep_blobs |= _blob_prefixes(key, head.get("blobs", []))
        say("reading kept snapshots and segments", i + 1, len(reads))
    kept_names = set(result.kept_snapshots)
    for o in objects:
        ref = segment.parse_segment(o.path)
        snap = segment.SNAPSHOT.match(o.path)
        blob = _blob_of(o.path)
        doomed = ((ref is not None and ref.last <= cutoff)
                  or (snap is not None and o.path not in kept_names
                      and (o.path in named or int(snap.group(1)) < cutoff))
                  or (blob is not None and blob not in keep_blobs))
        if doomed:
            result.delete.append(o.path)
            result.delete_bytes += o.size
        else:
            result.kept_objects += 1
            result.kept_bytes += o.size
    result.detail = (f"keep {len(kept)} snapshot(s) from seq {cutoff} on; delete "
                     f"{len(result.delete)} object(s), {result.delete_bytes} bytes")
    return result


def prove(store: Store, replica: ReplicaClient, key: Key, p: Plan,
          progress: Progress | None = None) -> None:
    """Phase 1b: restore the kept chain, hiding the doomed objects, and compare."""
    if not p.delete:
        p.proven = True
        return
    view = _Without(replica, set(p.delete))
    for name in p.kept_snapshots:  # authenticate every kept snapshot, not only the oldest
        segment.scan(key, name, view.get(name))
    # From the oldest kept snapshot (the whole kept chain is read) and from the newest
    # (what a restore reads): segments carry a small body only when no restore from
    # the newest snapshot at their time finds it otherwise (backup/segment.py), and
    # both restores check that every body a kept version needs is there.
    newest = max((int(m.group(1)) for m in map(segment.SNAPSHOT.match, p.kept_snapshots) if m),
                 default=p.keep_from_seq)
    live = rep.digest_at(store, p.high_water)
    for start in sorted({p.keep_from_seq, newest}):
        _prove_from(view, key, p, start, live, progress)
    p.proven = True


def _prove_from(view: _Without, key: Key, p: Plan, start: int, live: dict[str, str],
                progress: Progress | None) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="safehold-retention-"))
    engine = engine_mod.create(f"sqlite:///{tmp / 'proof.db'}")
    try:
        engine_mod.ensure_schema(engine)
        scratch = Store(engine, tmp / "tmp")
        restore(view, key, scratch, to_seq=p.high_water, snapshot_at_most=start,
                progress=progress)
        restored = rep.digest_at(scratch, p.high_water)
    except SafeholdError as exc:
        raise RetentionError(f"{view.url}: the kept chain does not restore from the snapshot at "
                             f"seq {start} ({exc}); nothing was deleted") from exc
    finally:
        engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    bad = sorted(k for k in set(live) | set(restored) if live.get(k) != restored.get(k))
    if bad:
        raise RetentionError(f"{view.url}: the kept chain restores, but digests differ at seq "
                             f"{p.high_water} for {', '.join('/dav/' + b + '/' for b in bad[:10])}; "
                             "nothing was deleted")


def delete(store: Store, replica: ReplicaClient, key: Key, p: Plan,
           progress: Progress | None = None) -> None:
    """Phase 2: only for a proven plan, and only while holding the shipping turn."""
    if not p.proven:
        raise RetentionError("refusing to delete: the plan was not proven")
    man = manifest_mod.read(replica, key)
    if man is None or man.high_water < p.high_water:
        raise RetentionError(f"{replica.url} changed under the plan; run retention again")
    doomed = set(p.delete)
    # Segments shipped since the plan may name blobs the plan meant to delete.
    for o in replica.list("segments/"):
        ref = segment.parse_segment(o.path)
        if ref is not None and ref.last > p.high_water:
            body = segment.decode(key, ref.name, replica.get(ref.name))
            spared = _blob_prefixes(key, body.get("blobs", []))
            doomed = {n for n in doomed if _blob_of(n) not in spared}
    man.snapshots = [s for s in man.snapshots if s["name"] not in doomed]
    manifest_mod.write(replica, key, man)
    gone_blobs = {_blob_of(n) for n in doomed} - {None}
    names = {segment.blob_prefix(key, h): h for h in rep.replica_blob_hashes(store, replica.url)}
    p.deleted_blob_hashes = sorted(names[b] for b in gone_blobs if b in names)
    rep.unmark_blobs(store, replica.url, p.deleted_blob_hashes)
    for i, name in enumerate(sorted(doomed)):
        replica.delete(name)
        p.deleted = i + 1
        if i % 100 == 0 or i == len(doomed) - 1:
            if progress:
                progress("deleting", i + 1, len(doomed))
    p.detail = (f"kept {len(p.kept_snapshots)} snapshot(s) from seq {p.keep_from_seq} on; "
                f"deleted {p.deleted} object(s)")


def meta_key(url: str) -> str:
    import hashlib
    return "replica_prune:" + hashlib.sha256(url.encode()).hexdigest()[:24]


def record(store: Store, p: Plan, ok: bool, at: float, dry_run: bool) -> None:
    body = {k: v for k, v in asdict(p).items() if k not in ("delete", "deleted_blob_hashes")}
    body.update(ok=ok, at=at, dry_run=dry_run, delete_count=len(p.delete))
    rep.set_meta(store, meta_key(p.replica), json.dumps(body))


def last_run(store: Store, url: str) -> dict[str, Any] | None:
    raw = rep.get_meta(store, meta_key(url))
    return dict(json.loads(raw)) if raw else None


def run(store: Store, replica: ReplicaClient, key: Key, keep_snapshots: int, keep_days: float,
        dry_run: bool = False, progress: Progress | None = None,
        now: float | None = None, turn_timeout: float = 120.0) -> Plan:
    """Both phases for one replica; the plan and its outcome are recorded in ``meta``."""
    at = time.time() if now is None else now
    p = Plan(replica.url, 0, 0)
    try:
        try:
            p = plan(replica, key, keep_snapshots, keep_days, now=at, progress=progress)
            if not dry_run and p.delete:
                prove(store, replica, key, p, progress=progress)
        except RetentionError:
            raise
        except SafeholdError as exc:
            raise RetentionError(f"{replica.url}: {exc}; nothing was deleted") from exc
        if not dry_run and p.delete:
            deadline = time.monotonic() + turn_timeout
            while True:
                with store.shipping_turn() as mine:
                    if mine:
                        delete(store, replica, key, p, progress=progress)
                        break
                if time.monotonic() > deadline:
                    raise RetentionError("the shipper kept its turn; retention will run again")
                time.sleep(0.2)
    except SafeholdError as exc:
        p.detail = str(exc)
        record(store, p, False, at, dry_run)
        raise
    record(store, p, True, at, dry_run)
    return p
