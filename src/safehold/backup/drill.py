"""Restore drills: a backup that was never restored is a hope. Restore the replica
into a scratch database at its newest seq and at a random earlier one, and compare
per-collection digests with the live data at the same seq. Results are recorded."""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from safehold.backup import manifest as manifest_mod
from safehold.backup.crypto import Key
from safehold.backup.replica_client import ReplicaClient
from safehold.backup.restore import restore
from safehold.errors import SafeholdError
from safehold.store import engine as engine_mod
from safehold.store import replication as rep
from safehold.store.repo import Store


@dataclass(frozen=True)
class DrillResult:
    replica: str
    seq: int
    ok: bool
    seconds: float
    detail: str


def _scratch_restore(replica: ReplicaClient, key: Key, seq: int, tmp: Path) -> dict[str, str]:
    engine = engine_mod.create(f"sqlite:///{tmp / 'drill.db'}")
    try:
        engine_mod.ensure_schema(engine)
        scratch = Store(engine, tmp / "tmp")
        restore(replica, key, scratch, to_seq=seq)
        return rep.digest_at(scratch, seq)
    finally:
        engine.dispose()


def _compare(live: dict[str, str], restored: dict[str, str]) -> list[str]:
    bad = sorted(k for k in set(live) | set(restored) if live.get(k) != restored.get(k))
    return [f"/dav/{k}/" for k in bad]


def drill(store: Store, replica: ReplicaClient, key: Key,
          rng: random.Random | None = None) -> list[DrillResult]:
    rng = rng or random.Random()
    man = manifest_mod.read(replica, key)
    if man is None or man.high_water == 0:
        result = DrillResult(replica.url, 0, False, 0.0,
                             "the replica holds nothing yet: nothing to verify")
        _record(store, result)
        return [result]
    started = time.monotonic()
    problems = verify(replica, key)
    if problems:
        # Every object is read back first: a damaged segment that no restore point
        # happens to need today would break the restore of tomorrow.
        result = DrillResult(replica.url, man.high_water, False, time.monotonic() - started,
                             f"{len(problems)} damaged object(s): " + "; ".join(problems[:5]))
        _record(store, result)
        return [result]
    points = [man.high_water]
    lo = _restorable_from(replica, man)
    if man.high_water > lo:
        points.append(rng.randint(lo, man.high_water - 1))
    results = []
    for seq in points:
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix="safehold-drill-"))
        try:
            restored = _scratch_restore(replica, key, seq, tmp)
            live = rep.digest_at(store, seq)
            bad = _compare(live, restored)
            ok = not bad
            detail = (f"{len(live)} collections match at seq {seq}" if ok else
                      f"digests differ at seq {seq} for {', '.join(bad[:10])}")
        except SafeholdError as exc:
            ok, detail = False, f"restore at seq {seq} failed: {exc}"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        result = DrillResult(replica.url, seq, ok, time.monotonic() - started, detail)
        _record(store, result)
        results.append(result)
    return results


def _restorable_from(replica: ReplicaClient, man: manifest_mod.Manifest) -> int:
    """The earliest seq a restore can reach: 1, or the oldest snapshot once replica
    retention deleted the segments before it."""
    from safehold.backup import segment
    if any((r := segment.parse_segment(o.path)) and r.first == 1
           for o in replica.list("segments/")):
        return 1
    return max(1, min((int(s["seq"]) for s in man.snapshots), default=1))


def _record(store: Store, r: DrillResult) -> None:
    rep.record_drill(store, at=time.time(), replica=r.replica, seq=r.seq, ok=r.ok,
                     seconds=r.seconds, detail=r.detail)


def verify(replica: ReplicaClient, key: Key) -> list[str]:
    """Re-read every object and authenticate it; returns the problems, naming objects."""
    from safehold.backup import segment
    problems = []
    man = manifest_mod.read(replica, key)
    if man is None:
        return ["manifest.json is missing"]
    names = {s["name"] for s in man.snapshots}
    for obj in replica.list(""):
        if obj.path == manifest_mod.NAME:
            continue
        try:
            key.check(replica.get(obj.path), obj.path)  # a snapshot's plaintext is not held
        except SafeholdError as exc:
            problems.append(str(exc))
        names.discard(obj.path)
    problems += [f"{n} is listed in the manifest but missing" for n in sorted(names)]
    refs = sorted((r for r in (segment.parse_segment(o.path) for o in replica.list("segments/"))
                   if r), key=lambda r: r.first)
    prev_last = None
    for ref in refs:
        try:
            body = segment.decode(key, ref.name, replica.get(ref.name))
        except SafeholdError:
            prev_last = ref.last
            continue  # already reported above
        problems += segment.bad_inline(ref.name, body)
        if prev_last is not None and int(body["prev_last"]) != prev_last:
            problems.append(f"a segment is missing before {ref.name} (it follows seq "
                            f"{body['prev_last']}, the previous segment ends at {prev_last})")
        prev_last = ref.last
    if refs and refs[-1].last < man.high_water:
        problems.append(f"segments end at seq {refs[-1].last} but the manifest says "
                        f"{man.high_water}: the last segment is missing")
    for a, b in zip(refs, refs[1:], strict=False):
        if b.first <= a.last:
            problems.append(f"{b.name} overlaps {a.name}")
    return problems
