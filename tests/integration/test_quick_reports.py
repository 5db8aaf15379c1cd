"""Bounded REPORTs answered on the event loop (dav/handler.quick, report.quick): the
same answers as on a worker thread, on both sides of every bound, and a long REPORT
never runs there, so it does not stall the other clients (http/app.py _answer)."""

from __future__ import annotations

import contextlib
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from safehold.caldav import reports as caldav_reports
from safehold.core import users
from safehold.core.model import Actor, ItemIndex
from safehold.dav import reportutil
from safehold.store import engine as engine_mod
from safehold.store.repo import Store
from safehold.sync import collection as sync_collection
from tests.conftest import DATABASES, _env_for
from tests.support.ical import vcalendar
from tests.support.server import Server, add_user, cli

D = "{DAV:}"
C = "{urn:ietf:params:xml:ns:caldav}"
BIG = "/dav/calendars/alice/personal/"  # more events than the quick bounds allow
SMALL = "/dav/calendars/bob/personal/"
N_BIG = 2500  # > caldav_reports.QUICK_ROWS (checked below)
N_SMALL = 300
XML = {"Content-Type": "application/xml; charset=utf-8"}


def _event(uid: str, day: int, summary: str = "Quick") -> str:
    return (f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
            f"DTSTART:202603{day:02d}T100000Z\r\nDURATION:PT1H\r\nSUMMARY:{summary}\r\n"
            "END:VEVENT\r\n")


@pytest.fixture(scope="module", params=DATABASES)
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("quick") / "data"
    env = _env_for(request.param, request)
    for user, n, into in (("alice", N_BIG, BIG), ("bob", N_SMALL, SMALL)):
        add_user(data, user, env=env)
        ics = data.parent / f"{user}.ics"
        ics.write_text(vcalendar([_event(f"{user}-{i:05d}", 1 + i % 28) for i in range(n)]))
        cli(data, "import", user, str(ics), "--into", into, env=env)
    server = Server(data, env=env).start()
    yield server
    server.stop()


def _report(c: httpx.Client, path: str, body: str, depth: str = "1") -> httpx.Response:
    return c.request("REPORT", path, content=body.encode(), headers={**XML, "Depth": depth})


def _sync(c: httpx.Client, path: str, token: str = "") -> tuple[dict[str, str], str]:
    """(href -> getetag, or "404" for a removed member; the new token)."""
    r = _report(c, path, '<D:sync-collection xmlns:D="DAV:"><D:sync-token>' + token
                + "</D:sync-token><D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop>"
                "</D:sync-collection>", depth="0")
    assert r.status_code == 207, r.text[:300]
    root = ET.fromstring(r.content)
    out = {}
    for resp in root.iter(f"{D}response"):
        href = resp.findtext(f"{D}href") or ""
        status = resp.findtext(f"{D}status") or ""
        out[href] = "404" if " 404 " in status else resp.findtext(f".//{D}getetag") or ""
    return out, root.findtext(f"{D}sync-token") or ""


def _items(c: httpx.Client, path: str) -> list[str]:
    members, _ = _sync(c, path)
    return sorted(h for h in members if h.endswith(".ics"))


def test_incremental_sync_on_both_sides_of_the_bound(srv: Server) -> None:
    with srv.client("bob") as c:
        items = _items(c, SMALL)
        _, token = _sync(c, SMALL)
        for n in (3, sync_collection.QUICK_CHANGES + 20):  # on the loop, then on a thread
            changed = items[:n]
            etags = {}
            for href in changed:
                day = 1 + items.index(href) % 28
                uid = href.rsplit("/", 1)[1].removesuffix(".ics")
                r = c.put(href, content=vcalendar([_event(uid, day, f"Changed {n}")]),
                          headers={"Content-Type": "text/calendar"})
                assert r.status_code == 204, r.text
                etags[href] = r.headers["etag"]
            gone = items[-1]
            assert c.delete(gone).status_code == 204
            items.remove(gone)
            got, new_token = _sync(c, SMALL, token)
            assert got == {**etags, gone: "404"}
            assert new_token != token
            assert _sync(c, SMALL, new_token)[0] == {}
            token = new_token
        r = _report(c, SMALL, '<D:sync-collection xmlns:D="DAV:"><D:sync-token>'
                    "urn:x-safehold:sync:nope:1</D:sync-token><D:sync-level>1</D:sync-level>"
                    "<D:prop><D:getetag/></D:prop></D:sync-collection>", depth="0")
        assert r.status_code == 403 and b"valid-sync-token" in r.content


def _multiget(c: httpx.Client, path: str, hrefs: list[str]) -> dict[str, str]:
    body = ('<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
            + "".join(f"<D:href>{h}</D:href>" for h in hrefs) + "</C:calendar-multiget>")
    r = _report(c, path, body)
    assert r.status_code == 207, r.text[:300]
    return {resp.findtext(f"{D}href") or "": resp.findtext(f".//{C}calendar-data") or "404"
            for resp in ET.fromstring(r.content).iter(f"{D}response")}


