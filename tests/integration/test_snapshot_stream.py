"""A snapshot is built as it is written (Shipper.make_snapshot): tables streamed as JSON
to a temporary file, bodies read a batch at a time, only the compressed object held.
Its plaintext must be exactly what encoding the whole snapshot in memory gave."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from safehold.backup import manifest as manifest_mod
from safehold.backup import segment
from safehold.backup.crypto import Key
from safehold.backup.replica_client import open_replica
from safehold.backup.shipper import Shipper
from safehold.errors import SafeholdError
from safehold.store import engine as engine_mod
from safehold.store import replication as rep
from safehold.store.repo import Store
from tests.conftest import DATABASES
from tests.conftest import _env_for as env_for
from tests.support.server import Server, add_user

CAL = "/dav/calendars/alice/personal"
BOOK = "/dav/addressbooks/alice/contacts"
BIG = bytes(range(256)) * 300  # 75 KiB: above segment.INLINE_MAX, a blob object


def _card(i: int) -> bytes:
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:c{i}\r\nFN:Person {i}\r\nN:{i};P;;;\r\n"
            "END:VCARD\r\n").encode()


def _event(i: int) -> bytes:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:e{i}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260105T09{i % 60:02d}00Z\r\n"
            "DURATION:PT1H\r\nSUMMARY:\u00e9t\u00e9\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n").encode()


@pytest.fixture(params=DATABASES)
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Key]]:
    """A stopped server's store holding cards (one edited, one deleted), events, a
    large file and two paths with the same bytes; and its backup key."""
    data = tmp_path / "data"
    env = env_for(request.param, request)
    add_user(data, "alice", env=env)
    add_user(data, "bob", env=env)
    srv = Server(data, env=env).start()
    try:
        with srv.client() as c:
            for i in range(30):
                assert c.put(f"{BOOK}/{i}.vcf", content=_card(i)).status_code == 201
                assert c.put(f"{CAL}/{i}.ics", content=_event(i)).status_code == 201
            assert c.put(f"{BOOK}/3.vcf", content=_card(1003)).status_code == 204
            assert c.delete(f"{BOOK}/4.vcf").status_code == 204
            assert c.put("/dav/files/alice/big.bin", content=BIG).status_code == 201
            assert c.put("/dav/files/alice/same.vcf", content=_card(7)).status_code == 201
    finally:
        srv.stop()
    store = Store(engine_mod.create(srv.database_url), data / "tmp")
    yield store, Key(base64.b64decode((data / "backup.key").read_text()))
    store.engine.dispose()


def _in_memory_plaintext(store: Store, lineage: str, seq: int) -> bytes:
    """The snapshot's plaintext as the whole-in-memory build wrote it (before streaming)."""
    tables = rep.snapshot(store, seq)
    gone = {r["version_id"] for r in tables["pruned"]}
    hashes = sorted({v["blob_hash"] for v in tables["version"]
                     if v["blob_hash"] and v["id"] not in gone})
    rows = rep.blob_rows(store, hashes)
    small = [r["hash"] for r in rows
             if int(r["size"]) <= segment.INLINE_MAX and int(r["chunks"]) == 1]
    data_of = rep.small_bodies(store, small)
    body: dict[str, Any] = {"format": segment.FORMAT, "lineage": lineage, "seq": seq,
                            "tables": tables, "blobs": [r for r in rows if r["hash"] not in data_of]}
    key = Key(b"k" * 32)
    name = segment.snapshot_name(seq)
    return key.open(segment.encode(key, name, body, [(h, data_of[h]) for h in small]), name)


def test_the_streamed_snapshot_is_the_in_memory_one(stored: tuple[Store, Key],
                                                    tmp_path: Path) -> None:
    store, key = stored
    replica = open_replica(f"file://{tmp_path / 'replica'}")
    shipper = Shipper(store, key, [replica], store.lineage(), snapshot_every=10**9)
    assert not isinstance(shipper.ship_all()[replica.url], str)
    man = manifest_mod.read(replica, key)
    assert man is not None
    seq = store.last_seq()
    built = shipper.make_snapshot(replica, man, seq)
    name = segment.snapshot_name(seq)
    plain = key.open(replica.get(name), name)
    assert plain == _in_memory_plaintext(store, store.lineage(), seq)
    body = segment.parse(name, plain)
    assert segment.bad_inline(name, body) == []
    assert [r["hash"] for r in body["blobs"]] == [rep.blob_rows(store, [
        v["blob_hash"] for v in body["tables"]["version"] if v["path"].endswith("big.bin")])[0]["hash"]]
    assert len(body["inline"]) == 30 + 30 + 1  # every distinct small body once (3.vcf twice)
    assert built.inline == "".join(h for h, _ in body["inline"]).encode()
    assert built.entry["size"] == len(replica.get(name))


def test_a_body_gone_while_building_fails_the_snapshot(stored: tuple[Store, Key],
                                                       tmp_path: Path) -> None:
    store, key = stored
    shipper = Shipper(store, key, [], store.lineage())
    with pytest.raises(SafeholdError, match="went away"):
        list(shipper._small_bodies("snapshots/x.snap", [("0" * 64, 10)]))


def test_encode_snapshot_refuses_a_body_of_another_length() -> None:
    tables = io.BytesIO(b'{"change":[]}')
    with pytest.raises(ValueError, match="not the 4 its row says"):
        segment.encode_snapshot(Key(b"k" * 32), "snapshots/x.snap", {"lineage": "l", "seq": 1},
                                tables, 13, [], [("a" * 64, 4)], iter([b"abc"]))


def test_seal_pieces_refuses_a_plaintext_of_another_size() -> None:
    key = Key(b"k" * 32)
    sealed = key.seal_pieces([b"abc", b"def"], 6, "n")
    assert key.open(sealed, "n") == b"abcdef"
    with pytest.raises(zstandard.ZstdError):
        key.seal_pieces([b"abc"], 6, "n")
