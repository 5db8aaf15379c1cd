"""Listings of whole collections streamed a page at a time (dav/listing.py,
store/listing.py): complete, well-formed, the same bytes as one piece, and one
consistent state with the sync token even while writes go on, on both databases."""

from __future__ import annotations

import itertools
import json
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from safehold.core import users
from safehold.core.model import Actor
from safehold.store import engine as engine_mod
from safehold.store.listing import Row, Snapshot, stamp_of, stamp_of_rows
from safehold.store.repo import Store
from tests.conftest import DATABASES, _env_for
from tests.support.ical import vcalendar
from tests.support.server import Server, add_user, cli

D = "{DAV:}"
CAL = "/dav/calendars/alice/personal/"
N = 1500
PAGE = 40  # SAFEHOLD_LISTING_PAGE_SIZE of the server below: N members make 38 pages
ETAGS = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
         b"<D:getetag/><D:resourcetype/></D:prop></D:propfind>")
A = Actor(None, "pytest", None)


def _event(i: int, summary: str = "Listed") -> str:
    return (f"BEGIN:VEVENT\r\nUID:list-{i:05d}\r\nDTSTAMP:20260101T000000Z\r\n"
            f"DTSTART:20260301T{i % 24:02d}0000Z\r\nDURATION:PT1H\r\nSUMMARY:{summary} {i}\r\n"
            "END:VEVENT\r\n")


