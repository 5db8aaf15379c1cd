"""The rotating verify pass: every replica object is downloaded, authenticated and
decrypted again at least every ``verify_days``, a slice per run, so that a replica too
large to read in one go is still fully re-read every week (DESIGN "Backups and
replicas": a verify pass re-reads objects on a rotating schedule).

Each slice lists the replica (names and sizes: the replica's size, and whether any
object the manifest, a segment or a snapshot names is missing), then reads the next
objects in name order after the cursor. Segments are also checked against their
neighbours in the listing (their ``prev_last`` continues the previous segment), and
every blob a segment or snapshot names must be listed. Progress and problems are kept
in ``meta`` (one key per replica); problems stay until a full pass finds none.
Bodies a format-2 segment or snapshot carries inline are checked against their hashes."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from safehold.backup import manifest as manifest_mod
from safehold.backup import segment
from safehold.backup.crypto import Key
from safehold.backup.replica_client import ObjectInfo, ReplicaClient
from safehold.errors import SafeholdError
from safehold.store import replication as rep
from safehold.store.repo import Store

Progress = Callable[[str, int, int], None]
PASS_INTERVAL = 3600.0  # the server runs a slice this often


@dataclass
class VerifyState:
    cursor: str = ""  # the last object name read in the current pass
    pass_started: float = 0.0
    checked: int = 0  # objects read in the current pass
    checked_bytes: int = 0
    objects: int = 0  # in the replica at the last listing
    bytes: int = 0
    problems: list[str] = field(default_factory=list)  # found in the current pass
    last_full_pass: float = 0.0  # when the last complete pass ended
    last_pass_problems: list[str] = field(default_factory=list)
    last_slice: float = 0.0

    @property
    def progress(self) -> float:
        return min(1.0, self.checked / self.objects) if self.objects else 1.0

    @property
    def current_problems(self) -> list[str]:
        return sorted(set(self.problems) | set(self.last_pass_problems))


def _key(url: str) -> str:
    return "verify:" + hashlib.sha256(url.encode()).hexdigest()[:24]


def load_state(store: Store, url: str) -> VerifyState:
    raw = rep.get_meta(store, _key(url))
    if not raw:
        return VerifyState()
    data = json.loads(raw)
    return VerifyState(**{k: v for k, v in data.items() if k in VerifyState.__dataclass_fields__})


def save_state(store: Store, url: str, state: VerifyState) -> None:
    rep.set_meta(store, _key(url), json.dumps(asdict(state)))


def slice_size(objects: int, verify_days: float, interval: float = PASS_INTERVAL) -> int:
    """Objects per slice so that a pass completes within three quarters of
    ``verify_days`` (the rest is slack for missed runs and growth)."""
    runs = max(1.0, verify_days * 86400 * 0.75 / interval)
    return max(10, math.ceil(objects / runs))


def _structure(replica: ReplicaClient, key: Key, listing: dict[str, int]) -> list[str]:
    """What the listing alone shows: objects the manifest names that are missing,
    overlapping segments, and a chain that ends before the high-water mark."""
    problems = []
    man = manifest_mod.read(replica, key)
    if man is None:
        return [f"{manifest_mod.NAME} is missing"]
    problems += [f"{s['name']} is listed in the manifest but missing" for s in man.snapshots
                 if s["name"] not in listing]
    refs = sorted((r for r in map(segment.parse_segment, listing) if r), key=lambda r: r.first)
    problems += [f"{b.name} overlaps {a.name}" for a, b in zip(refs, refs[1:], strict=False)
                 if b.first <= a.last]
    ends = refs[-1].last if refs else max((int(s["seq"]) for s in man.snapshots), default=0)
    if ends < man.high_water:
        problems.append(f"segments end at seq {ends} but the manifest says {man.high_water}: "
                        "the last segment is missing")
    return problems


def _check(replica: ReplicaClient, key: Key, obj: ObjectInfo, listing: dict[str, int],
           previous: dict[str, int]) -> list[str]:
    """Read one object back; for segments and snapshots also check what they name."""
    ref = segment.parse_segment(obj.path)
    try:
        data = replica.get(obj.path)
        if ref is None and not segment.SNAPSHOT.match(obj.path):
            key.check(data, obj.path)  # a body's chunk: it authenticates and decompresses
            return []
        # Read as a stream, as a restore reads it: a snapshot's plaintext is never held.
        reader = segment.stream(key, obj.path, data)
        for _ in reader.tables():
            pass
        problems = segment.bad_inline(obj.path, {"inline": reader.bodies(hashed=False)})
        body = reader.head
    except SafeholdError as exc:
        return [str(exc)]
    if ref is not None and obj.path in previous and int(body["prev_last"]) != previous[obj.path]:
        problems.append(f"a segment is missing before {ref.name} (it follows seq "
                        f"{body['prev_last']}, the previous segment ends at {previous[obj.path]})")
    for row in body.get("blobs", []):
        for idx in range(int(row["chunks"])):
            name = segment.blob_chunk_name(key, row["hash"], idx)
            if name not in listing:
                problems.append(f"{name} is missing (a stored body that segments or "
                                "snapshots name)")
    return problems


def run_slice(store: Store, replica: ReplicaClient, key: Key, max_objects: int | None,
              verify_days: float = 7.0, now: float | None = None,
              progress: Progress | None = None) -> VerifyState:
    """Read the next slice (``max_objects``; None: all the rest of the pass) and record
    it. A pass that reaches the end of the listing is complete: its problems become
    ``last_pass_problems`` and a new pass starts at the next slice."""
    now = time.time() if now is None else now
    state = load_state(store, replica.url)
    objects = sorted(replica.list(""), key=lambda o: o.path)
    listing = {o.path: o.size for o in objects}
    state.objects, state.bytes = len(objects), sum(listing.values())
    if max_objects is None:
        max_objects = len(objects)
    if not state.cursor:
        # The manifest is read and authenticated by every slice (_structure): it counts
        # as re-read from the start of the pass, so a complete pass shows 100%.
        has_manifest = manifest_mod.NAME in listing
        state.pass_started, state.problems = now, []
        state.checked = 1 if has_manifest else 0
        state.checked_bytes = listing.get(manifest_mod.NAME, 0)
    refs = sorted((r for r in map(segment.parse_segment, listing) if r), key=lambda r: r.first)
    previous = {b.name: a.last for a, b in zip(refs, refs[1:], strict=False)}
    problems = set(state.problems) | set(_structure(replica, key, listing))
    todo = [o for o in objects if o.path > state.cursor and o.path != manifest_mod.NAME]
    chunk = todo[:max_objects]
    for i, obj in enumerate(chunk):
        problems |= set(_check(replica, key, obj, listing, previous))
        state.cursor = obj.path
        state.checked += 1
        state.checked_bytes += obj.size
        if progress and (i % 50 == 0 or i == len(chunk) - 1):
            progress("verifying", i + 1, len(chunk))
    state.problems = sorted(problems)
    state.last_slice = now
    if len(chunk) == len(todo):  # the end of the listing: the pass is complete
        state.last_full_pass, state.last_pass_problems = now, state.problems
        state.cursor, state.problems = "", []
    save_state(store, replica.url, state)
    return state


def facts(store: Store, url: str) -> dict[str, Any]:
    """What status and /metrics show about the verify pass of one replica."""
    st = load_state(store, url)
    return {"objects": st.objects, "bytes": st.bytes, "progress": round(st.progress, 4),
            "checked": st.checked, "pass_started": st.pass_started or None,
            "last_full_pass": st.last_full_pass or None, "problems": st.current_problems}
