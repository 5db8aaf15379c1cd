"""Rebuilding a database from a replica and the key alone: the newest snapshot at
or before the target, then the segments after it (their chain checked for gaps),
each with the small bodies it carries (format 2), then the bodies stored as blob
objects that versions reference, then heads and indexes. Objects are downloaded and
opened by a few threads ahead of the one being inserted."""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from safehold.backup import manifest as manifest_mod
from safehold.backup import segment
from safehold.backup.crypto import CorruptObject, Key, Plaintext
from safehold.backup.replica_client import ReplicaClient
from safehold.core.items import InvalidItem, index_for
from safehold.errors import SafeholdError
from safehold.store import blobs as blobs_mod
from safehold.store import replication as rep
from safehold.store.repo import Store, index_row

Progress = Callable[[str, int, int], None]
FETCHERS = 4  # objects downloaded at once: enough to hide an S3 round trip per object
AHEAD = 8  # objects fetched ahead of the one being inserted (bounds memory)


class RestoreError(SafeholdError):
    pass


@dataclass(frozen=True)
class RestoreReport:
    seq: int
    lineage: str
    changes: int
    blobs: int
    bytes: int  # of the bodies restored
    items: int
    read_bytes: int = 0  # of replica objects read (segments, snapshots, blob chunks)
    objects: int = 0


def _user_rows(table: str, rows: list[dict[str, Any]], user: str,
               ids: set[int]) -> list[dict[str, Any]]:
    """The rows of one table that a restore of ``user`` keeps; ``ids`` collects the
    user's principal id from the principal rows, which come before the credentials."""
    homes = tuple(f"{h}/{user}" for h in ("files", "calendars", "addressbooks"))

    def mine(path: str) -> bool:
        return any(path == h or path.startswith(h + "/") for h in homes)
    if table == "principal":
        kept = [p for p in rows if p["name"] == user]
        ids.update(p["id"] for p in kept)
        return kept
    if table == "credential":
        return [c for c in rows if c["principal_id"] in ids]
    if table == "version":
        return [v for v in rows if mine(v["path"])]
    return rows if table in ("change", "pruned") else []


def _filter_user(tables: dict[str, list[dict[str, Any]]], user: str) -> dict[str, list[dict[str, Any]]]:
    ids: set[int] = set()
    return {t: _user_rows(t, tables.get(t, []), user, ids)
            for t in ("principal", "credential", "change", "version", "pruned")}


class _Prefetch:
    """Objects fetched and opened (download, decrypt, decompress; the libraries release
    the GIL for each) by a few threads ahead of the caller, who gets them in order and
    decodes and inserts them meanwhile. At most ``ahead`` objects wait in memory."""

    def __init__(self, replica: ReplicaClient, key: Key, names: list[str],
                 workers: int = FETCHERS, ahead: int = AHEAD) -> None:
        self._replica, self._key, self._names = replica, key, names
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers),
                                        thread_name_prefix="safehold-restore")
        self._ahead = max(1, ahead)
        self.bytes_read = 0

    def _open(self, name: str) -> tuple[bytes, int]:
        data = self._replica.get(name)
        if segment.SNAPSHOT.match(name):
            # Only authenticated: its plaintext (~8x, a whole server's rows) is
            # decompressed as it is read (segment.Reader).
            return self._key.authenticate(data, name), len(data)
        return self._key.open(data, name), len(data)

    def __iter__(self) -> Generator[tuple[str, bytes], None, None]:
        pending: deque[tuple[str, Future[tuple[bytes, int]]]] = deque()
        todo = iter(self._names)
        try:
            for name in todo:
                pending.append((name, self._pool.submit(self._open, name)))
                if len(pending) >= self._ahead:
                    break
            while pending:
                name, fut = pending.popleft()
                plain, size = fut.result()
                self.bytes_read += size
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append((nxt, self._pool.submit(self._open, nxt)))
                yield name, plain
        finally:
            for _, fut in pending:
                fut.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)


def _opened(name: str, plain: bytes) -> dict[str, Any]:
    body = segment.parse(name, plain)
    bad = segment.bad_inline(name, body)
    if bad:
        raise CorruptObject(bad[0])
    return body