@pytest.fixture(scope="module", params=DATABASES)
def big(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with N events in alice's calendar and a small page size."""
    data = tmp_path_factory.mktemp("listing") / "data"
    env = {**_env_for(request.param, request), "SAFEHOLD_LISTING_PAGE_SIZE": str(PAGE)}
    add_user(data, "alice", env=env)
    ics = data.parent / "many.ics"
    ics.write_text(vcalendar([_event(i) for i in range(N)]))
    cli(data, "import", "alice", str(ics), "--into", CAL, env=env)
    srv = Server(data, env=env).start()
    yield srv
    srv.stop()


def _members(body: bytes) -> dict[str, str]:
    """href -> getetag of the members (not the collection itself) of a multistatus."""
    root = ET.fromstring(body)  # raises on a body that is not well-formed
    assert root.tag == f"{D}multistatus"
    out = {}
    for resp in root.findall(f"{D}response"):
        href = resp.findtext(f"{D}href") or ""
        if href.endswith("/"):
            continue
        etag = resp.findtext(f"{D}propstat/{D}prop/{D}getetag")
        assert etag, href
        assert href not in out, f"{href} listed twice"
        out[href] = etag
    return out


def _sync(c: httpx.Client, token: str | None = None) -> httpx.Response:
    tok = f"<D:sync-token>{token}</D:sync-token>" if token else "<D:sync-token/>"
    return c.request("REPORT", CAL, headers={"Depth": "0"}, content=(
        f'<?xml version="1.0" encoding="utf-8"?><D:sync-collection xmlns:D="DAV:">{tok}'
        "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>"))


def _token(body: bytes) -> str:
    match = re.search(rb"<D:sync-token>([^<]+)</D:sync-token>", body)
    assert match, body[-300:]
    return match.group(1).decode()


def test_streamed_propfind_is_complete_and_repeatable(big: Server) -> None:
    with big.client() as c:
        first = c.request("PROPFIND", CAL, headers={"Depth": "1"}, content=ETAGS)
        assert first.status_code == 207
        assert first.headers.get("transfer-encoding") == "chunked"  # streamed, not whole
        members = _members(first.content)
        assert set(members) == {f"{CAL}list-{i:05d}.ics" for i in range(N)}
        # Cached pages are the same bytes as rendered ones.
        again = c.request("PROPFIND", CAL, headers={"Depth": "1"}, content=ETAGS)
        assert again.content == first.content
        # allprop is not cached: rendered page by page, still one well-formed document.
        allprop = c.request("PROPFIND", CAL, headers={"Depth": "1"})
        assert allprop.status_code == 207 and len(_members(allprop.content)) == N
        # A listing of one page is sent whole, with its length.
        home = c.request("PROPFIND", "/dav/calendars/alice/", headers={"Depth": "1"}, content=ETAGS)
        assert home.status_code == 207 and "content-length" in home.headers


def test_cached_pages_follow_changes(big: Server) -> None:
    with big.client() as c:
        before = _members(c.request("PROPFIND", CAL, headers={"Depth": "1"}, content=ETAGS).content)
        names = sorted(before)
        changed, gone = names[len(names) // 2], names[-3]
        r = c.put(changed, content=vcalendar([_event(int(changed[-9:-4]), "Changed")]),
                  headers={"Content-Type": "text/calendar", "If-Match": before[changed]})
        assert r.status_code == 204, r.text
        r = c.put(changed, content=vcalendar([_event(int(changed[-9:-4]), "Changed again")]),
                  headers={"Content-Type": "text/calendar"})
        assert r.status_code == 204, r.text
        assert c.delete(gone).status_code == 204
        new = f"{CAL}zz-new.ics"
        assert c.put(new, content=vcalendar([_event(N + 1)]),
                     headers={"Content-Type": "text/calendar"}).status_code == 201
        after = _members(c.request("PROPFIND", CAL, headers={"Depth": "1"}, content=ETAGS).content)
        assert set(after) == set(before) - {gone} | {new}
        assert after[changed] != before[changed]
        assert all(after[h] == before[h] for h in after if h not in (changed, new))
        # The sync listing of the same state agrees (its pages are cached with PROPFIND's
        # names only when the names are the same: here they differ).
        assert _members(_sync(c).content) == after


def test_cached_pages_follow_dead_property_changes(big: Server) -> None:
    """A PROPPATCH changes no body, but a listing that asks for the dead property must
    show the new value at once: the page and fragment caches may not serve the old one."""
    color = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:" '
             b'xmlns:X="urn:example:listing"><D:prop><D:getetag/><X:color/></D:prop></D:propfind>')

    def colors(c: httpx.Client) -> dict[str, str | None]:
        r = c.request("PROPFIND", CAL, headers={"Depth": "1"}, content=color)
        assert r.status_code == 207
        out = {}
        for resp in ET.fromstring(r.content).findall(f"{D}response"):
            href = resp.findtext(f"{D}href") or ""
            found = [p.findtext(f"{D}prop/{{urn:example:listing}}color")
                     for p in resp.findall(f"{D}propstat") if p.findtext(f"{D}status", "").endswith("200 OK")]
            out[href] = found[0] if found else None
        return out

    def patch(c: httpx.Client, href: str, body: str) -> None:
        r = c.request("PROPPATCH", href, content=(
            '<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" '
            f'xmlns:X="urn:example:listing">{body}</D:propertyupdate>'))
        assert r.status_code == 207 and "200 OK" in r.text, r.text

    with big.client() as c:
        target = f"{CAL}list-{N // 3:05d}.ics"
        before = colors(c)
        assert before[target] is None and colors(c) == before  # the second one from the caches
        patch(c, target, "<D:set><D:prop><X:color>teal</X:color></D:prop></D:set>")
        after = colors(c)
        assert after[target] == "teal"
        assert {h: v for h, v in after.items() if h != target} == \
            {h: v for h, v in before.items() if h != target}
        patch(c, target, "<D:set><D:prop><X:color>plum</X:color></D:prop></D:set>")
        assert colors(c)[target] == "plum"
        patch(c, target, "<D:remove><D:prop><X:color/></D:prop></D:remove>")
        assert colors(c) == before


def test_writes_inside_cached_pages_list_exactly_the_new_state(big: Server) -> None:
    """A changed page is rendered again over its old range (dav/listing.py): members
    that come inside a page, a page's whole range emptied, and a burst of more than two
    pages into one range all list exactly the new state, in order, with no member twice
    or missing, before and after the pages are cached again."""
    names_first = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
                   b"<D:resourcetype/><D:getetag/></D:prop></D:propfind>")  # another cache key
    with big.client() as c:
        before = _members(c.request("PROPFIND", CAL, headers={"Depth": "1"}, content=ETAGS).content)
        names = sorted(before)
        inside = [f"{names[k][:-4]}-in.ics" for k in (5, PAGE + 7, 9 * PAGE + 1)]
        gone = names[3 * PAGE - 2:4 * PAGE + 2]  # more than one page's range
        burst = [f"{names[20 * PAGE + 3][:-4]}-b{j:03d}.ics" for j in range(2 * PAGE + 15)]
        for k, href in enumerate(inside + burst):
            assert c.put(href, content=vcalendar([_event(20_000 + k)]),
                         headers={"Content-Type": "text/calendar"}).status_code == 201
        for href in gone:
            assert c.delete(href).status_code == 204
        expected = set(before) - set(gone) | set(inside) | set(burst)
        bodies = [c.request("PROPFIND", CAL, headers={"Depth": "1"}, content=ETAGS).content
                  for _ in range(2)]
        assert bodies[0] == bodies[1]  # the second one from the cache
        for body in bodies[0], c.request("PROPFIND", CAL, headers={"Depth": "1"},
                                          content=names_first).content:
            after = _members(body)
            assert set(after) == expected
            assert list(after) == sorted(after)
            assert all(after[h] == before[h] for h in before if h in after)
        assert _members(_sync(c).content) == _members(bodies[0])


