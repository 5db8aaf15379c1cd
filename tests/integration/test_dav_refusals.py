"""CalDAV/CardDAV preconditions that COPY, MOVE, PROPPATCH and REPORT must honour as
PUT and MKCALENDAR do, over real HTTP: the RFC's precondition element, a message, and
nothing changed.

- COPY and MOVE are held to the destination's preconditions (RFC 4791 §5.3.2.1,
  RFC 6352 §6.3.2.1): a calendar object to its calendar's
  supported-calendar-component-set, an object or a vCard to the UID uniqueness of its
  collection, a calendar or an address book to the places one may be created.
- PROPPATCH of CALDAV:calendar-timezone is checked as at MKCALENDAR (RFC 4791 §5.2.2).
- A report that a calendar or an address book does not list in its
  DAV:supported-report-set is 403 DAV:supported-report (RFC 3253 §3.6).
"""

from __future__ import annotations

from collections.abc import Iterator
from xml.etree import ElementTree as ET

import httpx
import pytest

from tests.support.clients import dav_error
from tests.support.server import Server

CALDAV = "urn:ietf:params:xml:ns:caldav"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
CALS = "/dav/calendars/alice"
BOOKS = "/dav/addressbooks/alice"
EVENTS_ONLY = (f'<C:mkcalendar xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:set><D:prop>'
               '<C:supported-calendar-component-set><C:comp name="VEVENT"/>'
               "</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>")
ADDRESSBOOK = (f'<D:mkcol xmlns:D="DAV:" xmlns:CR="{CARDDAV}"><D:set><D:prop><D:resourcetype>'
               "<D:collection/><CR:addressbook/></D:resourcetype></D:prop></D:set></D:mkcol>")


def event(uid: str) -> bytes:
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
            "DTSTAMP:20261101T000000Z\r\nDTSTART:20261102T100000Z\r\nDTEND:20261102T110000Z\r\n"
            "SUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n").encode()


def todo(uid: str) -> bytes:
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VTODO\r\nUID:{uid}\r\n"
            "DTSTAMP:20261101T000000Z\r\nSUMMARY:x\r\nEND:VTODO\r\nEND:VCALENDAR\r\n").encode()


def card(uid: str) -> bytes:
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:Ann {uid}\r\nEND:VCARD\r\n".encode()


@pytest.fixture(scope="module")
def alice(server: Server) -> Iterator[httpx.Client]:
    with server.client("alice") as c:
        for name in ("events", "other"):
            r = c.request("MKCALENDAR", f"{CALS}/{name}/", content=EVENTS_ONLY.encode(),
                          headers={"Content-Type": "application/xml"})
            assert r.status_code == 201, r.text
        r = c.request("MKCOL", f"{BOOKS}/other/", content=ADDRESSBOOK.encode(),
                      headers={"Content-Type": "application/xml"})
        assert r.status_code == 201, r.text
        yield c


@pytest.mark.parametrize("method", ["COPY", "MOVE"])
def test_copy_move_into_a_calendar_without_the_component_is_refused(
        server: Server, alice: httpx.Client, method: str) -> None:
    src, dst = f"{CALS}/personal/todo-{method}.ics", f"{CALS}/events/todo-{method}.ics"
    assert alice.put(src, content=todo(f"todo-{method}")).status_code == 201
    changes = server.changes()
    r = alice.request(method, src, headers={"Destination": server.url + dst})
    dav_error(r, 403, CALDAV, "supported-calendar-component")
    assert alice.get(dst).status_code == 404
    assert alice.get(src).content == todo(f"todo-{method}")
    assert server.changes() == changes, f"a refused {method} changed the log"
    # A component the destination takes is still copied or moved.
    ok = f"{CALS}/personal/event-{method}.ics"
    assert alice.put(ok, content=event(f"event-{method}")).status_code == 201
    r = alice.request(method, ok, headers={"Destination": f"{server.url}{CALS}/events/ok-{method}.ics"})
    assert r.status_code == 201, r.text
    assert alice.get(f"{CALS}/events/ok-{method}.ics").content == event(f"event-{method}")