class _Loader:
    """Loads the objects of one restore in order, and keeps what crosses objects: the
    bodies the loaded versions need (``wanted``), with --user the inline bodies no
    restored version needed yet (``waiting``: another user's version may have carried
    a body first that this user's later version reuses, content-addressed), and the
    rows of the bodies stored as blob objects."""

    def __init__(self, store: Store, target: int, user: str | None) -> None:
        self.store, self.target, self.user = store, target, user
        self.blob_rows: dict[str, dict[str, Any]] = {}
        self.wanted: set[str] = set()
        self.waiting: dict[str, bytes] = {}
        self.inline_bytes = 0

    def _want(self, versions: list[dict[str, Any]]) -> set[str]:
        new = {v["blob_hash"] for v in versions if v["blob_hash"] and v["seq"] <= self.target}
        self.wanted.update(new)
        return new

    def _carried(self, bodies: Iterable[tuple[str, bytes]], new: set[str]
                 ) -> Iterator[tuple[str, bytes]]:
        """The object's inline bodies to store: those a restored version needs (never
        one that none of them needs), and with --user those that waited for ``new``."""
        for h, data in bodies:
            if h in self.wanted:
                self.waiting.pop(h, None)
                yield h, data
            elif self.user is not None:
                self.waiting[h] = data
        for h in new:
            if h in self.waiting:
                yield h, self.waiting.pop(h)

    def whole(self, body: dict[str, Any]) -> None:
        """A segment (a bounded object), parsed whole: one transaction."""
        tables = body["tables"]
        if self.user is not None:
            tables = _filter_user(tables, self.user)
        new = self._want(tables.get("version", []))
        carried = dict(self._carried(body["inline"], new))
        self.inline_bytes += rep.load(self.store, tables, upto=self.target,
                                      bodies=list(carried.items()))
        for row in body["blobs"]:
            self.blob_rows[row["hash"]] = row

    def stream(self, reader: segment.Reader) -> None:
        """A snapshot (all of a server's rows), read as it is decompressed and loaded
        a batch of rows, then of bodies, per transaction. Versions go in after the
        changes they reference, credentials after their principals (foreign keys, and
        --user keeps the credentials of the user's principal): a snapshot lists them
        in that order, and a table listed earlier than that waits for the end."""
        bound = rep.load_bound(self.store)
        ids: set[int] = set()
        new: set[str] = set()
        done: set[str] = set()
        later: list[tuple[str, list[dict[str, Any]]]] = []

        def load(table: str, rows: list[dict[str, Any]]) -> None:
            if self.user is not None:
                rows = _user_rows(table, rows, self.user, ids)
            if table == "version":
                wanted = self._want(rows)
                if self.user is not None:  # only --user keeps bodies waiting for them
                    new.update(wanted)
            rep.load(self.store, {table: rows}, upto=self.target, bound=bound)
        for table, rows, last in reader.tables():
            needs = _LOADED_AFTER.get(table)
            if needs is not None and needs not in done:
                later.append((table, rows))
            elif rows:
                load(table, rows)
            if last:
                done.add(table)
        for table, rows in later:
            load(table, rows)
        for row in reader.head.get("blobs", []):
            self.blob_rows[row["hash"]] = row
        batch: list[tuple[str, bytes]] = []
        size = 0
        for h, data in self._carried(reader.bodies(), new):
            batch.append((h, data))
            size += len(data)
            if len(batch) >= segment.ROWS or size >= segment.INLINE_BUDGET:
                self.inline_bytes += rep.load(self.store, {}, bodies=batch, bound=bound)
                batch, size = [], 0
        if batch:
            self.inline_bytes += rep.load(self.store, {}, bodies=batch, bound=bound)


_LOADED_AFTER = {"version": "change", "credential": "principal"}


