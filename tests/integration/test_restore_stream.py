"""A restore reads a snapshot as it is decompressed and loads its rows and bodies a
batch at a time (backup/restore.py, _Loader.stream; segment.Reader). The database it
builds must be the one the whole-document path built (every object parsed whole and
loaded in one transaction, as segments still are), table by table, row for row:
whole server, one user (--user), and a point between the snapshot and the end."""

from __future__ import annotations

import base64
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from safehold.backup import manifest as manifest_mod
from safehold.backup import restore as restore_mod
from safehold.backup import segment
from safehold.backup.crypto import Key
from safehold.backup.replica_client import ReplicaClient, open_replica
from safehold.backup.shipper import Shipper
from safehold.store import engine as engine_mod
from safehold.store import retention
from safehold.store.repo import Store
from safehold.store.schema import metadata
from tests.conftest import DATABASES
from tests.conftest import _env_for as env_for
from tests.support.server import Server, add_user

BOOK = "/dav/addressbooks/{u}/contacts"
CAL = "/dav/calendars/{u}/personal"
BIG = bytes(range(256)) * 300  # 75 KiB: above segment.INLINE_MAX, a blob object
RECURRING = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n"
             b"UID:daily\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260101T100000Z\r\n"
             b"DURATION:PT1H\r\nRRULE:FREQ=DAILY;COUNT=3\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def _card(u: str, i: int, tag: str = "") -> bytes:
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{u}{i}\r\nFN:{u} {i}{tag}\r\nEND:VCARD\r\n".encode()


def _event(u: str, i: int) -> bytes:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{u}e{i}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260105T09{i % 60:02d}00Z\r\n"
            "DURATION:PT1H\r\nSUMMARY:\u00e9t\u00e9\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n").encode()


def _put(srv: Server, user: str, items: dict[str, bytes | None]) -> None:
    srv.start()
    try:
        with srv.client(user) as c:
            for path, body in items.items():
                r = c.delete(path) if body is None else c.put(path, content=body)
                assert r.status_code in (201, 204), (path, r.status_code)
    finally:
        srv.stop()


@pytest.fixture(scope="module", params=DATABASES)
def replicated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[ReplicaClient, Key, int, int]]:
    """A replica of two users' cards, events (one recurring), a large file and the same
    bytes under two paths, with versions pruned by history retention; a snapshot, then
    segments with edits, deletions and bodies the snapshot carried already. Yields the
    replica, its key, the snapshot's seq and the last seq."""
    data = tmp_path_factory.mktemp("stream") / "data"
    env = env_for(request.param, request)
    add_user(data, "alice", env=env)
    add_user(data, "bob", env=env)
    srv = Server(data, env=env)
    for u in ("alice", "bob"):
        _put(srv, u, {**{f"{BOOK.format(u=u)}/{i}.vcf": _card(u, i) for i in range(25)},
                      **{f"{CAL.format(u=u)}/{i}.ics": _event(u, i) for i in range(12)},
                      f"{CAL.format(u=u)}/daily.ics": RECURRING,
                      f"/dav/files/{u}/big.bin": BIG,
                      f"/dav/files/{u}/same.vcf": _card(u, 7)})
    _put(srv, "alice", {f"{BOOK.format(u='alice')}/3.vcf": _card("alice", 3, " edited"),
                        f"{BOOK.format(u='alice')}/4.vcf": None})
    key = Key(base64.b64decode((data / "backup.key").read_text()))
    replica = open_replica(f"file://{data.parent / 'replica'}")
    later = Store(engine_mod.create(srv.database_url), data / "tmp",
                  clock=lambda: time.time() + 400 * 86400)
    try:
        assert retention.prune(later, 365).versions > 0  # the snapshot lists pruned rows
    finally:
        later.engine.dispose()
    store = Store(engine_mod.create(srv.database_url), data / "tmp")
    try:
        Shipper(store, key, [replica], store.lineage(), snapshot_every=1).ship_all(snapshot=True)
        snap_seq = store.last_seq()
        _put(srv, "bob", {f"{BOOK.format(u='bob')}/1.vcf": _card("bob", 1, " edited"),
                          f"{BOOK.format(u='bob')}/2.vcf": None,
                          "/dav/files/bob/again.vcf": _card("alice", 5),  # carried by the snapshot
                          f"{BOOK.format(u='bob')}/new.vcf": _card("bob", 100)})
        _put(srv, "alice", {f"{BOOK.format(u='alice')}/new.vcf": _card("alice", 100)})
        Shipper(store, key, [replica], store.lineage(), snapshot_every=10**9).ship_all()
        man = manifest_mod.read(replica, key)
        assert man is not None and [int(s["seq"]) for s in man.snapshots] == [snap_seq]
        yield replica, key, snap_seq, store.last_seq()
    finally:
        store.engine.dispose()