@pytest.mark.parametrize("method", ["COPY", "MOVE"])
@pytest.mark.parametrize("kind", ["calendar", "addressbook"])
def test_copy_move_onto_a_uid_in_use_names_the_resource(
        server: Server, alice: httpx.Client, method: str, kind: str) -> None:
    if kind == "calendar":
        home, body, ext, namespace = CALS, event(f"same-{method}"), "ics", CALDAV
        first, second = "events", "other"
    else:
        home, body, ext, namespace = BOOKS, card(f"same-{method}"), "vcf", CARDDAV
        first, second = "contacts", "other"
    src = f"{home}/{first}/a-{method}.{ext}"
    holder = f"{home}/{second}/held-{method}.{ext}"
    dst = f"{home}/{second}/b-{method}.{ext}"
    assert alice.put(src, content=body).status_code == 201
    assert alice.put(holder, content=body).status_code == 201
    changes = server.changes()
    r = alice.request(method, src, headers={"Destination": server.url + dst})
    root = dav_error(r, 409, namespace, "no-uid-conflict")
    cond = root.find(f"{{{namespace}}}no-uid-conflict")
    assert cond is not None and cond.findtext("{DAV:}href") == holder, r.text
    assert holder in (root.findtext("{DAV:}responsedescription") or ""), r.text
    assert alice.get(dst).status_code == 404
    assert alice.get(src).content == body
    assert server.changes() == changes, f"a refused {method} changed the log"


@pytest.mark.parametrize("method", ["COPY", "MOVE"])
@pytest.mark.parametrize(("src", "dst", "namespace", "condition"), [
    (f"{CALS}/events/", "/dav/files/alice/cal/", CALDAV, "calendar-collection-location-ok"),
    (f"{CALS}/events/", f"{BOOKS}/cal/", CALDAV, "calendar-collection-location-ok"),
    (f"{BOOKS}/contacts/", f"{CALS}/book/", CARDDAV, "addressbook-collection-location-ok"),
    ("/dav/files/alice/dir/", f"{CALS}/personal/dir/", None, None),
    ("/dav/files/alice/dir/", f"{CALS}/dir/", None, None),
], ids=["calendar-to-files", "calendar-to-book-home", "book-to-calendar-home",
        "files-into-calendar", "files-to-calendar-home"])
def test_copy_move_of_a_collection_where_it_cannot_be_is_refused(
        server: Server, alice: httpx.Client, method: str, src: str, dst: str,
        namespace: str | None, condition: str | None) -> None:
    if src.startswith("/dav/files/") and alice.get(f"{src}a.txt").status_code == 404:
        assert alice.request("MKCOL", src).status_code == 201
        assert alice.put(f"{src}a.txt", content=b"not a calendar object").status_code == 201
    changes = server.changes()
    r = alice.request(method, src, headers={"Destination": server.url + dst})
    if condition is None:
        assert r.status_code == 403, (r.status_code, r.text)
    else:
        assert namespace is not None
        dav_error(r, 403, namespace, condition)
    assert alice.request("PROPFIND", dst, headers={"Depth": "0"}).status_code == 404
    assert alice.request("PROPFIND", src, headers={"Depth": "0"}).status_code == 207
    assert server.changes() == changes, f"a refused {method} changed the log"


def test_copy_move_of_a_calendar_within_its_home_is_allowed(alice: httpx.Client,
                                                            server: Server) -> None:
    r = alice.request("COPY", f"{CALS}/events/", headers={"Destination": f"{server.url}{CALS}/copied/"})
    assert r.status_code == 201, r.text
    r = alice.request("MOVE", f"{CALS}/copied/", headers={"Destination": f"{server.url}{CALS}/moved/"})
    assert r.status_code == 201, r.text
    assert alice.request("PROPFIND", f"{CALS}/moved/", headers={"Depth": "0"}).status_code == 207


def test_put_onto_a_uid_in_use_names_the_url_path(alice: httpx.Client) -> None:
    held = f"{CALS}/events/held-put.ics"
    assert alice.put(held, content=event("same-put")).status_code == 201
    r = alice.put(f"{CALS}/events/again-put.ics", content=event("same-put"))
    root = dav_error(r, 409, CALDAV, "no-uid-conflict")
    assert f"already used by {held}" in (root.findtext("{DAV:}responsedescription") or ""), r.text


def proppatch(c: httpx.Client, url: str, props: str) -> httpx.Response:
    return c.request("PROPPATCH", url, headers={"Content-Type": "application/xml"}, content=(
        f'<D:propertyupdate xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:set><D:prop>{props}'
        "</D:prop></D:set></D:propertyupdate>").encode())


