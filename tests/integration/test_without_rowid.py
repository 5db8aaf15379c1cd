"""Revision 0008: on SQLite, ``resource``, ``item_index`` and ``blob`` are rebuilt as
WITHOUT ROWID tables (one B-tree per table, three pages fewer per PUT's commit). The
upgrade keeps every row and index, and the store works on the result; on PostgreSQL
the revision changes nothing. Real databases, a store populated at revision 0007."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from safehold.core.items import index_for
from safehold.core.model import ADDRESSBOOK, CALENDAR, Actor
from safehold.errors import UidConflict
from safehold.store import blobs
from safehold.store import engine as engine_mod
from safehold.store.repo import Store

TABLES = {"resource": "path", "item_index": "path", "blob": "hash"}
INDEXES = {"ix_resource_parent", "ix_item_index_uid", "ix_item_index_range"}


def _card(i: int) -> bytes:
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:card-{i}\r\nFN:Person {i}\r\nEND:VCARD\r\n".encode()


def _event(i: int) -> bytes:
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:ev-{i}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:202603{i % 28 + 1:02d}T100000Z\r\n"
            f"DTEND:202603{i % 28 + 1:02d}T110000Z\r\nSUMMARY:Event {i}\r\n"
            f"{'RRULE:FREQ=WEEKLY;COUNT=5' + chr(13) + chr(10) if i % 3 == 0 else ''}"
            f"END:VEVENT\r\nEND:VCALENDAR\r\n").encode()


def _rows(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.exec_driver_sql(
            f"SELECT * FROM {name} ORDER BY {key}")] for name, key in TABLES.items()}


def test_upgrade_to_without_rowid_keeps_every_row(database_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_mod.create(database_url)
    try:
        command.upgrade(engine_mod.alembic_config(engine), "0007")
        # Bodies as revision 0007 stores them: blob has no inline column yet (0009).
        monkeypatch.setattr(blobs, "INLINE_MAX", -1)
        store = Store(engine, tmp_path / "tmp")
        actor = Actor(None, "fixture", "r1")
        alice = store.add_principal("alice", "x", actor, homes=("addressbooks", "calendars"))
        store.mkcol("addressbooks/alice/book", alice.id, actor, kind=ADDRESSBOOK)
        store.mkcol("calendars/alice/cal", alice.id, actor, kind=CALENDAR)
        for i in range(40):
            store.put(f"addressbooks/alice/book/{i}.vcf", alice.id, _card(i), "text/vcard",
                      actor, index=index_for(ADDRESSBOOK, _card(i)))
            store.put(f"calendars/alice/cal/{i}.ics", alice.id, _event(i), "text/calendar",
                      actor, index=index_for(CALENDAR, _event(i)))
        store.put("addressbooks/alice/book/0.vcf", alice.id, _card(0) + b"\r\n", "text/vcard",
                  actor, index=index_for(ADDRESSBOOK, _card(0)))  # a second version
        before = _rows(engine)
        assert len(before["item_index"]) == 80 and len(before["blob"]) == 81

        command.upgrade(engine_mod.alembic_config(engine), "0008")

        assert _rows(engine) == before
        with engine.connect() as conn:
            indexes = {ix["name"] for name in TABLES for ix in sa.inspect(conn).get_indexes(name)}
            assert INDEXES <= indexes, indexes
            if engine.dialect.name == "sqlite":
                for name in TABLES:
                    sql = conn.exec_driver_sql(
                        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).scalar()
                    assert "WITHOUT ROWID" in str(sql).upper(), sql
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"

        # The store (of head: revision 0009 adds a column) works on the rebuilt tables:
        # reads by key, an update, a new item, the UID check of the calendar index, a
        # time-range candidate query.
        command.upgrade(engine_mod.alembic_config(engine), "head")
        monkeypatch.undo()
        assert store.read_bytes(store.get("addressbooks/alice/book/7.vcf")) == _card(7)  # type: ignore[arg-type]
        res, created = store.put("addressbooks/alice/book/7.vcf", alice.id, _card(7) + b"\r\n",
                                 "text/vcard", actor, index=index_for(ADDRESSBOOK, _card(7)))
        assert not created and store.read_bytes(res) == _card(7) + b"\r\n"
        _, created = store.put("addressbooks/alice/book/new.vcf", alice.id, _card(99),
                               "text/vcard", actor, index=index_for(ADDRESSBOOK, _card(99)))
        assert created
        with pytest.raises(UidConflict):
            store.put("addressbooks/alice/book/dup.vcf", alice.id, _card(3), "text/vcard", actor,
                      index=index_for(ADDRESSBOOK, _card(3)))
        march = store.index_candidates("calendars/alice/cal", "VEVENT", 1772323200.0, 1772409600.0)
        assert "calendars/alice/cal/0.ics" in {r.path for r in march}
    finally:
        engine.dispose()