def _whole(self: restore_mod._Loader, reader: segment.Reader) -> None:
    """The whole-document path for a snapshot: parsed whole, loaded in one call."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for table, rows, _last in reader.tables():
        tables.setdefault(table, []).extend(rows)
    self.whole({**reader.head, "tables": tables, "inline": list(reader.bodies())})


def _restored(replica: ReplicaClient, key: Key, **kw: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Restore into a scratch SQLite database; every table's rows, sorted."""
    tmp = Path(tempfile.mkdtemp(prefix="stream-"))
    engine = engine_mod.create(f"sqlite:///{tmp / 'r.db'}")
    try:
        engine_mod.ensure_schema(engine)
        restore_mod.restore(replica, key, Store(engine, tmp / "tmp"), **kw)
        with engine.connect() as c:
            out = {t.name: sorted(c.execute(sa.select(t)).all(), key=repr)
                   for t in metadata.sorted_tables}
    finally:
        engine.dispose()
    # A restore to an earlier point or of one user starts a new lineage (random).
    out["meta"] = [r for r in out["meta"] if r[0] not in ("lineage", "restored_from")]
    return out


@pytest.mark.parametrize("point", ["whole server", "one user", "between"])
def test_the_streamed_restore_builds_the_same_database(
        replicated: tuple[ReplicaClient, Key, int, int], point: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    replica, key, snap_seq, last = replicated
    kw: dict[str, Any] = {"whole server": {}, "one user": {"user": "bob"},
                          "between": {"to_seq": (snap_seq + last) // 2}}[point]
    with monkeypatch.context() as m:
        m.setattr(restore_mod._Loader, "stream", _whole)
        expected = _restored(replica, key, **kw)
    monkeypatch.setattr(segment, "ROWS", 7)  # many batches of rows and of bodies
    streamed = _restored(replica, key, **kw)
    assert streamed.keys() == expected.keys()
    for table, rows in expected.items():
        assert streamed[table] == rows, table
    assert expected["pruned"] and expected["item_index"] and expected["blob"]
    if point == "one user":
        assert {r.name for r in expected["principal"]} == {"bob"}


def test_heads_are_the_latest_version_of_every_path(
        replicated: tuple[ReplicaClient, Key, int, int]) -> None:
    """rebuild_heads (one INSERT ... SELECT) against the rows it used to build in Python."""
    replica, key, _, _ = replicated
    tables = _restored(replica, key)
    versions = sorted((r._asdict() for r in tables["version"]), key=lambda v: v["id"])
    latest: dict[str, dict[str, Any]] = {}
    created: dict[str, float] = {}
    for v in versions:
        latest[v["path"]] = v
        created[v["path"]] = min(created.get(v["path"], v["created_at"]), v["created_at"])
    expected = sorted(((v["path"], v["parent"], v["owner_id"], v["kind"], v["id"], v["blob_hash"],
                        v["size"], v["etag"], v["content_type"], v["props"], v["seq"],
                        created[v["path"]], v["created_at"])
                       for v in latest.values() if not v["deleted"]), key=repr)
    assert [tuple(r) for r in tables["resource"]] == expected
