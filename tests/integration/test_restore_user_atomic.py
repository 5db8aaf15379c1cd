"""restore-user is all or nothing: its plans (one per home: files, calendars, address
books) are written in one transaction, so a failure in any of them leaves every
collection as it was and the error names the home that failed (the store-level race
below, both databases). Through the CLI and the JSON API, a restore brings back all
three homes, a home's own properties included."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from safehold.core import history as core
from safehold.core import users
from safehold.core.items import index_for
from safehold.core.model import Actor
from safehold.errors import Conflict
from safehold.store import engine as engine_mod
from safehold.store.history import History
from safehold.store.repo import Store
from tests.support.clients import server_state
from tests.support.server import Server, cli

CAL = "/dav/calendars/alice/personal/"  # made by `safehold user add`
BOOK = "/dav/addressbooks/alice/contacts/"
FILES = "/dav/files/alice/"
BOOK_HOME = "/dav/addressbooks/alice/"


def event(uid: str, text: str) -> bytes:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//safehold tests//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:20261201T100000Z\r\n"
            f"DTEND:20261201T110000Z\r\nSUMMARY:Caf\u00e9 {text}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
            ).encode()


def card(uid: str, text: str) -> bytes:
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:Jos\u00e9 {text}\r\n"
            f"N:{text};Jos\u00e9;;;\r\nEND:VCARD\r\n").encode()


def _ok(r: httpx.Response, *status: int) -> None:
    assert r.status_code in status, (r.request.method, r.request.url, r.status_code, r.text)


def _home_displayname(c: httpx.Client, value: str | None) -> None:
    """Set (or remove) a property of alice's address-book home itself."""
    op = (f"<D:set><D:prop><D:displayname>{value}</D:displayname></D:prop></D:set>"
          if value is not None else "<D:remove><D:prop><D:displayname/></D:prop></D:remove>")
    _ok(c.request("PROPPATCH", BOOK_HOME, content=(
        f'<D:propertyupdate xmlns:D="DAV:">{op}</D:propertyupdate>').encode()), 207)


def _files(c: httpx.Client) -> dict[str, tuple[int, bytes]]:
    return {h: (r.status_code, r.content) for h in (f"{FILES}notes.txt", f"{FILES}later.txt")
            for r in [c.get(h)]}


def _setup(server: Server, c: httpx.Client) -> tuple[int, dict[str, Any]]:
    """Alice's three homes, a point in time, then changes in each home after it, the
    last of them a property of her address-book home (whose parent, ``addressbooks``,
    is no collection of the store: restoring it failed, after the other two homes had
    been written in the code before the restore was all or nothing)."""
    _ok(c.put(f"{FILES}notes.txt", content=b"as it was\r\n\xe9"), 201)
    _ok(c.put(f"{CAL}e1.ics", content=event("e1", "lunch")), 201)
    _ok(c.put(f"{BOOK}p1.vcf", content=card("p1", "Garc\u00eda")), 201)
    point = server.changes()[-1][0]
    at_point = {"files": _files(c), "cal": server_state(c, CAL), "book": server_state(c, BOOK)}

    _ok(c.put(f"{FILES}notes.txt", content=b"edited later"), 204)
    _ok(c.put(f"{FILES}later.txt", content=b"created later"), 201)
    _ok(c.put(f"{CAL}e1.ics", content=event("e1", "moved to friday")), 204)
    _ok(c.delete(f"{BOOK}p1.vcf"), 204)
    _home_displayname(c, "Alice's address books")
    return point, at_point


def _home_has_displayname(c: httpx.Client) -> bool:
    r = c.request("PROPFIND", BOOK_HOME, headers={"Depth": "0"}, content=(
        b'<D:propfind xmlns:D="DAV:"><D:prop><D:displayname/></D:prop></D:propfind>'))
    _ok(r, 207)
    return "Alice's address books" in r.text


