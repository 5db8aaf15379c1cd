"""Replica format 2 (backup/segment.py): small bodies travel inside segments and
snapshots, large ones stay blob objects; a body already findable from the newest
snapshot onwards is not shipped again; a replica that mixes format-1 and format-2
objects restores; and replica retention keeps a body that a kept version needs
although the segment that first carried it is deleted."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from safehold.backup import drill as drill_mod
from safehold.backup import manifest as manifest_mod
from safehold.backup import retention as replica_retention
from safehold.backup import segment
from safehold.backup.crypto import CorruptObject, Key, read_kit
from safehold.backup.replica_client import ReplicaClient, open_replica
from safehold.backup.restore import restore
from safehold.backup.shipper import BuiltSnapshot, Shipper
from safehold.store import blobs
from safehold.store import engine as engine_mod
from safehold.store import replication as rep
from safehold.store.repo import Store
from tests.conftest import DATABASES
from tests.conftest import _env_for as env_for
from tests.support.server import Server, add_user, cli, run

BOOK = "/dav/addressbooks/alice/contacts"
BIG = os.urandom(200 << 10)  # above INLINE_MAX: a blob object of its own


def card(i: int, tag: str = "") -> bytes:
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:u-{i}{tag}\r\nFN:Person {i}{tag}\r\n"
            "END:VCARD\r\n").encode()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _segments(replica: ReplicaClient, key: Key) -> list[dict[str, object]]:
    refs = sorted((r for r in (segment.parse_segment(o.path) for o in replica.list("segments/"))
                   if r), key=lambda r: r.first)
    return [segment.decode(key, r.name, replica.get(r.name)) for r in refs]


def _inline(body: dict[str, object]) -> set[str]:
    return {h for h, _ in body["inline"]}  # type: ignore[attr-defined]


def _put(srv: Server, items: dict[str, bytes], user: str = "alice") -> None:
    srv.start()
    try:
        with srv.client(user) as c:
            for path, body in items.items():
                assert c.put(path, content=body).status_code in (201, 204), path
    finally:
        srv.stop()


def _restore_digest(replica: ReplicaClient, key: Key, seq: int, **kw: object
                    ) -> tuple[dict[str, str], dict[str, bytes], int]:
    """Restore into a scratch SQLite store: its digest at ``seq``, every body it
    holds (hash -> bytes, each checked against its hash), and the objects read."""
    tmp = Path(tempfile.mkdtemp(prefix="format2-"))
    engine = engine_mod.create(f"sqlite:///{tmp / 'r.db'}")
    try:
        engine_mod.ensure_schema(engine)
        scratch = Store(engine, tmp / "tmp")
        report = restore(replica, key, scratch, to_seq=seq, **kw)  # type: ignore[arg-type]
        bodies = {h: blobs.read_all(engine, h) for h in rep.referenced_blobs(scratch)}
        assert all(_sha(b) == h for h, b in bodies.items())
        return rep.digest_at(scratch, seq), bodies, report.objects
    finally:
        engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(params=DATABASES)
def loaded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, Store, Key]]:
    """A stopped server with 40 contacts, one large file and a duplicate body; its
    store and backup key, for shipping in-process to fresh replicas."""
    data = tmp_path / "data"
    env = env_for(request.param, request)
    add_user(data, "alice", env=env)
    srv = Server(data, env=env).start()
    try:
        with srv.client() as c:
            for i in range(40):
                assert c.put(f"{BOOK}/{i}.vcf", content=card(i)).status_code == 201
            assert c.put("/dav/files/alice/big.bin", content=BIG).status_code == 201
            # The same bytes as contact 3 (a file: an address book refuses a second UID).
            assert c.put("/dav/files/alice/copy.vcf", content=card(3)).status_code == 201
    finally:
        srv.stop()
    store = Store(engine_mod.create(srv.database_url), data / "tmp")
    key = Key(base64.b64decode((data / "backup.key").read_text()))
    yield srv, store, key
    store.engine.dispose()


def test_small_bodies_travel_inside_segments(loaded: tuple[Server, Store, Key],
                                             tmp_path: Path) -> None:
    srv, store, key = loaded
    url = f"file://{tmp_path / 'fresh'}"
    replica = open_replica(url)
    result = Shipper(store, key, [replica], store.lineage(), snapshot_every=10**9).ship_all()
    assert not isinstance(result[url], str), result
    # Only the large body is a blob object (one 1 MiB chunk); every card is inline.
    assert {o.path for o in replica.list("blobs/")} == {segment.blob_chunk_name(key, _sha(BIG), 0)}
    bodies = _segments(replica, key)
    assert all(b["format"] == 2 for b in bodies)
    assert json.loads(replica.get(manifest_mod.NAME))["format"] == 2  # older releases refuse it
    carried = [h for b in bodies for h in _inline(b)]
    small = {_sha(card(i)) for i in range(40)}
    assert set(carried) == small and len(carried) == len(small)  # each body once
    assert [r["hash"] for b in bodies for r in b["blobs"]] == [_sha(BIG)]  # type: ignore[attr-defined]
    digest, restored, objects = _restore_digest(replica, key, store.last_seq())
    assert digest == rep.digest_at(store, store.last_seq())
    assert restored[_sha(BIG)] == BIG and restored[_sha(card(7))] == card(7)
    assert objects <= len(bodies) + 1  # segments plus the one blob chunk
    assert drill_mod.verify(replica, key) == []

    # A snapshot carries the small bodies; a body it carries is not shipped again.
    _put(srv, {f"{BOOK}/new.vcf": card(1000)})
    shipper = Shipper(store, key, [replica], store.lineage(), snapshot_every=1)
    shipper.ship_all(snapshot=True)
    man = manifest_mod.read(replica, key)
    assert man is not None and man.snapshots
    snap = segment.decode(key, man.snapshots[-1]["name"], replica.get(man.snapshots[-1]["name"]))
    assert _inline(snap) == small | {_sha(card(1000))}
    _put(srv, {"/dav/files/alice/again.vcf": card(5), f"{BOOK}/fresh.vcf": card(2000)})
    Shipper(store, key, [replica], store.lineage(), snapshot_every=10**9).ship_all()
    last = _segments(replica, key)[-1]
    assert _inline(last) == {_sha(card(2000))}
    digest, restored, _ = _restore_digest(replica, key, store.last_seq())
    assert digest == rep.digest_at(store, store.last_seq()) and restored[_sha(card(5))] == card(5)


def test_a_replica_mixing_format_1_and_format_2_restores(
        loaded: tuple[Server, Store, Key], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    srv, store, key = loaded
    url = f"file://{tmp_path / 'mixed'}"
    replica = open_replica(url)
    with monkeypatch.context() as m:  # what safehold 0.1.0 wrote: one object per body
        m.setattr(segment, "FORMAT", 1)
        m.setattr(segment, "INLINE_MAX", -1)
        m.setattr(manifest_mod, "FORMAT", 1)
        Shipper(store, key, [replica], store.lineage(), snapshot_every=1).ship_all(snapshot=True)
    assert json.loads(replica.get(manifest_mod.NAME))["format"] == 1
    old_seq = store.last_seq()
    _put(srv, {**{f"{BOOK}/{i}.vcf": card(i) for i in range(40, 50)},
               f"{BOOK}/3.vcf": card(3, "b")})
    Shipper(store, key, [replica], store.lineage(), snapshot_every=10**9).ship_all()
    formats = [b["format"] for b in _segments(replica, key)]
    assert formats[0] == 1 and formats[-1] == 2, formats
    assert json.loads(replica.get(manifest_mod.NAME))["format"] == 2
    assert _inline(_segments(replica, key)[-1]) >= {_sha(card(45)), _sha(card(3, "b"))}
    assert drill_mod.verify(replica, key) == []
    for seq in (store.last_seq(), old_seq):  # from the format-1 snapshot, and before it
        digest, restored, _ = _restore_digest(replica, key, seq)
        assert digest == rep.digest_at(store, seq)
    assert restored[_sha(card(7))] == card(7)


def test_a_damaged_inline_body_is_named(loaded: tuple[Server, Store, Key],
                                        tmp_path: Path) -> None:
    """A segment whose inline body does not hash to its name (written with the right
    key, so it authenticates: a bug, not an attacker) is reported by verify, and a
    restore refuses it rather than store wrong bytes."""
    srv, store, key = loaded
    replica = open_replica(f"file://{tmp_path / 'bad'}")
    Shipper(store, key, [replica], store.lineage(), snapshot_every=10**9).ship_all()
    ref = next(r for r in (segment.parse_segment(o.path) for o in replica.list("segments/")) if r)
    body = segment.decode(key, ref.name, replica.get(ref.name))
    inline = [(h, d.replace(b"Person", b"Persom")) for h, d in body["inline"]]
    body.pop("inline")
    root = Path(replica.url.removeprefix("file://"))
    (root / ref.name).write_bytes(segment.encode(key, ref.name, body, inline))
    problems = drill_mod.verify(replica, key)
    assert problems and ref.name in problems[0] and "does not match its hash" in problems[0]
    with pytest.raises(CorruptObject, match="does not match its hash"):
        _restore_digest(replica, key, store.last_seq())


def test_retention_keeps_bodies_kept_versions_need(tmp_path: Path) -> None:
    """Body X is first carried by segment S1, its version pruned (history retention)
    before snapshot P1, which therefore does not carry it; a new item with the bytes
    of X after P1 must carry it again. Body Y is carried by P1, so a new item with
    the bytes of Y after P1 is not shipped again. Replica retention then deletes S1:
    the restore still has both."""
    data = tmp_path / "data"
    add_user(data, "alice")
    url = f"file://{tmp_path / 'offsite'}"
    kit = tmp_path / "kit.json"
    cli(data, "backup", "init", "--replica", url, "--kit", str(kit))
    x, y = card(1, "-x"), card(2, "-y")
    srv = Server(data).start()
    try:
        with srv.client() as c:
            assert c.put(f"{BOOK}/a.vcf", content=x).status_code == 201
            assert c.put(f"{BOOK}/c.vcf", content=y).status_code == 201
        cli(data, "backup", "now")  # P0, and S1 carrying X and Y
        with srv.client() as c:  # X's version is no longer the last of its day
            assert c.put(f"{BOOK}/a.vcf", content=card(1, "-z")).status_code == 204
        cli(data, "prune", env={"SAFEHOLD_RETENTION_DAYS": "0"})
        cli(data, "backup", "now")  # P1: carries Y, not X (pruned, its body dropped)
        key, _ = read_kit(kit)
        replica = open_replica(url)
        man = manifest_mod.read(replica, key)
        assert man is not None
        p1 = max(man.snapshots, key=lambda s: int(s["seq"]))
        snap = segment.decode(key, p1["name"], replica.get(p1["name"]))
        assert _sha(y) in _inline(snap) and _sha(x) not in _inline(snap)
        with srv.client() as c:
            assert c.put(f"{BOOK}/b.vcf", content=x).status_code == 201
            assert c.put("/dav/files/alice/d.vcf", content=y).status_code == 201
        cli(data, "backup", "now")
        after = [b for b in _segments(replica, key) if int(b["first"]) > int(p1["seq"])]  # type: ignore[call-overload]
        carried = set().union(*(_inline(b) for b in after))
        assert _sha(x) in carried and _sha(y) not in carried, carried
        before = {o.path for o in replica.list("segments/")}
        done = cli(data, "backup", "prune", "--keep-snapshots", "1", "--keep-days", "0")
        assert "kept chain restored" in done.stdout, done.stdout + done.stderr
        assert before - {o.path for o in replica.list("segments/")}  # S1 and others went
    finally:
        srv.stop()
    restored = tmp_path / "restored"
    run("restore", "--from", url, "--kit", str(kit), "--into", str(restored))
    again = Server(restored).start()
    try:
        with again.client() as c:
            assert c.get(f"{BOOK}/b.vcf").content == x
            assert c.get("/dav/files/alice/d.vcf").content == y
            assert c.get(f"{BOOK}/c.vcf").content == y
            assert c.get(f"{BOOK}/a.vcf").content == card(1, "-z")
    finally:
        again.stop()


def test_restoring_one_user_keeps_a_body_another_user_shipped_first(tmp_path: Path) -> None:
    """Bob's segment carries a body; Alice later stores the same bytes (not shipped
    again). Restoring Alice alone must keep that body and store none of Bob's."""
    data = tmp_path / "data"
    add_user(data, "alice")
    add_user(data, "bob")
    shared, own = b"the same bytes in two accounts\n", b"only bob has these\n"
    srv = Server(data)
    _put(srv, {"/dav/files/bob/shared.txt": shared, "/dav/files/bob/own.txt": own}, "bob")
    store = Store(engine_mod.create(srv.database_url), data / "tmp")
    try:
        key = Key(base64.b64decode((data / "backup.key").read_text()))
        replica = open_replica(f"file://{tmp_path / 'two-users'}")
        Shipper(store, key, [replica], store.lineage(), snapshot_every=10**9).ship_all()
        _put(srv, {"/dav/files/alice/copy.txt": shared})
        Shipper(store, key, [replica], store.lineage(), snapshot_every=10**9).ship_all()
        bodies = _segments(replica, key)
        assert _sha(shared) in _inline(bodies[0]) and not _inline(bodies[-1])
        tmp = tmp_path / "alice-only"
        tmp.mkdir()
        engine = engine_mod.create(f"sqlite:///{tmp / 'r.db'}")
        try:
            engine_mod.ensure_schema(engine)
            scratch = Store(engine, tmp / "tmp")
            restore(replica, key, scratch, user="alice")
            with engine.connect() as conn:
                stored = set(conn.exec_driver_sql("SELECT hash FROM blob").scalars())
            assert stored == {_sha(shared)}
            assert blobs.read_all(engine, _sha(shared)) == shared
        finally:
            engine.dispose()
    finally:
        store.engine.dispose()


