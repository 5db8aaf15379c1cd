"""Keeping a replica healthy: two-phase replica retention (`safehold backup prune`),
the rotating verify pass, what status and /metrics say about both, crash leftovers
the shipper adopts, and segments that carry the account tables only when they changed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from safehold import config
from safehold.backup import child_process
from safehold.backup import manifest as manifest_mod
from safehold.backup import segment
from safehold.backup import verify as verify_mod
from safehold.backup.crypto import Key, read_kit
from safehold.backup.replica_client import ObjectInfo, ReplicaClient, ReplicaError, open_replica
from safehold.backup.shipper import Shipper
from safehold.store import engine as engine_mod
from safehold.store import replication as rep
from safehold.store.repo import Store
from tests.support.server import Server, add_user, cli, run

BOOK = "/dav/addressbooks/alice/contacts"


def card(i: int, rev: int = 0) -> bytes:
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:u-{i}\r\nFN:Person {i} rev {rev}\r\n"
            "END:VCARD\r\n").encode()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Server, str, Path]]:
    """A server shipping to an off-data-dir folder replica; the CLI takes snapshots."""
    data = tmp_path / "data"
    add_user(data, "alice")
    url = f"file://{tmp_path / 'offsite'}"
    kit = tmp_path / "kit.json"
    cli(data, "backup", "init", "--replica", url, "--kit", str(kit))
    srv = Server(data).start()
    yield srv, url, kit
    srv.stop()


def _rounds(srv: Server, rounds: int, per: int = 8) -> dict[str, bytes]:
    """Write, then take a snapshot with `backup now`, ``rounds`` times; later rounds
    overwrite earlier items, so old bodies become unreferenced by newer snapshots.
    Each round also rewrites a file too large to travel inside a segment (replica
    format 2), so that old blob objects exist too."""
    written: dict[str, bytes] = {}
    with srv.client() as c:
        for r in range(rounds):
            for i in range(per):
                path = f"{BOOK}/{i}.vcf"
                assert c.put(path, content=card(i, r)).status_code in (201, 204)
                written[path] = card(i, r)
            big = f"round {r} ".encode() * (100_000 // 8)
            assert c.put("/dav/files/alice/big.bin", content=big).status_code in (201, 204)
            written["/dav/files/alice/big.bin"] = big
            cli(srv.data_dir, "backup", "now")
    return written


def _objects(url: str) -> set[str]:
    return {o.path for o in open_replica(url).list("")}


def _status(srv: Server) -> dict[str, object]:
    return dict(json.loads(cli(srv.data_dir, "status", "--json", check=False).stdout))


def test_prune_dry_run_then_prove_and_delete(setup: tuple[Server, str, Path],
                                             tmp_path: Path) -> None:
    srv, url, kit = setup
    written = _rounds(srv, 4)
    # History retention drops the content of old versions; the snapshot taken after it
    # no longer names their bodies, so replica retention may delete those.
    cli(srv.data_dir, "prune", env={"SAFEHOLD_RETENTION_DAYS": "0"})
    written.update(_rounds(srv, 1, per=1))
    before = _objects(url)
    dry = cli(srv.data_dir, "backup", "prune", "--dry-run", "--keep-snapshots", "1",
              "--keep-days", "0")
    assert "dry run" in dry.stdout and "would delete" in dry.stdout
    assert _objects(url) == before  # a dry run deletes nothing

    done = cli(srv.data_dir, "backup", "prune", "--keep-snapshots", "1", "--keep-days", "0")
    assert "kept chain restored" in done.stdout, done.stdout + done.stderr
    after = _objects(url)
    gone = before - after
    assert any(n.startswith("segments/") for n in gone)
    assert any(n.startswith("snapshots/") for n in gone)
    assert any(n.startswith("blobs/") for n in gone)  # bodies only old versions named
    key, _ = read_kit(kit)
    man = manifest_mod.read(open_replica(url), key)
    assert man is not None and len(man.snapshots) == 1
    assert all(s["name"] in after for s in man.snapshots)

    # What remains verifies, drills, and restores the newest state byte for byte.
    assert "authenticates" in cli(srv.data_dir, "backup", "verify").stdout
    assert cli(srv.data_dir, "drill", check=False).returncode == 0
    st = _status(srv)
    rep_ = st["replicas"][0]  # type: ignore[index]
    assert rep_["retention"]["ok"] and rep_["objects"] == len(after)
    restored = tmp_path / "restored"
    run("restore", "--from", url, "--kit", str(kit), "--into", str(restored))
    again = Server(restored).start()
    try:
        with again.client() as c:
            for path, body in written.items():
                assert c.get(path).content == body, path
        # An item rewritten with the bytes of a deleted body ships that body again.
        with srv.client() as c:
            assert c.put(f"{BOOK}/0.vcf", content=card(0, 0)).status_code == 204
    finally:
        again.stop()
    cli(srv.data_dir, "backup", "now")
    assert "authenticates" in cli(srv.data_dir, "backup", "verify").stdout
    # Restores before the oldest kept snapshot are refused with the reason.
    early = run("restore", "--from", url, "--kit", str(kit), "--into", str(tmp_path / "early"),
                "--seq", "3", check=False)
    assert early.returncode != 0 and "replica retention" in early.stderr


def test_prune_deletes_nothing_when_the_kept_chain_does_not_restore(
        setup: tuple[Server, str, Path]) -> None:
    srv, url, kit = setup
    _rounds(srv, 3)
    with srv.client() as c:  # changes after the newest snapshot: kept segments
        for i in range(3):
            c.put(f"{BOOK}/late{i}.vcf", content=card(100 + i))
    key, _ = read_kit(kit)
    replica = open_replica(url)
    deadline = time.monotonic() + 30
    while True:
        man = manifest_mod.read(replica, key)
        assert man is not None
        newest = max(int(s["seq"]) for s in man.snapshots)
        later = [r for r in (segment.parse_segment(o.path) for o in replica.list("segments/"))
                 if r and r.last > newest]
        if later:
            break
        assert time.monotonic() < deadline
        time.sleep(0.3)
    kept_segment = later[0]
    path = Path(url.removeprefix("file://")) / kept_segment.name
    path.write_bytes(path.read_bytes()[:-7])  # a kept segment is damaged
    before = _objects(url)
    bad = cli(srv.data_dir, "backup", "prune", "--keep-snapshots", "1", "--keep-days", "0",
              check=False)
    assert bad.returncode == 1 and "nothing was deleted" in bad.stderr, bad.stderr
    assert before <= _objects(url)  # (the shipper may have added objects meanwhile)
    st = _status(srv)
    assert st["replicas"][0]["retention"]["ok"] is False  # type: ignore[index]


def test_pinned_snapshots_survive_retention(setup: tuple[Server, str, Path]) -> None:
    srv, url, kit = setup
    _rounds(srv, 4)
    key, _ = read_kit(kit)
    replica = open_replica(url)
    man = manifest_mod.read(replica, key)
    assert man is not None
    oldest = min(man.snapshots, key=lambda s: int(s["seq"]))
    oldest["pinned_until"] = time.time() + 3600  # as the upgrade gate records it
    srv.stop()  # no shipper rewrites the manifest meanwhile
    manifest_mod.write(replica, key, man)
    cli(srv.data_dir, "backup", "prune", "--keep-snapshots", "1", "--keep-days", "0")
    after = _objects(url)
    assert oldest["name"] in after
    man2 = manifest_mod.read(replica, key)
    assert man2 is not None and oldest["name"] in {s["name"] for s in man2.snapshots}
    # Everything after the pinned snapshot is kept too: the chain from it restores.
    assert cli(srv.data_dir, "drill", check=False).returncode == 0
    srv.start()


def test_rotating_verify_covers_everything_and_turns_red_on_damage(
        setup: tuple[Server, str, Path]) -> None:
    srv, url, kit = setup
    _rounds(srv, 3)
    key, _ = read_kit(kit)
    replica = open_replica(url)
    store = Store(engine_mod.create(srv.database_url), srv.data_dir / "tmp")
    try:
        total = sum(1 for _ in replica.list("")) - 1  # the manifest is authenticated apart
        seen = 0
        for i in range(1000):
            state = verify_mod.run_slice(store, replica, key, 4, now=1000.0 + i)
            seen += 4
            if state.last_full_pass:
                break
        assert state.last_full_pass and not state.last_pass_problems
        assert seen >= total
        assert verify_mod.slice_size(10_000, 7) * 7 * 24 * 0.75 >= 10_000

        segs = sorted(o.path for o in replica.list("segments/"))
        root = Path(url.removeprefix("file://"))
        data = bytearray((root / segs[1]).read_bytes())
        data[len(data) // 2] ^= 0x40
        (root / segs[1]).write_bytes(bytes(data))
        blob = next(o.path for o in replica.list("blobs/"))
        (root / blob).unlink()
        state = verify_mod.run_slice(store, replica, key, None)
        text = "\n".join(state.last_pass_problems)
        assert segs[1] in text and blob in text, text
    finally:
        store.engine.dispose()
    st = _status(srv)
    assert st["verdict"] == "red"
    messages = st["messages"]
    assert isinstance(messages, list) and any("verify pass" in m for m in messages)
    with httpx.Client(base_url=srv.url) as anon:
        metrics = anon.get("/metrics").text
    assert 'safehold_replica_verify_problems{replica="' + url + '"} 2.0' in metrics, metrics
    for name in ("safehold_replica_objects", "safehold_replica_bytes",
                 "safehold_replica_verify_progress_ratio", "safehold_next_drill_timestamp_seconds",
                 "safehold_replica_shipped_seq", "safehold_last_drill_timestamp_seconds"):
        assert name in metrics


class _ManifestFailsOnce:
    """The replica seam with one fault: the first manifest write after a segment
    fails, as when the process dies between the two (the outermost seam, STYLE 10)."""

    def __init__(self, inner: ReplicaClient) -> None:
        self.inner, self.url, self.armed = inner, inner.url, True

    def put_once(self, path: str, data: bytes) -> bool:
        return self.inner.put_once(path, data)

    def put(self, path: str, data: bytes) -> None:
        if path == manifest_mod.NAME and self.armed and any(self.inner.list("segments/")):
            self.armed = False
            raise ReplicaError("injected: the process died before the manifest was written")
        self.inner.put(path, data)

    def get(self, path: str) -> bytes:
        return self.inner.get(path)

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def list(self, prefix: str, after: str | None = None) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix, after)

    def delete(self, path: str) -> None:
        self.inner.delete(path)


def test_a_segment_written_before_a_crash_is_adopted_not_duplicated(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_user(data, "alice")
    srv = Server(data).start()  # the default replica, shipping on its own
    with srv.client() as c:
        for i in range(5):
            c.put(f"{BOOK}/{i}.vcf", content=card(i))
    srv.stop()
    store = Store(engine_mod.create(srv.database_url), data / "tmp")
    try:
        key = Key(__import__("base64").b64decode((data / "backup.key").read_text()))
        url = f"file://{tmp_path / 'fresh'}"
        faulty = _ManifestFailsOnce(open_replica(url))
        shipper = Shipper(store, key, [faulty], store.lineage(), snapshot_every=10**9)
        first = shipper.ship_all()[url]
        assert isinstance(first, str) and "injected" in first  # segment on, manifest not
        orphan = {o.path for o in faulty.list("segments/")}
        assert len(orphan) == 1
        srv.start()  # more changes, so the next range would differ from the orphan's
        with srv.client() as c:
            c.put(f"{BOOK}/late.vcf", content=card(99))
        srv.stop()
        result = Shipper(store, key, [faulty], store.lineage(), snapshot_every=10**9).ship_all()
        assert not isinstance(result[url], str), result
        refs = sorted((r for r in (segment.parse_segment(o.path) for o in faulty.list("segments/"))
                       if r), key=lambda r: r.first)
        assert orphan <= {r.name for r in refs}
        assert all(b.first == a.last + 1 for a, b in zip(refs, refs[1:], strict=False)), refs
        assert refs[-1].last == store.last_seq()
        assert not verify_mod._structure(faulty, key, {o.path: o.size for o in faulty.list("")})
    finally:
        store.engine.dispose()


def test_segments_carry_accounts_only_when_they_change(setup: tuple[Server, str, Path]) -> None:
    srv, url, kit = setup
    with srv.client() as c:
        for i in range(6):
            c.put(f"{BOOK}/{i}.vcf", content=card(i))
            time.sleep(0.7)  # one segment per change, more or less
    add_user(srv.data_dir, "bob")
    with srv.client() as c:
        c.put(f"{BOOK}/after-bob.vcf", content=card(50))
    deadline = time.monotonic() + 30
    while _status(srv)["replicas"][0]["shipped_seq"] != _status(srv)["last_seq"]:  # type: ignore[index]
        assert time.monotonic() < deadline
        time.sleep(0.3)
    key, _ = read_kit(kit)
    replica = open_replica(url)
    bodies = [segment.decode(key, r.name, replica.get(r.name)) for r in sorted(
        (r for r in (segment.parse_segment(o.path) for o in replica.list("segments/")) if r),
        key=lambda r: r.first)]
    carrying = [b for b in bodies if "principal" in b["tables"]]
    assert len(bodies) >= 4 and len(carrying) < len(bodies)
    assert "principal" in bodies[0]["tables"]
    assert any({p["name"] for p in b["tables"]["principal"]} >= {"alice", "bob"}
               for b in carrying)
    # The restore still knows both users and their passwords.
    assert cli(srv.data_dir, "drill", check=False).returncode == 0


def test_server_retention_runs_in_a_child_process(setup: tuple[Server, str, Path]) -> None:
    """The server's scheduled replica retention (child_process.retention, as App runs it
    after a drill) proves and deletes from a child process while the server's shipper
    keeps taking its turn, and records its result like `safehold backup prune`."""
    srv, url, kit = setup
    _rounds(srv, 3)
    cli(srv.data_dir, "prune", env={"SAFEHOLD_RETENTION_DAYS": "0"})
    before = _objects(url)
    settings = config.load(overrides={"data_dir": str(srv.data_dir)})
    store = Store(engine_mod.create(settings.db_url()), settings.tmp_dir)
    try:
        key, _ = read_kit(kit)
        plan = child_process.retention(settings, store, open_replica(url), key, 1, 0.0)
    finally:
        store.engine.dispose()
    assert plan.proven and plan.deleted, plan.detail
    assert set(plan.delete) == before - _objects(url)
    with srv.client() as c:  # the server kept serving and shipping meanwhile
        assert c.put(f"{BOOK}/after.vcf", content=card(99)).status_code == 201
    assert _status(srv)["replicas"][0]["retention"]["ok"]  # type: ignore[index]
    assert cli(srv.data_dir, "drill", check=False).returncode == 0


def test_a_snapshot_child_writes_nothing_the_server_records_what_it_carries(
        setup: tuple[Server, str, Path], tmp_path: Path) -> None:
    """The server's snapshot child (child_process.snapshot) only reads and uploads: a
    write from another process holds SQLite's write lock, and the server's PUTs waited
    for it by polling while the niced child, preempted, held it. The shipper records
    the inline set when it names the snapshot."""
    srv, _url, kit = setup
    with srv.client() as c:
        for i in range(5):
            assert c.put(f"{BOOK}/{i}.vcf", content=card(i)).status_code == 201
    settings = config.load(overrides={"data_dir": str(srv.data_dir)})
    store = Store(engine_mod.create(settings.db_url()), settings.tmp_dir)
    try:
        key, _ = read_kit(kit)
        url = f"file://{tmp_path / 'second'}"  # not the server's: this shipper alone
        replica = open_replica(url)
        shipper = Shipper(store, key, [replica], store.lineage(), snapshot_every=1)
        shipper.ship_all(snapshot=True)  # P0, built here, records its set
        old = shipper._newest_snapshot(shipper._manifest(replica))
        shipper.snapshot_every = 10**9  # no more snapshots built here
        with srv.client() as c:
            assert c.put(f"{BOOK}/new.vcf", content=card(9)).status_code == 201
        shipper.ship_all()
        seq = store.last_seq()
        hashes = sorted({str(v["blob_hash"]) for v in rep.snapshot(store, seq)["version"]
                         if v["blob_hash"]})
        assert rep.inline_known(store, url, old, hashes)
        built = child_process.snapshot(settings, key.fingerprint, url, seq)
        assert built.inline is not None and len(built.inline) == 64 * len(hashes)
        assert replica.exists(str(built.entry["name"]))
        assert not rep.inline_known(store, url, seq, hashes)  # the child wrote none
        assert rep.inline_known(store, url, old, hashes)  # nor forgot any
        man = shipper._manifest(replica)
        shipper.note_built(replica, man, built)
        shipper.record_snapshot(replica, man, built.entry)
        assert rep.inline_known(store, url, seq, hashes) == set(hashes)
        assert shipper._newest_snapshot(shipper._manifest(replica)) == seq
    finally:
        store.engine.dispose()
