"""Disaster restore into PostgreSQL: a server that ran on PostgreSQL loses its machine
and its database; `safehold restore --database-url postgresql://…` rebuilds it from
the replica and the kit alone into a new, empty PostgreSQL database, and `safehold
serve` on the result serves every body, the change log, history, sync tokens and the
calendar index as before. A target that holds data or cannot be reached is refused
with nothing written."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import DATABASES
from tests.support.server import Server, add_user, cli, free_port, run

pytestmark = pytest.mark.skipif("postgresql" not in DATABASES,
                                reason="PostgreSQL is not among SAFEHOLD_TEST_DATABASES")

BOOK = "/dav/addressbooks/{u}/contacts"
CAL = "/dav/calendars/alice/work"
CALDAV = "urn:ietf:params:xml:ns:caldav"
RECURRING = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
             b"UID:daily@example.org\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:20240101T100000Z\r\n"
             b"DTEND:20240101T110000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
SINGLE = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
          b"UID:once@example.org\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:20240301T100000Z\r\n"
          b"DTEND:20240301T110000Z\r\nSUMMARY:once\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
# 2 January: only the recurring event's second instance falls on it (index lookup).
QUERY = (f'<C:calendar-query xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:prop><D:getetag/></D:prop>'
         '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
         '<C:time-range start="20240102T000000Z" end="20240103T000000Z"/>'
         "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>").encode()


def card(u: str, i: int, note: str = "") -> bytes:
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{u}-{i}\r\nFN:Person {i} of {u}{note}\r\n"
            "END:VCARD\r\n").encode()


def sync(c: object, collection: str, token: str = "") -> tuple[int, str, set[str]]:
    body = (f'<D:sync-collection xmlns:D="DAV:"><D:sync-token>{token}</D:sync-token>'
            "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>")
    r = c.request("REPORT", collection + "/", headers={"Depth": "0"},  # type: ignore[attr-defined]
                  content=body.encode())
    new_token = r.text.split("<D:sync-token>")[1].split("<")[0] if r.status_code == 207 else ""
    return r.status_code, new_token, set(re.findall(r"<D:href>([^<]+)</D:href>", r.text))


def _wait_shipped(srv: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        st = json.loads(cli(srv.data_dir, "status", "--json", env=srv.env, check=False).stdout)
        if st["replicas"] and all(r["shipped_seq"] == st["last_seq"] for r in st["replicas"]):
            return
        assert time.monotonic() < deadline, f"replication did not catch up: {st}"
        time.sleep(0.2)


def _history(data: Path, url: str, user: str, path: str) -> list[dict[str, object]]:
    out = cli(data, "history", user, path, "--json", env={"SAFEHOLD_DATABASE_URL": url})
    return list(json.loads(out.stdout))


def _drop(url: str) -> None:
    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.parametrize("source", ["postgresql", "sqlite"])
def test_disaster_restore_into_postgresql(source: str, postgres: object, tmp_path: Path) -> None:
    """From a server that ran on PostgreSQL; from one on SQLite too (moving to PostgreSQL
    through the replica: the format is the same)."""
    new_db = postgres.new_database  # type: ignore[attr-defined]
    data = tmp_path / "data"
    live_url = new_db() if source == "postgresql" else f"sqlite:///{data / 'safehold.db'}"
    env = {"SAFEHOLD_DATABASE_URL": live_url}
    add_user(data, "alice", env=env)
    add_user(data, "bob", env=env)
    srv = Server(data, env=env).start()
    written: dict[str, bytes] = {}
    book = BOOK.format(u="alice")
    try:
        with srv.client("alice") as c:
            for i in range(5):
                assert c.put(f"{book}/{i}.vcf", content=card("alice", i)).status_code == 201
                written[f"{book}/{i}.vcf"] = card("alice", i)
            assert c.put(f"{book}/1.vcf", content=card("alice", 1, " edited")).status_code == 204
            written[f"{book}/1.vcf"] = card("alice", 1, " edited")
            assert c.delete(f"{book}/2.vcf").status_code == 204
            del written[f"{book}/2.vcf"]
            assert c.request("MKCALENDAR", f"{CAL}/").status_code == 201
            for name, body in (("daily.ics", RECURRING), ("once.ics", SINGLE)):
                assert c.put(f"{CAL}/{name}", content=body,
                             headers={"Content-Type": "text/calendar"}).status_code == 201
                written[f"{CAL}/{name}"] = body
            blob = bytes(range(256)) * 40
            assert c.put("/dav/files/alice/photo.bin", content=blob).status_code == 201
            written["/dav/files/alice/photo.bin"] = blob
            _, token, listed = sync(c, book)
        with srv.client("bob") as c:
            assert c.put(f"{BOOK.format(u='bob')}/b.vcf", content=card("bob", 0)).status_code == 201
            written[f"{BOOK.format(u='bob')}/b.vcf"] = card("bob", 0)
        _wait_shipped(srv)
        changes = srv.changes()
        history = _history(data, live_url, "alice", f"{book}/1.vcf")
        deleted_history = _history(data, live_url, "alice", f"{book}/2.vcf")
    finally:
        srv.stop()
    assert len(history) == 2 and deleted_history[-1]["deleted"] is True
    kit, replica = tmp_path / "kit.json", tmp_path / "offsite"
    shutil.copy(data / "recovery-kit.json", kit)
    shutil.copytree(data / "replica", replica)
    shutil.rmtree(data)  # the disaster: the machine and its database are gone
    if source == "postgresql":
        _drop(live_url)
    restore = ["restore", "--from", f"file://{replica}", "--kit", str(kit)]

    # Refused, with nothing written: a database that holds safehold data ...
    used_url = new_db()
    add_user(tmp_path / "other", "carol", env={"SAFEHOLD_DATABASE_URL": used_url})
    refused = run(*restore, "--into", str(tmp_path / "r1"), "--database-url", used_url, check=False)
    assert refused.returncode == 1 and "already holds safehold data" in refused.stderr
    assert "new, empty database" in refused.stderr and not (tmp_path / "r1").exists()
    # ... and one that cannot be reached.
    gone = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    refused = run(*restore, "--into", str(tmp_path / "r2"), "--database-url", gone, check=False)
    assert refused.returncode == 1 and "cannot reach the database" in refused.stderr
    assert not (tmp_path / "r2").exists()

    target_url = new_db()
    new_dir = tmp_path / "rebuilt"
    out = run(*restore, "--into", str(new_dir), "--database-url", target_url)
    assert f"--database-url {target_url}" in out.stdout
    assert not (new_dir / "safehold.db").exists() and (new_dir / "backup.key").exists()
    rebuilt = Server(new_dir, env={"SAFEHOLD_DATABASE_URL": target_url}).start()
    try:
        assert rebuilt.changes() == changes
        for path, body in written.items():
            with rebuilt.client(path.split("/")[3]) as c:
                got = c.get(path)
                assert got.status_code == 200 and got.content == body, path
        with rebuilt.client("alice") as c:
            assert c.get(f"{book}/2.vcf").status_code == 404
            status, _, now_listed = sync(c, book)
            assert status == 207 and now_listed == listed
            status, _, delta = sync(c, book, token)  # same lineage: the old token is valid
            assert status == 207 and not any(h.endswith(".vcf") for h in delta)
            r = c.request("REPORT", f"{CAL}/", headers={"Depth": "1"}, content=QUERY)
            assert r.status_code == 207 and f"{CAL}/daily.ics" in r.text
            assert "once.ics" not in r.text
            # New writes continue the change log (PostgreSQL sequences moved past it).
            assert c.put(f"{book}/new.vcf", content=card("alice", 9)).status_code == 201
        assert rebuilt.changes()[-1][0] == changes[-1][0] + 1
        add_user(new_dir, "dave", env={"SAFEHOLD_DATABASE_URL": target_url})
    finally:
        rebuilt.stop()
    assert _history(new_dir, target_url, "alice", f"{book}/1.vcf") == history
    assert _history(new_dir, target_url, "alice", f"{book}/2.vcf") == deleted_history

    # --user: one user's data into another empty PostgreSQL database.
    bob_url = new_db()
    run(*restore, "--into", str(tmp_path / "bob"), "--database-url", bob_url, "--user", "bob")
    users = cli(tmp_path / "bob", "user", "list", env={"SAFEHOLD_DATABASE_URL": bob_url}).stdout
    assert "bob" in users and "alice" not in users
