"""A store restored from its replica indexes its items as the live store did, down to a
recurring event's instances: without them every calendar-query parsed each recurring
event again until it was next written."""

from __future__ import annotations

import base64
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from safehold.backup.crypto import Key
from safehold.backup.replica_client import open_replica
from safehold.backup.restore import restore
from safehold.backup.shipper import Shipper
from safehold.store import engine as engine_mod
from safehold.store.repo import Store
from safehold.store.schema import item_index
from tests.conftest import DATABASES
from tests.conftest import _env_for as env_for
from tests.support.server import Server, add_user

CAL = "/dav/calendars/alice/personal"
BOOK = "/dav/addressbooks/alice/contacts"


def _event(uid: str, extra: str = "") -> bytes:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260105T090000Z\r\n"
            f"DTEND:20260105T100000Z\r\nSUMMARY:{uid}\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n"
            ).encode()


ITEMS = {
    f"{CAL}/weekly.ics": _event("weekly", "RRULE:FREQ=WEEKLY;COUNT=5\r\n"),
    f"{CAL}/open.ics": _event("open", "RRULE:FREQ=DAILY\r\n"),
    f"{CAL}/once.ics": _event("once"),
    f"{BOOK}/a.vcf": b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:a\r\nFN:A\r\nN:A;;;;\r\nEND:VCARD\r\n",
}


def _rows(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as c:
        return {r["path"]: dict(r) for r in c.execute(sa.select(item_index)).mappings()}


@pytest.mark.parametrize("database", DATABASES)
def test_a_restored_store_has_the_live_index(database: str, request: pytest.FixtureRequest,
                                             tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = env_for(database, request)
    add_user(data, "alice", env=env)
    srv = Server(data, env=env).start()
    try:
        with srv.client() as c:
            for path, body in ITEMS.items():
                assert c.put(path, content=body).status_code == 201, path
    finally:
        srv.stop()
    store = Store(engine_mod.create(srv.database_url), data / "tmp")
    scratch_dir = Path(tempfile.mkdtemp(prefix="restore-index-"))
    engine = engine_mod.create(f"sqlite:///{scratch_dir / 'r.db'}")
    try:
        key = Key(base64.b64decode((data / "backup.key").read_text()))
        replica = open_replica(f"file://{tmp_path / 'replica'}")
        result = Shipper(store, key, [replica], store.lineage(), snapshot_every=10**9).ship_all()
        assert not any(isinstance(r, str) for r in result.values()), result
        engine_mod.ensure_schema(engine)
        restore(replica, key, Store(engine, scratch_dir / "tmp"), to_seq=store.last_seq())
        live, restored = _rows(store.engine), _rows(engine)
        assert len(live) == len(ITEMS)
        assert live["calendars/alice/personal/weekly.ics"]["instances"]  # the case at stake
        assert restored == live
    finally:
        engine.dispose()
        store.engine.dispose()
        shutil.rmtree(scratch_dir, ignore_errors=True)