@pytest.mark.parametrize("database", DATABASES)
def test_segments_ship_while_a_snapshot_is_built(database: str, tmp_path: Path,
                                                 request: pytest.FixtureRequest) -> None:
    """A scheduled snapshot is built in the background (a child process in the server;
    a gated thread here): segments keep shipping meanwhile, and they carry every small
    body -- X's version was pruned before the new snapshot P1, so P1 lacks X, while the
    set known from the old snapshot P0 has it; leaving X out of the segment after P1
    would lose it once retention deletes everything before P1. Once P1 is named, a body
    it carries (Y) is not shipped again, and the chain from P1 alone restores."""
    data = tmp_path / "data"
    env = env_for(database, request)
    add_user(data, "alice", env=env)
    srv = Server(data, env=env)
    x, y = card(1, "-x"), card(2, "-y")
    _put(srv, {f"{BOOK}/a.vcf": x, f"{BOOK}/c.vcf": y})
    store = Store(engine_mod.create(srv.database_url), data / "tmp")
    try:
        key = Key(base64.b64decode((data / "backup.key").read_text()))
        url = f"file://{tmp_path / 'offsite'}"
        replica = open_replica(url)
        shipper = Shipper(store, key, [replica], store.lineage(), snapshot_every=1)
        shipper.ship_all(snapshot=True)  # P0 carries X and Y
        _put(srv, {f"{BOOK}/a.vcf": card(1, "-z")})  # X's version is superseded...
        cli(data, "prune", env={**env, "SAFEHOLD_RETENTION_DAYS": "0"})  # ...and pruned

        gate, started = threading.Event(), threading.Event()

        def build(at_url: str, seq: int) -> BuiltSnapshot:
            started.set()
            assert gate.wait(60)
            found = manifest_mod.read(replica, key)
            assert found is not None and at_url == url
            return shipper.make_snapshot(replica, found, seq)

        shipper.snapshot_in = build
        shipper.ship_all()  # ships the rewrite of a.vcf, then starts P1 in the background
        assert started.wait(30)
        p1_seq = store.last_seq()
        _put(srv, {f"{BOOK}/b.vcf": x})  # X again, while P1 is in flight
        shipper.ship_all()
        man = manifest_mod.read(replica, key)
        assert man is not None and man.high_water == store.last_seq()  # shipping went on
        assert max(int(s["seq"]) for s in man.snapshots) < p1_seq  # P1 not named yet
        assert _sha(x) in _inline(_segments(replica, key)[-1])

        gate.set()
        deadline = time.monotonic() + 60
        while max(int(s["seq"]) for s in man.snapshots) < p1_seq:
            assert time.monotonic() < deadline, "the snapshot was never named"
            time.sleep(0.1)
            shipper.ship_all()
            man = manifest_mod.read(replica, key)
            assert man is not None
        p1 = segment.decode(key, segment.snapshot_name(p1_seq),
                            replica.get(segment.snapshot_name(p1_seq)))
        assert _sha(y) in _inline(p1) and _sha(x) not in _inline(p1)
        _put(srv, {"/dav/files/alice/d.vcf": y})  # P1 carries Y: not shipped again
        shipper.ship_all()
        assert _sha(y) not in _inline(_segments(replica, key)[-1])

        plan = replica_retention.run(store, replica, key, 1, 0.0)
        assert plan.proven and plan.deleted, plan.detail
        assert not [r for r in (segment.parse_segment(o.path) for o in replica.list("segments/"))
                    if r and r.last <= p1_seq]  # everything before P1 is gone
        digest, restored, _ = _restore_digest(replica, key, store.last_seq())
        assert digest == rep.digest_at(store, store.last_seq())
        assert restored[_sha(x)] == x and restored[_sha(y)] == y
        assert drill_mod.verify(replica, key) == []
    finally:
        store.engine.dispose()