def test_streamed_initial_sync_then_incremental_loses_nothing(big: Server) -> None:
    """The token of a streamed initial sync taken while another client writes, followed
    by an incremental sync, gives exactly the final state: nothing lost, nothing stale."""
    stop = threading.Event()
    errors: list[str] = []
    counter = itertools.count(1)

    def writer() -> None:
        with big.client() as w:
            while not stop.is_set():
                k = next(counter)
                i = (k * 37) % N
                r = w.put(f"{CAL}list-{i:05d}.ics", content=vcalendar([_event(i, f"Rev {k}")]),
                          headers={"Content-Type": "text/calendar"})
                if r.status_code not in (201, 204):
                    errors.append(f"PUT {r.status_code} {r.text[:200]}")
                r = w.put(f"{CAL}w-{k}.ics", content=vcalendar([_event(10_000 + k)]),
                          headers={"Content-Type": "text/calendar"})
                if r.status_code != 201:
                    errors.append(f"PUT new {r.status_code} {r.text[:200]}")
                if k % 3 == 0:
                    r = w.delete(f"{CAL}list-{(k * 53) % N:05d}.ics")
                    if r.status_code not in (204, 404):
                        errors.append(f"DELETE {r.status_code}")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with big.client() as c:
            for _ in range(3):
                initial = _sync(c)
                assert initial.status_code == 207
                assert initial.headers.get("transfer-encoding") == "chunked"
                state = _members(initial.content)
                token = _token(initial.content)
                # The client applies the changes since its token, as DAVx5 does.
                inc = _sync(c, token)
                assert inc.status_code == 207
                root = ET.fromstring(inc.content)
                for resp in root.findall(f"{D}response"):
                    href = resp.findtext(f"{D}href") or ""
                    if resp.findtext(f"{D}status", "").endswith("404 Not Found"):
                        state.pop(href, None)
                    else:
                        state[href] = resp.findtext(f"{D}propstat/{D}prop/{D}getetag") or ""
                stop.set()
                thread.join()
                # With the writes stopped, one more incremental sync brings the client to
                # the server's final state, which a fresh listing shows.
                last = _sync(c, _token(inc.content))
                for resp in ET.fromstring(last.content).findall(f"{D}response"):
                    href = resp.findtext(f"{D}href") or ""
                    if resp.findtext(f"{D}status", "").endswith("404 Not Found"):
                        state.pop(href, None)
                    else:
                        state[href] = resp.findtext(f"{D}propstat/{D}prop/{D}getetag") or ""
                final = _members(c.request("PROPFIND", CAL, headers={"Depth": "1"},
                                           content=ETAGS).content)
                assert state == final
                stop.clear()
                thread = threading.Thread(target=writer)
                thread.start()
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[:5]


def test_clients_leaving_mid_listing_leave_nothing_held(big: Server) -> None:
    """A client that reads the start of a streamed listing and hangs up: its snapshot
    and connection go back (30 of them: more than the 24 pooled connections a leak
    would exhaust), and the server answers the next listing in full."""
    for _ in range(30):
        with big.client() as c:
            with c.stream("PROPFIND", CAL, headers={"Depth": "1"}, content=ETAGS) as r:
                assert r.status_code == 207
                assert next(r.iter_raw()).startswith(b"<?xml")
    with big.client() as c:
        r = c.request("PROPFIND", CAL, headers={"Depth": "1"}, content=ETAGS)
        assert r.status_code == 207 and len(_members(r.content)) >= N - 1
        assert _sync(c).status_code == 207


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    engine = engine_mod.create(database_url)
    engine_mod.ensure_schema(engine)
    s = Store(engine, tmp_path / "tmp")
    users.add_user(s, "alice", "password-1", A)
    yield s
    engine.dispose()