def props_of(c: httpx.Client, url: str) -> bytes:
    r = c.request("PROPFIND", url, headers={"Depth": "0"}, content=(
        f'<D:propfind xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:prop><D:displayname/>'
        "<C:calendar-timezone/></D:prop></D:propfind>").encode())
    assert r.status_code == 207, r.text
    return r.content


def test_proppatch_of_a_calendar_timezone_without_vtimezone_is_refused(
        server: Server, alice: httpx.Client) -> None:
    url = f"{CALS}/events/"
    before, changes = props_of(alice, url), server.changes()
    r = proppatch(alice, url, "<D:displayname>Renamed</D:displayname>"
                              "<C:calendar-timezone>garbage</C:calendar-timezone>")
    assert r.status_code == 207, r.text
    statuses: dict[str, tuple[str, ET.Element | None]] = {}
    for ps in ET.fromstring(r.content).iter("{DAV:}propstat"):
        prop = ps.find("{DAV:}prop")
        assert prop is not None
        for p in prop:
            statuses[p.tag] = (ps.findtext("{DAV:}status") or "", ps.find("{DAV:}error"))
    status, error = statuses[f"{{{CALDAV}}}calendar-timezone"]
    assert " 403 " in status and error is not None, r.text
    assert error.find(f"{{{CALDAV}}}valid-calendar-data") is not None, r.text
    assert " 424 " in statuses["{DAV:}displayname"][0], r.text
    assert props_of(alice, url) == before
    assert server.changes() == changes, "a refused PROPPATCH changed the log"
    # A VTIMEZONE is still taken.
    vtimezone = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VTIMEZONE\r\n"
                 "TZID:UTC\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\nTZOFFSETFROM:+0000\r\n"
                 "TZOFFSETTO:+0000\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nEND:VCALENDAR\r\n")
    r = proppatch(alice, url, f"<C:calendar-timezone>{vtimezone}</C:calendar-timezone>")
    assert r.status_code == 207 and " 200 " in r.text and " 403 " not in r.text, r.text


CAL_QUERY = (f'<C:calendar-query xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:prop><D:getetag/></D:prop>'
             '<C:filter><C:comp-filter name="VCALENDAR"/></C:filter></C:calendar-query>')
CAL_MULTIGET = (f'<C:calendar-multiget xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:prop><D:getetag/>'
                f"</D:prop><D:href>{BOOKS}/contacts/x.vcf</D:href></C:calendar-multiget>")
FREE_BUSY = (f'<C:free-busy-query xmlns:C="{CALDAV}"><C:time-range start="20261101T000000Z" '
             'end="20261201T000000Z"/></C:free-busy-query>')
BOOK_QUERY = (f'<CR:addressbook-query xmlns:D="DAV:" xmlns:CR="{CARDDAV}"><D:prop><D:getetag/>'
              "</D:prop></CR:addressbook-query>")
BOOK_MULTIGET = (f'<CR:addressbook-multiget xmlns:D="DAV:" xmlns:CR="{CARDDAV}"><D:prop><D:getetag/>'
                 f"</D:prop><D:href>{CALS}/events/x.ics</D:href></CR:addressbook-multiget>")


@pytest.mark.parametrize("depth", ["0", "1"])
@pytest.mark.parametrize(("collection", "body"), [
    (f"{BOOKS}/contacts/", CAL_QUERY), (f"{BOOKS}/contacts/", CAL_MULTIGET),
    (f"{BOOKS}/contacts/", FREE_BUSY),
    (f"{CALS}/events/", BOOK_QUERY), (f"{CALS}/events/", BOOK_MULTIGET),
], ids=["calendar-query", "calendar-multiget", "free-busy-query", "addressbook-query",
        "addressbook-multiget"])
def test_report_of_the_other_protocol_is_refused(alice: httpx.Client, collection: str, body: str,
                                                 depth: str) -> None:
    r = alice.request("REPORT", collection, headers={"Depth": depth, "Content-Type": "application/xml"},
                      content=body.encode())
    dav_error(r, 403, "DAV:", "supported-report")
    # The collection's own reports still answer.
    own = CAL_QUERY if collection.startswith(CALS) else BOOK_QUERY
    r = alice.request("REPORT", collection, headers={"Depth": depth, "Content-Type": "application/xml"},
                      content=own.encode())
    assert r.status_code == 207, r.text