def restore(replica: ReplicaClient, key: Key, store: Store, to_seq: int | None = None,
            user: str | None = None, progress: Progress | None = None,
            snapshot_at_most: int | None = None,
            unshipped: set[int] | None = None) -> RestoreReport:
    """``snapshot_at_most`` starts from an older snapshot than the newest one, so that
    more of the chain is replayed (replica retention proves the whole kept chain).
    ``unshipped``: what ``check_point`` returned for the same point (else it runs here).
    Objects are fetched a few at a time ahead of the one being inserted; each segment
    is one transaction, with the bodies it carries (replica format 2); the snapshot is
    read as it is decompressed, a batch of rows or bodies per transaction, so that a
    restore's memory does not grow with the server (``_Loader.stream``)."""
    man = manifest_mod.read(replica, key)
    if man is None:
        raise RestoreError(f"{replica.url} holds no safehold replica (no manifest.json)")
    target = man.high_water if to_seq is None else min(to_seq, man.high_water)
    if store.last_seq() != 0:
        raise RestoreError("the target database is not empty; restore into a new data directory")
    say = progress or (lambda *_: None)
    loader = _Loader(store, target, user)
    base, names, refs = _chain(replica, man, target, snapshot_at_most)
    if unshipped is None:
        unshipped = _unshipped(replica, key, man, target, user, base, refs)
    chain = {"prev": -1, "done": 0}

    def step(name: str, plain: bytes) -> None:
        if segment.SNAPSHOT.match(name):
            say("snapshot", 0, 1)
            loader.stream(segment.Reader(name, Plaintext(plain, name)))
            return
        body = _opened(name, plain)
        prev, expected = int(body["prev_last"]), chain["prev"]
        if expected >= 0 and prev != expected:
            raise CorruptObject(f"segment chain broken before {name}: it follows seq {prev}, "
                                f"the previous segment ended at {expected}; a segment is missing")
        if expected < 0 and prev > base:
            raise CorruptObject(f"segments between seq {base} and {prev} are missing "
                                f"(first segment found: {name})")
        chain["prev"] = int(body["last"])
        loader.whole(body)
        chain["done"] += 1
        say("segments", chain["done"], len(refs))

    fetch = _Prefetch(replica, key, names)
    objects = iter(fetch)
    try:
        for name, plain in objects:
            step(name, plain)
    finally:
        objects.close()  # on an error too: stops the fetching threads
    if store.last_seq() < target and user is None:
        raise CorruptObject(f"the replica ends at seq {store.last_seq()}, but its manifest "
                            f"claims {target}; segments are missing")
    if unshipped:
        # As they were on the server: pruned (run 0: no prune run of this database).
        rep.load(store, {"pruned": [{"version_id": v, "pruned_at": store.clock(), "run_id": 0}
                                    for v in sorted(unshipped)]})
    needed, missing = rep.missing_blobs(store)
    blob_bytes, blob_read, blob_objects = _load_blob_objects(replica, key, store, missing,
                                                             loader.blob_rows, say)
    rep.resync_sequences(store)
    items = rep.rebuild_heads(store)
    _reindex(store)
    lineage = man.lineage if target == man.high_water and user is None else secrets.token_hex(8)
    rep.set_meta(store, "lineage", lineage)
    if lineage != man.lineage:
        # An earlier point is a new history: devices with newer tokens must resync
        # (DESIGN promise 8) and the old replica is not ours to extend.
        rep.set_meta(store, "restored_from", f"{man.lineage}:{target}")
    return RestoreReport(target, lineage, store.last_seq(), needed, loader.inline_bytes + blob_bytes,
                         items, fetch.bytes_read + blob_read, len(names) + blob_objects)


def _chain(replica: ReplicaClient, man: manifest_mod.Manifest, target: int,
           snapshot_at_most: int | None) -> tuple[int, list[str], list[segment.SegmentRef]]:
    """The objects a restore to ``target`` reads: the newest snapshot it may start from
    (its seq, 0 if none), then the segments after it; their names in that order."""
    limit = target if snapshot_at_most is None else min(target, snapshot_at_most)
    snaps = sorted((s for s in man.snapshots if int(s["seq"]) <= limit), key=lambda s: int(s["seq"]))
    if not snaps and man.snapshots and not any(
            (r := segment.parse_segment(o.path)) and r.first == 1
            for o in replica.list("segments/")):
        oldest = min(int(s["seq"]) for s in man.snapshots)
        raise RestoreError(f"the replica keeps history from seq {oldest} on (older segments "
                           f"were deleted by replica retention); restore to seq {oldest} or later")
    names: list[str] = []
    base = 0
    if snaps:
        names.append(snaps[-1]["name"])
        base = int(snaps[-1]["seq"])
    refs = sorted((r for r in (segment.parse_segment(o.path) for o in replica.list("segments/"))
                   if r is not None and r.last > base), key=lambda r: r.first)
    refs = [r for r in refs if r.first <= target]
    return base, names + [r.name for r in refs], refs


