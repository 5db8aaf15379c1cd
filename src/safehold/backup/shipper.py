"""The shipper: tails the change log and ships new segments (and the blobs they
reference) to every replica within about a second of commit. Blobs go first, then
the segment, then the manifest: a replica never names data it does not hold."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from safehold.backup import manifest as manifest_mod
from safehold.backup import segment
from safehold.backup.crypto import Key, KeyError_
from safehold.backup.replica_client import ReplicaClient, ReplicaError
from safehold.errors import SafeholdError
from safehold.store import replication as rep
from safehold.store.repo import Store

log = logging.getLogger("safehold.backup")
GATHER_SECONDS = 0.1  # async mode: how long a pass waits for more commits after a wake
# Async mode: while writes keep coming, a pass begins at most this often. Each pass
# has a fixed cost (manifest read and write, replica bookkeeping commits that queue
# on the write lock, CPU under the GIL): one pass per 0.1 s took ~4 ms of every PUT at
# 80 PUT/s (py-spy, docs/benchmarks.md). The lag stays well under the 2 s RPO.
PASS_SPACING = 0.5
BATCH = 2000  # changes per segment at most
MARK_EVERY = 200  # blobs uploaded per write that records them as shipped


class LineageMismatch(SafeholdError):
    pass


@dataclass
class ShipResult:
    shipped_seq: int
    segments: int
    blobs: int


@dataclass
class _Build:
    """A snapshot being built and uploaded by a child process while segments ship."""
    seq: int
    thread: threading.Thread
    built: BuiltSnapshot | None = None
    error: BaseException | None = None
    seconds: float = 0.0  # how long the child took


SNAPSHOT_RETRY_SECONDS = 60.0  # after a failed background snapshot
MARK_INLINE_BATCH = 1000  # hashes of a snapshot's inline set unpacked and recorded at a time
# Blob rows and small bodies a snapshot reads at a time (a multiple of fastsql.IN_MAX, so
# that the rows come in the order one read of them all gives).
SNAPSHOT_ROWS = 4096
_HASH_CHARS = 64  # a blob's hash: sha256, hex


@dataclass
class BuiltSnapshot:
    """A snapshot object ``make_snapshot`` uploaded, and what ``note_built`` records of
    it: what a child process hands back to the server."""
    entry: dict[str, Any]  # its manifest entry
    inline: bytes | None  # the hashes of the bodies it carries, concatenated; None: the
    # manifest named it already and the object was there (nothing to record)
    uploaded: list[str]  # blobs uploaded for it, not yet recorded as shipped


class Shipper:
    def __init__(self, store: Store, key: Key, replicas: list[ReplicaClient], lineage: str,
                 snapshot_every: int = 5000, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.key = key
        self.replicas = replicas
        self.lineage = lineage
        self.snapshot_every = snapshot_every
        self.clock = clock
        self._wake = threading.Event()
        self._urgent = threading.Event()  # a sync-mode write waits: ship without gathering
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._accounts: dict[str, tuple[int, str | None]] = {}
        # The server sets this: build scheduled snapshots in a child process
        # (backup/child_process.py), so that the serving process never holds a whole log.
        # It returns the uploaded snapshot (make_snapshot); the shipper keeps shipping
        # meanwhile, and records and names it when it is done.
        self.snapshot_in: Callable[[str, int], BuiltSnapshot] | None = None
        self._building: dict[str, _Build] = {}  # replica url -> the snapshot in flight
        self._snapshot_failed_at: dict[str, float] = {}

    # -- one replica, one pass ------------------------------------------------------

    def _manifest(self, replica: ReplicaClient) -> manifest_mod.Manifest:
        found = manifest_mod.read(replica, self.key)
        if found is None:
            return manifest_mod.Manifest(self.lineage, self.key.fingerprint)
        if found.lineage != self.lineage:
            raise LineageMismatch(
                f"the replica {replica.url} holds lineage {found.lineage}, this server is "
                f"{self.lineage}; use an empty replica (it belongs to another server, or this "
                "server was restored to an earlier point)")
        return found

    def ship_once(self, replica: ReplicaClient, progress: Callable[[int], None] | None = None
                  ) -> ShipResult:
        state = rep.replica_row(self.store, replica.url)
        man = self._manifest(replica)
        self._finish_snapshot(replica, man)
        # The manifest is the truth about what the replica holds, not our own row: a
        # process killed after writing the manifest but before saving its row would
        # otherwise ship an overlapping segment (a duplicate) at its next start. When
        # the replica lost objects or was replaced, this ships again from what it holds.
        shipped = man.high_water
        saved = -1 if state is None else int(state.get("shipped_seq", -1))
        segments = blobs = 0
        adopted = False
        while True:
            batch = rep.changes_after(self.store, shipped, BATCH,
                                      known_accounts=self._accounts_digest(replica, shipped))
            changes = batch["change"]
            if not changes:
                break
            if not adopted:
                adopted = True
                if self._adopt_orphans(replica, man):
                    shipped = man.high_water
                    continue
                if shipped == 0:
                    # A new, emptied or replaced replica holds no body: forget what an
                    # earlier one carried inline.
                    rep.forget_inline(self.store, replica.url, keep=None)
            first, last = int(changes[0]["seq"]), int(changes[-1]["seq"])
            hashes = sorted({v["blob_hash"] for v in batch["version"] if v["blob_hash"]})
            snap_seq = self._newest_snapshot(man)
            # While a newer snapshot is in flight, carry every small body: the set known
            # from the current snapshot onwards may hold bodies the new one leaves out
            # (their versions were pruned before it), and once it is named, retention may
            # delete everything before it.
            dedupe = replica.url not in self._building
            with self.store.reading():  # its three reads in one transaction, one checkout
                inline, object_rows = self._pack(replica, snap_seq,
                                                 rep.blob_rows(self.store, hashes), dedupe)
            blobs += self._ship_blobs(replica, [r["hash"] for r in object_rows])
            name = segment.segment_name(first, last)
            digest = batch.pop("accounts_digest")
            body = {"format": segment.FORMAT, "lineage": self.lineage, "first": first,
                    "last": last, "prev_last": shipped, "tables": batch, "blobs": object_rows}
            replica.put_once(name, segment.encode(self.key, name, body, inline))
            man.high_water, man.last_segment = last, name
            manifest_mod.write(replica, self.key, man)
            # Only once the manifest names the segment: an orphan segment the next pass
            # deletes must not leave its bodies counted as shipped.
            rep.record_segment(self.store, replica.url, snap_seq, [h for h, _ in inline],
                               shipped_seq=last, shipped_at=self.clock(), last_error=None,
                               error_at=None)
            shipped = last
            self._accounts[replica.url] = (last, digest)
            segments += 1
            saved = last
            with self._progress:
                self._progress.notify_all()
            if progress:
                progress(last)
            if len(changes) < BATCH:
                # Caught up with what was committed when the batch was read. Writes that
                # arrived since wait for the next pass: chasing them here shipped one
                # segment (and three bookkeeping commits) per change or two under a
                # steady load, and the pass never ended (PASS_SPACING never applied).
                break
        if saved != shipped:
            rep.save_replica_row(self.store, replica.url, shipped_seq=shipped,
                                 shipped_at=self.clock(), last_error=None, error_at=None)
        self._maybe_snapshot(replica, man, shipped)
        return ShipResult(shipped, segments, blobs)

    @staticmethod
    def _newest_snapshot(man: manifest_mod.Manifest) -> int:
        return max([int(s["seq"]) for s in man.snapshots] or [0])

    def _pack(self, replica: ReplicaClient, snap_seq: int, rows: list[dict[str, Any]],
              dedupe: bool = True) -> tuple[list[tuple[str, bytes]], list[dict[str, Any]]]:
        """Split a segment's bodies: small ones not yet findable from the newest
        snapshot onwards (all of them unless ``dedupe``) travel inline (up to the
        segment's budget); the rows of the rest -- large bodies, and small ones past the
        budget -- name blob objects."""
        small = [r["hash"] for r in rows if int(r["size"]) <= segment.INLINE_MAX
                 and int(r["chunks"]) == 1]
        known = (rep.inline_known(self.store, replica.url, snap_seq, small)
                 if small and dedupe else set())
        todo = [h for h in small if h not in known]
        data = rep.small_bodies(self.store, todo) if todo else {}
        inline: list[tuple[str, bytes]] = []
        budget = segment.INLINE_BUDGET
        for h in todo:
            body = data.get(h)
            if body is not None and len(body) <= budget:
                inline.append((h, body))
                budget -= len(body)
        carried = known | {h for h, _ in inline}
        return inline, [r for r in rows if r["hash"] not in carried]

    def _accounts_digest(self, replica: ReplicaClient, shipped: int) -> str | None:
        """The digest of the principal and credential tables as the segment ending at
        ``shipped`` left them, if this process wrote that segment: a segment carries the
        tables only when they changed since (a restore keeps the last copy it read)."""
        last, digest = self._accounts.get(replica.url, (-1, None))
        return digest if last == shipped else None

    def _adopt_orphans(self, replica: ReplicaClient, man: manifest_mod.Manifest) -> bool:
        """A segment written just before a crash (or a failed manifest write) is on the
        replica but not in its manifest. Writing the next range anew would overlap it:
        adopt it instead when it continues the chain, and delete it when it does not
        (nothing names it). True if the manifest moved forward."""
        moved = False
        while True:
            after = segment.segment_name(man.high_water, 10**20 - 1)
            found = [r for r in (segment.parse_segment(o.path)
                                 for o in replica.list("segments/", after=after))
                     if r and r.first == man.high_water + 1]
            best = None
            for ref in sorted(found, key=lambda r: r.last, reverse=True):
                try:
                    body = segment.decode(self.key, ref.name, replica.get(ref.name))
                    fits = (int(body["prev_last"]) == man.high_water
                            and body.get("lineage") == self.lineage and best is None)
                except (SafeholdError, ValueError, KeyError):
                    fits = False
                if fits:
                    best = ref
                else:
                    log.warning("deleting %s from %s: written before a crash, not part of the "
                                "chain", ref.name, replica.url)
                    replica.delete(ref.name)
            if best is None:
                return moved
            log.info("adopting %s on %s: written before a crash, not yet in the manifest",
                     best.name, replica.url)
            man.high_water, man.last_segment = best.last, best.name
            manifest_mod.write(replica, self.key, man)
            moved = True

    def _ship_blobs(self, replica: ReplicaClient, hashes: list[str]) -> int:
        return len(self._upload_blobs(replica, hashes, mark=True))

    def _upload_blobs(self, replica: ReplicaClient, hashes: list[str], mark: bool = False
                      ) -> list[str]:
        """Upload the blobs of ``hashes`` not yet recorded as shipped; return their
        hashes. ``mark``: record them as shipped too (else the caller does)."""
        done = rep.shipped_blobs(self.store, replica.url, hashes)  # once, not per hash
        todo = [h for h in hashes if h not in done]
        uploaded: list[str] = []
        for row in rep.blob_rows(self.store, todo):
            for idx, data in enumerate(rep.chunks(self.store, row["hash"], int(row["chunks"]))):
                name = segment.blob_chunk_name(self.key, row["hash"], idx)
                replica.put_once(name, self.key.seal(data, name))
            uploaded.append(row["hash"])
            # Marked in groups, after the upload: each mark is a write, and writes queue
            # behind every client's (one write lock for all processes on PostgreSQL), so
            # one per blob let the shipper fall ever further behind under load. A crash
            # before a mark only uploads those blobs again.
            if mark and len(uploaded) >= MARK_EVERY:
                rep.mark_blobs(self.store, replica.url, uploaded)
                uploaded = []
        if mark:
            rep.mark_blobs(self.store, replica.url, uploaded)
        return todo

    def _mark_uploaded(self, replica: ReplicaClient, hashes: list[str]) -> None:
        for i in range(0, len(hashes), MARK_EVERY):
            rep.mark_blobs(self.store, replica.url, hashes[i:i + MARK_EVERY])

    def _maybe_snapshot(self, replica: ReplicaClient, man: manifest_mod.Manifest, shipped: int,
                        force: bool = False) -> None:
        last = self._newest_snapshot(man)
        if shipped == 0 or shipped == last or (not force and shipped - last < self.snapshot_every):
            return
        if self.snapshot_in is None or force:
            self.snapshot(replica, man, shipped)
            return
        url = replica.url
        failed = self._snapshot_failed_at.get(url, -SNAPSHOT_RETRY_SECONDS)
        if url in self._building or time.monotonic() - failed < SNAPSHOT_RETRY_SECONDS:
            return
        # In the background: segments keep shipping while the child reads the whole log
        # (seconds at 100,000 items); a pass names the snapshot when it is uploaded.
        build_in = self.snapshot_in

        def run() -> None:
            began = time.monotonic()
            try:
                job.built = build_in(url, shipped)
            except BaseException as exc:  # noqa: BLE001 - reported by _finish_snapshot
                job.error = exc
            job.seconds = time.monotonic() - began
            self._wake.set()

        job = _Build(shipped, threading.Thread(target=run, name="safehold-snapshot", daemon=True))
        self._building[url] = job
        # Logged with its end, so that a slow request can be placed against it (the child
        # competes with the server for the machine's cores while it runs).
        log.info("snapshot of %s at seq %d: building in a child process", url, shipped)
        job.thread.start()

    def _finish_snapshot(self, replica: ReplicaClient, man: manifest_mod.Manifest) -> None:
        """Record what the snapshot a child uploaded carries and name it in the manifest
        (holding the shipping turn, like every manifest write of this server)."""
        job = self._building.get(replica.url)
        if job is None or job.thread.is_alive():
            return
        del self._building[replica.url]
        if job.error is not None or job.built is None:
            self._snapshot_failed_at[replica.url] = time.monotonic()
            log.error("snapshot of %s at seq %d failed (retried in %d s): %s", replica.url,
                      job.seq, SNAPSHOT_RETRY_SECONDS, job.error)
            return
        self.note_built(replica, man, job.built)
        self.record_snapshot(replica, man, job.built.entry)
        log.info("snapshot of %s at seq %d: uploaded (%d bytes) in %.1f s", replica.url, job.seq,
                 int(job.built.entry.get("size") or 0), job.seconds)

    def build_snapshot(self, replica: ReplicaClient, man: manifest_mod.Manifest, seq: int
                       ) -> dict[str, Any]:
        """Write the snapshot object at ``seq`` (a full copy of the log up to it, so that a
        restore replays little), record what it carries (``note_built``) and return its
        manifest entry; ``record_snapshot`` names it. Needs no shipping turn: it writes
        only objects nothing names yet, and the inline set keyed by ``seq``, which the
        shipper consults only once the manifest names this snapshot as the newest."""
        built = self.make_snapshot(replica, man, seq)
        self.note_built(replica, man, built)
        return built.entry

    def make_snapshot(self, replica: ReplicaClient, man: manifest_mod.Manifest, seq: int
                      ) -> BuiltSnapshot:
        """``build_snapshot`` without writing to the database: only reads and uploads.
        A child process builds the server's snapshots with this, and the server records
        what it carries (``note_built``): a write from another process holds SQLite's
        write lock, which the server's writers wait for by polling (SQLite's busy
        handler sleeps up to 100 ms a try), while the niced child, preempted with the
        lock held, takes its time. At 10,000 events a PUT waited 189-254 ms for a
        snapshot child's ~17 bookkeeping commits (and the checkpoints after them); the
        server's own writes queue with the requests' instead (Store._write)."""
        name = segment.snapshot_name(seq)
        entry = next((s for s in man.snapshots if s.get("name") == name), None)
        if entry is not None and replica.exists(name):
            return BuiltSnapshot(entry, None, [])
        # Built as it is written, never whole in memory: the tables go as JSON to a
        # temporary file, the bodies come from the database a batch at a time, and only
        # the compressed object is held (segment.encode_snapshot).
        self.store.tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.store.tmp_dir) as tables:
            tables_size, hashes = rep.snapshot_json(self.store, seq, tables)
            # Every small body an unpruned version needs travels inside the snapshot, so
            # that the segments before it may go (replica retention) and later segments
            # need not carry those bodies again (segment.py, the dedupe rule).
            small: list[tuple[str, int]] = []
            object_rows: list[dict[str, Any]] = []
            for i in range(0, len(hashes), SNAPSHOT_ROWS):
                for r in rep.blob_rows(self.store, hashes[i:i + SNAPSHOT_ROWS]):
                    if int(r["size"]) <= segment.INLINE_MAX and int(r["chunks"]) == 1:
                        small.append((r["hash"], int(r["size"])))
                    else:
                        object_rows.append(r)
            uploaded = self._upload_blobs(replica, [r["hash"] for r in object_rows])
            head = {"format": segment.FORMAT, "lineage": self.lineage, "seq": seq}
            data = segment.encode_snapshot(self.key, name, head, tables, tables_size, object_rows,
                                           small, self._small_bodies(name, small))
        replica.put_once(name, data)
        # One bytes object, not a list of str: the server unpacks it a batch at a time,
        # so that its resident size never holds a string per body (100,000 at that scale).
        carried = "".join(h for h, _ in small).encode("ascii")
        return BuiltSnapshot({"name": name, "seq": seq, "size": len(data), "at": self.clock()},
                             carried, uploaded)

    def _small_bodies(self, name: str, small: list[tuple[str, int]]) -> Iterator[bytes]:
        """The bodies of ``small`` in its order, read a batch at a time. One the
        database no longer holds (retention pruned it since its row was read) fails
        this snapshot, which is built again later, rather than leaving it out."""
        for i in range(0, len(small), SNAPSHOT_ROWS):
            part = [h for h, _ in small[i:i + SNAPSHOT_ROWS]]
            found = rep.small_bodies(self.store, part)
            for h in part:
                if h not in found:
                    raise SafeholdError(f"{name}: the body {h[:16]}… went away while the "
                                        "snapshot was built; it is built again later")
                yield found[h]

    def note_built(self, replica: ReplicaClient, man: manifest_mod.Manifest,
                   built: BuiltSnapshot) -> None:
        """Record in the database what ``make_snapshot`` uploaded: its blobs as shipped,
        and the set of bodies it carries inline (keyed by its seq). Before
        ``record_snapshot`` names it: the shipper reads only the set of the newest
        snapshot the manifest names."""
        if built.inline is None:
            return  # named and present already: recorded when it was built
        self._mark_uploaded(replica, built.uploaded)
        # Sets of older snapshots are never consulted again (forgetting only makes the
        # shipper carry a body twice); the newest named one still is.
        rep.forget_inline(self.store, replica.url, keep=self._newest_snapshot(man))
        seq, step = int(built.entry["seq"]), _HASH_CHARS * MARK_INLINE_BATCH
        for i in range(0, len(built.inline), step):
            part = built.inline[i:i + step].decode("ascii")
            rep.mark_inline_set(self.store, replica.url, seq,
                                [part[j:j + _HASH_CHARS] for j in range(0, len(part), _HASH_CHARS)])

    def record_snapshot(self, replica: ReplicaClient, man: manifest_mod.Manifest,
                        entry: dict[str, Any], pin_until: float | None = None) -> None:
        man.snapshots = [s for s in man.snapshots if s.get("name") != entry["name"]]
        if pin_until is not None:
            # A snapshot at this seq may exist already (write-once): pin that one.
            entry["pinned_until"] = max(float(entry.get("pinned_until") or 0), pin_until)
        man.snapshots.append(entry)
        manifest_mod.write(replica, self.key, man)
        rep.save_replica_row(self.store, replica.url, snapshot_seq=int(entry["seq"]))

    def snapshot(self, replica: ReplicaClient, man: manifest_mod.Manifest, seq: int,
                 pin_until: float | None = None) -> str:
        """Build, upload and name the snapshot at ``seq`` now (the caller holds the
        shipping turn). ``pin_until`` (epoch seconds) marks it ``pinned_until`` in the
        manifest: replica retention must keep it until then (the pre-upgrade snapshot,
        docs/upgrades.md)."""
        entry = self.build_snapshot(replica, man, seq)
        self.record_snapshot(replica, man, entry, pin_until)
        return str(entry["name"])

    def ship_all(self, snapshot: bool = False) -> dict[str, ShipResult | str]:
        out: dict[str, ShipResult | str] = {}
        for replica in self.replicas:
            try:
                result = self.ship_once(replica)
                if snapshot:
                    man = self._manifest(replica)
                    self._maybe_snapshot(replica, man, result.shipped_seq, force=True)
                out[replica.url] = result
            except (ReplicaError, KeyError_, LineageMismatch, SafeholdError) as exc:
                rep.save_replica_row(self.store, replica.url, last_error=str(exc),
                                     error_at=self.clock())
                log.error("replication to %s failed: %s", replica.url, exc)
                out[replica.url] = str(exc)
        return out

    # -- the background thread --------------------------------------------------------

    def start(self, interval: float = 0.5) -> None:
        def run() -> None:
            backoff = interval
            while not self._stop.is_set():
                began = time.monotonic()
                with self.store.shipping_turn() as mine:
                    # Another process may be shipping; we take over when it stops.
                    results = self.ship_all() if mine else {}
                failed = any(isinstance(r, str) for r in results.values())
                backoff = min(backoff * 2, 30.0) if failed else interval
                if self._wake.wait(backoff):
                    # Woken by a commit: gather the burst it may start into one segment
                    # (fewer objects, fewer bookkeeping commits competing with writers),
                    # and under a steady load no more than one pass per PASS_SPACING. A
                    # sync-mode write (urgent) waits for neither.
                    self._urgent.wait(max(GATHER_SECONDS, began + PASS_SPACING - time.monotonic()))
                self._wake.clear()
                self._urgent.clear()
        self._thread = threading.Thread(target=run, name="safehold-shipper", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        self._wake.set()

    def wait_shipped(self, seq: int, timeout: float) -> bool:
        """Sync mode: block until every replica holds ``seq`` (or time out)."""
        deadline = time.monotonic() + timeout
        self._urgent.set()
        self.nudge()
        with self._progress:
            while True:
                rows = {r["url"]: int(r["shipped_seq"]) for r in rep.replica_rows(self.store)}
                if all(rows.get(r.url, 0) >= seq for r in self.replicas):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._progress.wait(min(left, 0.2))

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