def test_multiget_on_both_sides_of_the_bound(srv: Server) -> None:
    with srv.client("bob") as c:
        items = _items(c, SMALL)
        few = _multiget(c, SMALL, items[:50] + [SMALL + "missing.ics", "/dav/calendars/alice/personal/x.ics"])
        many = _multiget(c, SMALL, items[:reportutil.QUICK_HREFS + 50])
        assert len(many) == reportutil.QUICK_HREFS + 50
        for href in items[:50]:
            assert few[href] == many[href]
            assert few[href].replace("\r\n", "\n") == c.get(href).text.replace("\r\n", "\n")
        # Not found, and another user's item looks exactly the same (promise 9).
        assert few[SMALL + "missing.ics"] == "404"
        assert few["/dav/calendars/alice/personal/x.ics"] == "404"


def _query(c: httpx.Client, path: str, start: str, end: str) -> set[str]:
    body = ('<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            "<D:prop><D:getetag/></D:prop><C:filter><C:comp-filter name=\"VCALENDAR\">"
            f'<C:comp-filter name="VEVENT"><C:time-range start="{start}" end="{end}"/>'
            "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>")
    r = _report(c, path, body)
    assert r.status_code == 207, r.text[:300]
    return {resp.findtext(f"{D}href") or "" for resp in ET.fromstring(r.content).iter(f"{D}response")}


def test_calendar_query_on_both_sides_of_the_bound(srv: Server) -> None:
    # Days 1-3 of 28: ~32 of bob's events (the loop), ~270 of alice's (a thread).
    for user, path in (("bob", SMALL), ("alice", BIG)):
        with srv.client(user) as c:
            items = _items(c, path)  # other tests change some of bob's
            got = _query(c, path, "20260301T000000Z", "20260304T000000Z")
            assert got == {h for h in items if int(h[-9:-4]) % 28 < 3}
            month = _query(c, path, "20260301T000000Z", "20260401T000000Z")
            assert month == set(items)  # more than QUICK_ENTRIES for alice: a thread


def _query_members(c: httpx.Client, path: str, props: str) -> dict[str, tuple[str, str, str]]:
    """href -> (getetag, calendar-data, displayname status) of a query for March 2026."""
    body = ('<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f"<D:prop>{props}</D:prop><C:filter><C:comp-filter name=\"VCALENDAR\">"
            '<C:comp-filter name="VEVENT"><C:time-range start="20260301T000000Z" '
            'end="20260401T000000Z"/></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>')
    r = _report(c, path, body)
    assert r.status_code == 207, r.text[:300]
    out = {}
    for resp in ET.fromstring(r.content).iter(f"{D}response"):
        missing = [s.findtext(f"{D}status") or "" for s in resp.iter(f"{D}propstat")
                   if s.find(f"{D}prop/{D}displayname") is not None]
        out[resp.findtext(f"{D}href") or ""] = (resp.findtext(f".//{D}getetag") or "",
                                                resp.findtext(f".//{C}calendar-data") or "",
                                                "".join(missing))
    return out


def test_query_answers_alike_from_the_index_the_caches_and_the_heads(srv: Server) -> None:
    """A calendar-query decides members from index entries and finds their responses in
    the fragment cache; with a property that is never cached (displayname) it reads
    every hit's head instead. Same members, ETags and bytes either way, on both sides of
    the quick bound, and the bytes are what GET returns."""
    for user, path in (("bob", SMALL), ("alice", BIG)):
        with srv.client(user) as c:
            cold = _query_members(c, path, "<D:getetag/><C:calendar-data/>")
            warm = _query_members(c, path, "<D:getetag/><C:calendar-data/>")
            heads = _query_members(c, path, "<D:getetag/><C:calendar-data/><D:displayname/>")
            assert cold == warm and len(cold) > 0
            assert {h: v[:2] for h, v in heads.items()} == {h: v[:2] for h, v in cold.items()}
            assert {v[2] for v in heads.values()} == {"HTTP/1.1 404 Not Found"}
            for href in sorted(cold)[:5]:
                got = c.get(href)
                assert got.headers["etag"] == cold[href][0]
                assert got.text.replace("\r\n", "\n") == cold[href][1].replace("\r\n", "\n")