def test_snapshot_pages_are_one_state(store: Store) -> None:
    """Writes that commit while a listing is read page by page are not in it, and its
    seq is the collection's seq before them: the next sync reports each of them once."""
    alice = store.principal("alice")
    assert alice is not None
    col = "files/alice/list"
    store.mkcol(col, alice.id, A)
    for i in range(30):
        store.put(f"{col}/m{i:02d}.txt", alice.id, f"v1 {i}".encode(), "text/plain", A)
    store.mkcol(f"{col}/sub", alice.id, A)
    store.put(f"{col}/sub/deep.txt", alice.id, b"deep", "text/plain", A)
    before = {r.path: r.etag for r in store.children(col)}
    seq = store.collection_seq(col)
    snap = Snapshot(store, col)
    try:
        assert snap.seq == seq
        got = snap.page("", 7)
        stamp = snap.stamp("", got[-1].path)
        assert stamp_of(got) == stamp  # what a page says of itself is what the query says
        first = got[-1].path
        # After the first page: a member of a later page changes, one goes, one comes.
        store.put(f"{col}/m20.txt", alice.id, b"v2", "text/plain", A)
        store.delete(f"{col}/m25.txt", A)
        store.put(f"{col}/m99.txt", alice.id, b"new", "text/plain", A)
        while True:
            page = snap.page(got[-1].path, 7)
            if not page:
                break
            got += page
        assert {r.path: r.etag for r in got} == before  # the state when it began
        later = snap.stamp(first, got[-1].path)
        assert f"{col}/sub/deep.txt" not in before  # members only, not descendants
    finally:
        snap.close()
    snap.close()  # idempotent
    again = Snapshot(store, col)
    try:
        assert again.seq > seq
        # The first page's range did not change: same stamp; the later ranges did.
        assert again.stamp("", first) == stamp
        assert again.stamp(first, got[-1].path) != later
    finally:
        again.close()


def test_snapshot_rows_are_its_pages_as_tuples(store: Store) -> None:
    """``rows`` (the listing's hot path, the driver's tuples) holds what ``page`` holds."""
    alice = store.principal("alice")
    assert alice is not None
    col = "files/alice/rows"
    store.mkcol(col, alice.id, A)
    for i in range(12):
        store.put(f"{col}/m{i:02d}.txt", alice.id, f"v {i}".encode(), "text/plain", A)
    store.mkcol(f"{col}/sub", alice.id, A)
    store.proppatch(f"{col}/m03.txt", {"{urn:x}color": "<color xmlns='urn:x'>red</color>"}, [], A)
    snap = Snapshot(store, col)
    try:
        pages = snap.page("", 100)
        rows = [Row(*r) for r in snap.rows("", 100)]
        assert [r.path for r in rows] == [p.path for p in pages]
        for r, p in zip(rows, pages, strict=True):
            assert (r.kind, r.etag, r.size, r.content_type, r.seq, r.created_at, r.modified_at) \
                == (p.kind, p.etag, p.size, p.content_type, p.seq, p.created_at, p.modified_at)
            assert (json.loads(r.props) if r.props != "{}" else {}) == p.props
        assert stamp_of_rows(snap.rows("", 100)) == stamp_of(pages)
        assert [r[0] for r in snap.rows("", 5)] == [p.path for p in pages[:5]]
        assert [r[0] for r in snap.rows(pages[2].path, 100, pages[6].path)] == \
            [p.path for p in pages[3:7]]
        assert [r[0] for r in snap.rows(pages[2].path, 2, pages[6].path)] == \
            [p.path for p in pages[3:5]]
        assert snap.rows(pages[-1].path, 100) == []
    finally:
        snap.close()


def test_two_pages_and_members_added_at_the_end(big: Server) -> None:
    """A listing of two pages is read whole before the status line and still sent
    chunked; members added after its last page join that page while it has room, so a
    listing of one page stays one piece with a Content-Length."""
    col = "/dav/files/alice/tail/"
    with big.client() as c:
        assert c.request("MKCOL", col).status_code == 201
        for i in range(PAGE + PAGE // 2):
            assert c.put(f"{col}m{i:03d}.txt", content=b"x").status_code == 201
        two = c.request("PROPFIND", col, headers={"Depth": "1"}, content=ETAGS)
        assert two.status_code == 207 and two.headers.get("transfer-encoding") == "chunked"
        assert len(_members(two.content)) == PAGE + PAGE // 2
        one = "/dav/files/alice/tail-one/"
        assert c.request("MKCOL", one).status_code == 201
        for i in range(PAGE // 2):
            assert c.put(f"{one}m{i:03d}.txt", content=b"x").status_code == 201
        for i in range(PAGE // 2):  # listed after each write at the end
            r = c.request("PROPFIND", one, headers={"Depth": "1"}, content=ETAGS)
            assert r.status_code == 207 and "content-length" in r.headers
            assert len(_members(r.content)) == PAGE // 2 + i
            assert c.put(f"{one}z{i:03d}.txt", content=b"x").status_code == 201
        r = c.request("PROPFIND", one, headers={"Depth": "1"}, content=ETAGS)
        assert len(_members(r.content)) == PAGE and "content-length" in r.headers