def check_point(replica: ReplicaClient, key: Key, to_seq: int | None = None,
                user: str | None = None) -> set[int]:
    """Whether the replica can rebuild the point ``to_seq``, found before anything is
    written: the versions up to it whose bodies the replica never received (pass them
    to ``restore``), or RestoreError naming the earliest point from which on every
    point can be rebuilt."""
    man = manifest_mod.read(replica, key)
    if man is None:
        raise RestoreError(f"{replica.url} holds no safehold replica (no manifest.json)")
    target = man.high_water if to_seq is None else min(to_seq, man.high_water)
    base, _, refs = _chain(replica, man, target, None)
    return _unshipped(replica, key, man, target, user, base, refs)


@dataclass(frozen=True)
class _Row:
    seq: int
    path: str
    deleted: bool
    bodiless: bool  # its body is neither in its segment nor in an earlier one


def _scan(replica: ReplicaClient, key: Key, refs: list[segment.SegmentRef], upto: int,
          user: str | None) -> tuple[dict[int, _Row], dict[int, float]]:
    """The versions of the segments ``refs`` up to ``upto`` (by id), and when each
    change was committed. A body travels with its version's segment or an earlier one
    (inline, or as a blob object the segment describes)."""
    rows: dict[int, tuple[int, str, bool, str | None]] = {}
    have: set[str] = set()
    at: dict[int, float] = {}
    objects = iter(_Prefetch(replica, key, [r.name for r in refs]))
    try:
        for name, plain in objects:
            body = _opened(name, plain)
            have.update(h for h, _ in body["inline"])
            have.update(str(b["hash"]) for b in body["blobs"])
            at.update((int(c["seq"]), float(c["at"])) for c in body["tables"].get("change", []))
            versions = body["tables"].get("version", [])
            if user is not None:
                versions = _user_rows("version", versions, user, set())
            rows.update((int(v["id"]), (int(v["seq"]), str(v["path"]), bool(v["deleted"]),
                                        v["blob_hash"])) for v in versions
                        if int(v["seq"]) <= upto)
    finally:
        objects.close()
    return ({i: _Row(seq, path, deleted, h is not None and h not in have)
             for i, (seq, path, deleted, h) in rows.items()}, at)


def _unshipped(replica: ReplicaClient, key: Key, man: manifest_mod.Manifest, target: int,
               user: str | None, base: int, refs: list[segment.SegmentRef]) -> set[int]:
    """Versions whose bodies history retention dropped before the replica first
    received them: the shipper ships every body the database holds, so a body that
    no segment carries or describes was gone. Only snapshots list such versions as
    pruned; replayed from the first segment, they are found here. An item whose
    content at ``target`` is one of them cannot be rebuilt: refused."""
    if base > 0:
        return set()  # the snapshot lists the pruned versions
    try:
        rows, _ = _scan(replica, key, refs, target, user)
    except SafeholdError:
        return set()  # a damaged or unreachable object: the restore reports it on reaching it
    bodiless = {i for i, r in rows.items() if r.bodiless}
    lost = _lost(rows, target) if bodiless else []
    if not lost:
        return bodiless
    # Where every point restores again: read on to the first snapshot (or the end).
    horizon = min([int(s["seq"]) for s in man.snapshots] or [man.high_water])
    later = [r for r in (segment.parse_segment(o.path) for o in replica.list("segments/"))
             if r is not None and r.first <= horizon]
    try:
        rows, at = _scan(replica, key, sorted(later, key=lambda r: r.first), horizon, user)
    except SafeholdError as exc:
        where = f"which later points can be restored is unknown ({exc})"
    else:
        since = _restores_from(rows, horizon, bool(man.snapshots))
        when = (f" ({datetime.fromtimestamp(at[since], UTC).isoformat(timespec='seconds')})"
                if since in at else "")
        where = (f"every point from seq {since}{when} on can be restored: restore to it or "
                 "later" if since is not None else "no point of this replica can be rebuilt whole")
    more = f" (and that of {len(lost) - 1} more item(s))" if len(lost) > 1 else ""
    raise RestoreError(
        f"the replica cannot rebuild seq {target}: the content {lost[0]} had at that point"
        f"{more} was dropped by history retention before this replica first received it; "
        + where)


def _lost(rows: dict[int, _Row], upto: int) -> list[str]:
    """The live items at ``upto`` whose content then is a body the replica lacks."""
    head: dict[str, _Row] = {}
    for i in sorted(rows):
        if rows[i].seq <= upto:
            head[rows[i].path] = rows[i]
    return sorted(p for p, r in head.items() if r.bodiless and not r.deleted)