def test_a_long_report_does_not_stall_other_requests(srv: Server) -> None:
    """The calendar-query of a whole big calendar is too big for the event loop: while it runs on a worker thread, GETs are answered. Were
    it on the loop, no request sent after it began could be answered before it ended."""
    # A text match the index cannot decide, with another value each time (answers are
    # cached by ETag and filter): every round parses all N_BIG events, so each window
    # stays long however fast the rest of a query gets. Every event matches.
    slow_body = ('<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
                 "<D:prop><D:getetag/></D:prop><C:filter>"
                 '<C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
                 '<C:prop-filter name="SUMMARY"><C:text-match negate-condition="yes">'
                 "absent-{round}</C:text-match></C:prop-filter>"
                 "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>")
    assert N_BIG > caldav_reports.QUICK_ROWS
    windows: list[tuple[float, float]] = []
    done = threading.Event()

    def slow() -> None:
        try:
            with srv.client("alice") as c:
                for n in range(3):
                    began = time.monotonic()
                    r = _report(c, BIG, slow_body.format(round=n))
                    windows.append((began, time.monotonic()))
                    assert r.status_code == 207 and r.content.count(b"<D:response>") >= N_BIG
        finally:
            done.set()

    gets: list[tuple[float, float]] = []
    with srv.client("bob") as c:
        href = _items(c, SMALL)[0]
        worker = threading.Thread(target=slow)
        worker.start()
        while not done.is_set():
            began = time.monotonic()
            assert c.get(href).status_code == 200
            gets.append((began, time.monotonic()))
        worker.join()
    assert len(windows) == 3
    # Each slow REPORT takes a good while (tens of ms and more): GETs fit inside each.
    inside = [sum(1 for g in gets if w[0] < g[0] and g[1] < w[1]) for w in windows]
    assert min(inside) >= 2, (inside, len(gets), [w[1] - w[0] for w in windows])


ACTOR = Actor(None, "pytest", None)


@contextlib.contextmanager
def _store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    """A store of its own on ``database_url`` (in this process) with the user alice."""
    engine = engine_mod.create(database_url)
    try:
        engine_mod.ensure_schema(engine)
        store = Store(engine, tmp_path / "tmp")
        users.add_user(store, "alice", "password-1", ACTOR)
        yield store
    finally:
        engine.dispose()


def test_reads_in_one_block_are_one_snapshot(database_url: str, tmp_path: Path) -> None:
    """Store.reading: the reads of one request see one state, whatever commits meanwhile
    (a GET's head and body, a sync's token check and its changes)."""
    with _store(database_url, tmp_path) as store:
        first, _ = store.put("files/alice/a.txt", 1, b"one", "text/plain", ACTOR)
        with store.reading():
            seq = store.last_seq()
            head = store.get("files/alice/a.txt")
            # Another thread (a request on a worker) writes and commits meanwhile.
            writer = threading.Thread(target=store.put, args=(
                "files/alice/a.txt", 1, b"two", "text/plain", ACTOR))
            writer.start()
            writer.join()
            assert store.last_seq() == seq
            assert store.get("files/alice/a.txt") == head
            assert head is not None and head.etag == first.etag
            assert store.read_small([head.blob_hash or ""]) == {head.blob_hash: b"one"}
            assert store.get_many(["files/alice/a.txt"])["files/alice/a.txt"].etag == first.etag
        after = store.get("files/alice/a.txt")  # outside the block: the new state
        assert store.last_seq() > seq and after is not None and after.etag != first.etag
        assert store.read_bytes(after) == b"two"


def test_the_index_bound_counts_the_entries_a_lookup_reads(database_url: str, tmp_path: Path) -> None:
    """Store.index_rows_more_than with a component and an end counts what index_spans
    reads for them (undated entries and those starting before the end), and that lookup
    (two index ranges since the OR became a UNION ALL) finds exactly the entries whose
    envelope overlaps, undated ones included, in path order."""
    with _store(database_url, tmp_path) as store:
        cal = "calendars/alice/bound"
        store.mkcol(cal, 1, ACTOR, kind="calendar")
        entries = {f"e{i:02d}.ics": ItemIndex("VEVENT", f"e{i}", 100.0 * i, 100.0 * i + 50)
                   for i in range(20)}
        entries["undated.ics"] = ItemIndex("VEVENT", "u", None, None)
        entries["todo.ics"] = ItemIndex("VTODO", "t", None, 10.0)
        for name, ix in entries.items():
            store.put(f"{cal}/{name}", 1, b"BEGIN:VCALENDAR", "text/calendar", ACTOR, index=ix)
        assert store.index_rows_more_than(cal, 22) is False  # 20 + undated + the to-do
        assert store.index_rows_more_than(cal, 21) is True
        assert store.index_rows_more_than(cal, 20, "VEVENT") is True
        assert store.index_rows_more_than(cal, 21, "VEVENT") is False
        # Starting before 500: e00..e04 and the undated event.
        assert store.index_rows_more_than(cal, 5, "VEVENT", 500.0) is True
        assert store.index_rows_more_than(cal, 6, "VEVENT", 500.0) is False
        found = store.index_spans(cal, "VEVENT", 320.0, 500.0)
        assert [row[0].rsplit("/", 1)[1] for row in found] == ["e03.ics", "e04.ics", "undated.ics"]
        assert [row[0] for row in store.index_spans(cal, "VEVENT", 320.0, 500.0, 2)] == \
            [f"{cal}/e03.ics", f"{cal}/e04.ics"]
        assert [row[0] for row in store.index_spans(cal, "VTODO", None, 5.0)] == [f"{cal}/todo.ics"]
