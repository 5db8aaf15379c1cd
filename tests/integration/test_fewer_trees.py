"""Revision 0009: a small body lives in its ``blob`` row (no ``blob_chunk`` row), and
``ix_item_index_range`` holds calendar components only. Every way a body is read
(GET's one statement, reads by chunk, multiget's batch, the shipper's stored chunks)
gives the client's bytes for both forms, bodies stored before the upgrade included;
segments carry one form of blob row; time-range lookups still use the index. Real
databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from safehold.core.items import index_for
from safehold.core.model import ADDRESSBOOK, CALENDAR, Actor
from safehold.errors import UidConflict
from safehold.store import blobs, repo
from safehold.store import engine as engine_mod
from safehold.store import replication as rep
from safehold.store.repo import Store

ACTOR = Actor(None, "fixture", "r1")
BOOK, CAL = "addressbooks/alice/book", "calendars/alice/cal"


def _card(i: int, extra: str = "") -> bytes:
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:card-{i}\r\nFN:Person {i}\r\n{extra}END:VCARD\r\n".encode()


def _event(i: int) -> bytes:
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:ev-{i}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:202603{i % 28 + 1:02d}T100000Z\r\n"
            f"DTEND:202603{i % 28 + 1:02d}T110000Z\r\nSUMMARY:Event {i}\r\n"
            f"END:VEVENT\r\nEND:VCALENDAR\r\n").encode()


def _photo_card(i: int) -> bytes:
    """A vCard whose body does not compress to INLINE_MAX bytes (random base64)."""
    return _card(i, "PHOTO;ENCODING=b;TYPE=JPEG:" + os.urandom(1500).hex() + "\r\n")


def _setup(engine: sa.Engine, tmp_path: Path) -> tuple[Store, int]:
    store = Store(engine, tmp_path / "tmp")
    alice = store.add_principal("alice", "x", ACTOR, homes=("addressbooks", "calendars"))
    store.mkcol(BOOK, alice.id, ACTOR, kind=ADDRESSBOOK)
    store.mkcol(CAL, alice.id, ACTOR, kind=CALENDAR)
    return store, alice.id


def _put_card(store: Store, owner: int, name: str, body: bytes) -> str:
    res, _ = store.put(f"{BOOK}/{name}", owner, body, "text/vcard", ACTOR,
                       index=index_for(ADDRESSBOOK, body))
    assert res.blob_hash is not None
    return res.blob_hash


def _stored(engine: sa.Engine, sha: str) -> tuple[bytes | None, int]:
    """(the blob row's inline data, how many blob_chunk rows the hash has)."""
    with engine.connect() as conn:
        data = conn.execute(sa.text("SELECT data FROM blob WHERE hash = :h"), {"h": sha}).scalar()
        chunks = conn.execute(sa.text("SELECT count(*) FROM blob_chunk WHERE hash = :h"),
                              {"h": sha}).scalar()
    return (None if data is None else bytes(data)), int(chunks or 0)


def _reads(store: Store, path: str, sha: str) -> list[bytes | None]:
    """The body as each read path gives it."""
    res = store.get(path)
    assert res is not None
    _, small = store.get_with_body(path)
    chunks = list(rep.chunks(store, sha, 1))
    return [store.read_bytes(res), small, store.read_small([sha, "0" * 64]).get(sha),
            blobs.decompress(chunks[0]) if len(chunks) == 1 else None]


@pytest.fixture
def engine(database_url: str) -> object:
    eng = engine_mod.create(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def head(engine: sa.Engine, tmp_path: Path) -> tuple[Store, int]:
    """A store on a database created at the newest revision, and its user's id."""
    engine_mod.ensure_schema(engine)
    return _setup(engine, tmp_path)


def test_a_small_body_is_stored_inline_and_every_reader_gets_it(
        engine: sa.Engine, head: tuple[Store, int]) -> None:
    store, owner = head
    body = _card(1)
    sha = _put_card(store, owner, "1.vcf", body)
    data, chunk_rows = _stored(engine, sha)
    assert data is not None and chunk_rows == 0
    assert blobs.decompress(data) == body
    assert _reads(store, f"{BOOK}/1.vcf", sha) == [body] * 4
    # Segments carry the row without the inline body: it travels as chunk 0.
    rows = rep.blob_rows(store, [sha])
    assert rows == [{"hash": sha, "size": len(body), "chunks": 1, "codec": blobs.CODEC}]


def test_a_body_that_does_not_compress_small_keeps_its_chunk_row(
        engine: sa.Engine, head: tuple[Store, int]) -> None:
    store, owner = head
    body = _photo_card(2)
    sha = _put_card(store, owner, "2.vcf", body)
    assert _stored(engine, sha) == (None, 1)
    assert _reads(store, f"{BOOK}/2.vcf", sha) == [body] * 4


def test_bodies_stored_before_the_upgrade_read_beside_inline_ones(
        engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    command.upgrade(engine_mod.alembic_config(engine), "0008")
    monkeypatch.setattr(blobs, "INLINE_MAX", -1)  # as revision 0008 stored them
    store, owner = _setup(engine, tmp_path)
    old = {i: _put_card(store, owner, f"{i}.vcf", _card(i)) for i in range(5)}
    command.upgrade(engine_mod.alembic_config(engine), "head")
    monkeypatch.undo()

    new = {i: _put_card(store, owner, f"{i}.vcf", _card(i)) for i in range(5, 10)}
    for i, sha in old.items():
        assert _stored(engine, sha) == (None, 1)
        assert _reads(store, f"{BOOK}/{i}.vcf", sha) == [_card(i)] * 4
    for i, sha in new.items():
        assert _stored(engine, sha)[1] == 0
        assert _reads(store, f"{BOOK}/{i}.vcf", sha) == [_card(i)] * 4
    # One batch over both forms (a multiget).
    assert store.read_small(list(old.values()) + list(new.values())) == {
        sha: _card(i) for i, sha in (old | new).items()}
    # An old body stored again (its row exists: nothing is written) stays as it was.
    store.delete(f"{BOOK}/0.vcf", ACTOR)
    assert _put_card(store, owner, "again.vcf", _card(0)) == old[0]
    assert _stored(engine, old[0]) == (None, 1)
    # The UID index still finds the contacts of either form.
    with pytest.raises(UidConflict):
        _put_card(store, owner, "dup.vcf", _card(7))


def test_the_range_index_holds_calendar_components_and_lookups_use_it(
        engine: sa.Engine, head: tuple[Store, int]) -> None:
    store, owner = head
    for i in range(30):
        _put_card(store, owner, f"{i}.vcf", _card(i))
        store.put(f"{CAL}/{i}.ics", owner, _event(i), "text/calendar", ACTOR,
                  index=index_for(CALENDAR, _event(i)))
    march_2 = (1772409600.0, 1772496000.0)  # 2026-03-02, one day
    found = {r.path for r in store.index_candidates(CAL, "VEVENT", *march_2)}
    assert f"{CAL}/1.ics" in found and f"{CAL}/29.ics" in found and len(found) == 2
    assert len(store.index_candidates(CAL, None, *march_2)) == 2
    # A lookup of VCARD (no calendar-query sends one, but the store allows it) still
    # finds the contacts, without the index.
    assert len(store.index_candidates(BOOK, "VCARD", None, None)) == 30
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = "
                                       "'ix_item_index_range'").scalar()
            stmt, params = repo._index_query(CAL, "VEVENT", *march_2, None, True)
            text, order = stmt.sql(engine.dialect, tuple(params))
            args = tuple(params[k] for k in order or ())
            plan = " / ".join(str(r[-1]) for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + text, args))
            assert plan.count("USING INDEX ix_item_index_range") == 2, plan
        else:
            sql = conn.exec_driver_sql("SELECT indexdef FROM pg_indexes WHERE indexname = "
                                       "'ix_item_index_range'").scalar()
        assert "WHERE" in str(sql).upper() and "VCARD" in str(sql), sql