def _restores_from(rows: dict[int, _Row], horizon: int, snapshot: bool) -> int | None:
    """The earliest seq from which on every point up to ``horizon`` has the content
    of each live item (``horizon``, a snapshot, restores whole), or None."""
    bad: set[str] = set()
    since: int | None = 0
    by_seq: dict[int, list[_Row]] = {}
    for i in sorted(rows):
        by_seq.setdefault(rows[i].seq, []).append(rows[i])
    for seq in sorted(by_seq):
        for r in by_seq[seq]:
            if r.bodiless and not r.deleted:
                bad.add(r.path)
            else:
                bad.discard(r.path)
        if bad:
            since = None
        elif since is None:
            since = seq
    return horizon if since is None and snapshot else since


def _load_blob_objects(replica: ReplicaClient, key: Key, store: Store, hashes: list[str],
                       rows: dict[str, dict[str, Any]], say: Progress) -> tuple[int, int, int]:
    """Bodies stored as blob objects (large ones, and every body of a format-1
    replica), fetched ahead and inserted in batches of many bodies per commit.
    Returns (body bytes, object bytes read, objects read)."""
    names: list[str] = []
    for h in hashes:
        row = rows.get(h)
        if row is None:
            raise CorruptObject(f"no blob description for {h} in the replica")
        names += [segment.blob_chunk_name(key, h, idx) for idx in range(int(row["chunks"]))]
    fetch = _Prefetch(replica, key, names)
    chunks = iter(fetch)
    total_bytes = 0
    pending: list[tuple[dict[str, Any], list[bytes]]] = []
    pending_bytes = 0
    try:
        for i, h in enumerate(hashes):
            row = rows[h]
            data = [next(chunks)[1] for _ in range(int(row["chunks"]))]
            pending.append((row, data))
            pending_bytes += sum(len(c) for c in data)
            total_bytes += int(row["size"])
            if len(pending) >= 500 or pending_bytes > 64 << 20 or i == len(hashes) - 1:
                rep.load_blobs(store, pending)  # one commit per batch, not per body
                pending, pending_bytes = [], 0
            if i % 100 == 0 or i == len(hashes) - 1:
                say("blobs", i + 1, len(hashes))
    finally:
        chunks.close()
    return total_bytes, fetch.bytes_read, len(names)


def _reindex(store: Store) -> None:
    """Index the live calendar and address-book items, a page of heads at a time
    (rep.live_items): not a list of every item, nor of every index row, at once."""
    from safehold.store.schema import item_index
    rows: list[dict[str, Any]] = []

    def write(at_least: int) -> None:
        nonlocal rows
        while rows and len(rows) >= at_least:
            chunk, rows = rows[:1000], rows[1000:]
            store._write(lambda c: c.execute(sa.insert(item_index), chunk))  # noqa: B023 - runs now
    after = ""
    while page := rep.live_items(store, after, 500):
        after = page[-1][0]
        todo = [(path, kind, h) for path, kind, h in page
                if kind in ("calendar", "addressbook") and h is not None]
        # One query per 500 single-chunk bodies (a connection per body cost more than
        # the parsing); larger bodies are read chunk by chunk.
        small = blobs_mod.read_small(store.engine, sorted({h for _, _, h in todo})) if todo else {}
        for path, parent_kind, blob_hash in todo:
            data = small.get(blob_hash)
            try:
                ix = index_for(parent_kind, data if data is not None
                               else blobs_mod.read_all(store.engine, blob_hash), stored=True)
            except InvalidItem:
                continue
            if ix is not None:
                rows.append(index_row(path, ix))  # with a recurring event's instances
        write(1000)
    write(1)


def seq_for_time(replica: ReplicaClient, key: Key, when: float) -> int:
    """The last change committed at or before ``when``, read from the segments."""
    refs = sorted((r for r in (segment.parse_segment(o.path) for o in replica.list("segments/"))
                   if r is not None), key=lambda r: r.first)
    best = 0
    objects = iter(_Prefetch(replica, key, [r.name for r in refs]))
    try:
        for name, plain in objects:
            body = segment.parse(name, plain)
            for row in body["tables"]["change"]:
                if float(row["at"]) > when:
                    return best
                best = int(row["seq"])
        return best
    finally:
        objects.close()