def _restore_user(server: Server, c: httpx.Client, via: str, point: int) -> tuple[bool, str]:
    """(succeeded, the error message) of a restore-user through the CLI or the API."""
    if via == "cli":
        proc: subprocess.CompletedProcess[str] = cli(
            server.data_dir, "restore-user", "alice", "--to", str(point), env=server.env,
            check=False)
        return proc.returncode == 0, proc.stderr
    r = c.post("/api/v1/restore-user", json={"to": point})
    assert r.status_code in (200, 409), r.text
    return r.status_code == 200, "" if r.status_code == 200 else r.json()["error"]


@pytest.mark.parametrize("via", ["cli", "api"])
def test_restore_user_brings_back_every_home_and_its_properties(fresh_server: Server,
                                                                via: str) -> None:
    with fresh_server.client() as c:
        point, at_point = _setup(fresh_server, c)
        assert _home_has_displayname(c)
        seq = fresh_server.changes()[-1][0]
        ok, error = _restore_user(fresh_server, c, via, point)
        assert ok, error
        # One change per home (what `safehold history` shows for a restore-user).
        assert fresh_server.changes()[-3:] == [(seq + 1, "restore", "files/alice"),
                                               (seq + 2, "restore", "calendars/alice"),
                                               (seq + 3, "restore", "addressbooks/alice")]
        assert _files(c) == at_point["files"]
        for key, col in (("cal", CAL), ("book", BOOK)):
            now = server_state(c, col)
            assert {h: body for h, (_, body) in now.items()} == \
                {h: body for h, (_, body) in at_point[key].items()}
            assert all(now[h][0] != etag for h, (etag, _) in at_point[key].items())  # new ETags
        assert not _home_has_displayname(c)  # the home's own property, as at the point


def test_a_device_write_between_planning_and_writing(database_url: str, tmp_path: Path) -> None:
    """The realistic race on a live server: while restore-user plans (it reads every
    item), a phone re-adds a contact the restore is about to bring back. The address
    book's write hits the UID check; files and calendars must not stay restored."""
    engine = engine_mod.create(database_url)
    engine_mod.ensure_schema(engine)
    engine_mod.self_test(engine)
    try:
        store = Store(engine, tmp_path / "tmp")
        alice = users.add_user(store, "alice", "password-1", Actor(None))
        actor = Actor(alice.id, "pytest")
        store.mkcol("calendars/alice/work", alice.id, actor, kind="calendar")
        store.mkcol("addressbooks/alice/people", alice.id, actor, kind="addressbook")
        history = History(store)

        def put(path: str, body: bytes, kind: str | None = None) -> None:
            store.put(path, alice.id, body, None, actor,
                      index=index_for(kind, body) if kind else None)
        put("files/alice/a.txt", b"one")
        put("calendars/alice/work/e.ics", event("e", "one"), "calendar")
        put("addressbooks/alice/people/p.vcf", card("p", "Pat"), "addressbook")
        point = store.last_seq()
        put("files/alice/a.txt", b"two")
        put("calendars/alice/work/e.ics", event("e", "two"), "calendar")
        store.delete("addressbooks/alice/people/p.vcf", actor)

        plans = core.plan_restore_user(history, "alice", point)
        assert [p.target for p in plans if p.ops] == ["files/alice", "calendars/alice",
                                                      "addressbooks/alice"]
        put("addressbooks/alice/people/p-again.vcf", card("p", "Pat"), "addressbook")
        last = store.last_seq()
        with pytest.raises(Conflict, match="restoring 'addressbooks/alice' failed, so nothing "
                                           "was restored: UID 'p' is already used"):
            core.execute_all(history, alice.id, plans, actor)
        assert store.last_seq() == last
        for path, body in (("files/alice/a.txt", b"two"),
                           ("calendars/alice/work/e.ics", event("e", "two"))):
            head = store.get(path)
            assert head is not None and head.seq < last and store.read_bytes(head) == body
        assert store.get("addressbooks/alice/people/p.vcf") is None
    finally:
        engine.dispose()
