"""Broken calendar and address data, and odd REPORTs and request targets, over real HTTP:
a 4xx with the RFC's precondition element and a message, never a 500, and nothing stored.

The corpus files are the ones the parser-level tests (tests/unit/test_ical.py,
test_vcard.py) refuse; here the whole server must refuse them the same way: no new
change in the log, no new sync token, no resource at the URL.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx
import pytest

from tests.support.clients import dav_error, sync_token
from tests.support.server import Server

CALDAV = "urn:ietf:params:xml:ns:caldav"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
CORPUS = Path(__file__).resolve().parents[1] / "corpus"
INVALID_ICAL = sorted((CORPUS / "ical" / "invalid").glob("*.ics"))
INVALID_VCARD = sorted((CORPUS / "vcard" / "invalid").glob("*.vcf"))
CAL = "/dav/calendars/alice/anything"  # no supported-calendar-component-set: all components
BOOK = "/dav/addressbooks/alice/contacts"
RECURRING = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
             b"UID:daily@example.org\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:20240101T100000Z\r\n"
             b"DTEND:20240101T110000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


@pytest.fixture(scope="module")
def alice(server: Server) -> Iterator[httpx.Client]:
    with server.client("alice") as c:
        assert c.request("MKCALENDAR", f"{CAL}/").status_code == 201
        assert c.put(f"{CAL}/daily.ics", content=RECURRING,
                     headers={"Content-Type": "text/calendar"}).status_code == 201
        yield c


def assert_refused(server: Server, c: httpx.Client, collection: str, body: bytes, content_type: str,
                   status: int, condition: str, namespace: str) -> None:
    url = f"{collection}/refused-{len(server.changes())}.{'ics' if collection == CAL else 'vcf'}"
    changes, token = server.changes(), sync_token(c, f"{collection}/")
    dav_error(c.put(url, content=body, headers={"Content-Type": content_type}), status, namespace,
              condition)
    assert c.get(url).status_code == 404
    assert server.changes() == changes, "a refused PUT changed the log"
    assert sync_token(c, f"{collection}/") == token


@pytest.mark.parametrize("path", INVALID_ICAL, ids=lambda p: p.stem)
def test_invalid_calendar_data_is_refused_over_http(server: Server, alice: httpx.Client,
                                                    path: Path) -> None:
    """RFC 4791 §5.3.2.1: 403 with the precondition named in the file's name."""
    condition = path.name.split("__")[0]
    assert_refused(server, alice, CAL, path.read_bytes(), "text/calendar; charset=utf-8", 403,
                   condition, CALDAV)


@pytest.mark.parametrize("path", INVALID_VCARD, ids=lambda p: p.stem)
def test_invalid_address_data_is_refused_over_http(server: Server, alice: httpx.Client,
                                                   path: Path) -> None:
    """RFC 6352 §6.3.2.1: 403 with CARDDAV:valid-address-data."""
    assert_refused(server, alice, BOOK, path.read_bytes(), "text/vcard; charset=utf-8", 403,
                   "valid-address-data", CARDDAV)


def test_expand_over_all_of_time_is_not_an_overflow(alice: httpx.Client) -> None:
    """An expand from year 1 to 9999 ("everything") was a 500 (OverflowError)."""
    body = (f'<C:calendar-query xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:prop><C:calendar-data>'
            '<C:expand start="00010101T000000Z" end="99991231T235959Z"/></C:calendar-data></D:prop>'
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"/>'
            "</C:comp-filter></C:filter></C:calendar-query>").encode()
    r = alice.request("REPORT", f"{CAL}/", headers={"Depth": "1"}, content=body)
    assert r.status_code == 207, r.text[:2000]
    assert r.text.count("RECURRENCE-ID:2024010") == 3, r.text


def test_free_busy_over_centuries_is_refused_with_the_postcondition(alice: httpx.Client) -> None:
    """Free-busy over 1800-2200 of an open-ended daily event was 146,000 periods (8 MB, 3.5 s
    of CPU per event with the GIL held); RFC 4791 §7.10 names the postcondition to refuse with."""
    cal = "/dav/calendars/alice/free-busy-cap"
    assert alice.request("MKCALENDAR", f"{cal}/").status_code == 201
    endless = RECURRING.replace(b"UID:daily@", b"UID:endless@").replace(b";COUNT=3", b"")
    assert alice.put(f"{cal}/endless.ics", content=endless,
                     headers={"Content-Type": "text/calendar"}).status_code == 201

    def free_busy(start: str, end: str) -> httpx.Response:
        body = (f'<C:free-busy-query xmlns:C="{CALDAV}"><C:time-range start="{start}" end="{end}"/>'
                "</C:free-busy-query>").encode()
        return alice.request("REPORT", f"{cal}/", headers={"Depth": "1"}, content=body)

    r = free_busy("18000101T000000Z", "22000101T000000Z")
    assert r.status_code == 403, (r.status_code, r.content[:300])
    root = ET.fromstring(r.content)
    assert root.find("{DAV:}number-of-matches-within-limits") is not None, r.text
    assert "shorter time-range" in (root.findtext("{DAV:}responsedescription") or ""), r.text
    r = free_busy("20261102T000000Z", "20261109T000000Z")
    assert r.status_code == 200 and r.text.count("FREEBUSY;FBTYPE=BUSY:") == 7, r.text


def test_multiget_href_that_is_no_url_is_404(alice: httpx.Client) -> None:
    """An href urlsplit cannot read (a broken IPv6 host) was a 500; it names nothing."""
    body = (f'<C:calendar-multiget xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:prop><D:getetag/></D:prop>'
            f"<D:href>http://[::1{CAL}/daily.ics</D:href><D:href>{CAL}/daily.ics</D:href>"
            "</C:calendar-multiget>").encode()
    r = alice.request("REPORT", f"{CAL}/", headers={"Depth": "1"}, content=body)
    assert r.status_code == 207, r.text[:2000]
    statuses = [(resp.findtext("{DAV:}href"), resp.findtext("{DAV:}status") or
                 resp.findtext("{DAV:}propstat/{DAV:}status"))
                for resp in ET.fromstring(r.content).iter("{DAV:}response")]
    assert statuses == [(f"http://[::1{CAL}/daily.ics", "HTTP/1.1 404 Not Found"),
                        (f"{CAL}/daily.ics", "HTTP/1.1 200 OK")], statuses


@pytest.mark.parametrize("method", ["OPTIONS", "GET", "PROPFIND", "PUT"])
def test_asterisk_request_target_is_not_a_500(server: Server, method: str) -> None:
    """"OPTIONS *" (RFC 9110 §7.1) and any other method with "*" as the target were 500s
    (the router assumed a path starting with "/")."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, "*", body=b"x" if method == "PUT" else None)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 404, (resp.status, body[:300])
    assert b"Traceback" not in body and b"internal error" not in body


def test_tzid_with_an_unquoted_comma_is_stored_as_sent(alice: httpx.Client) -> None:
    """icalendar splits such a TZID into a list, which was a 500 (TypeError); it is an
    unknown zone (floating times), and the bytes are kept as sent (promise 3)."""
    body = RECURRING.replace(b"UID:daily@", b"UID:comma@").replace(b"RRULE:FREQ=DAILY;COUNT=3\r\n", b"").replace(
        b"DTSTART:20240101T100000Z", b"DTSTART;TZID=Europe/B,erlin:20240101T100000").replace(
        b"DTEND:20240101T110000Z", b"DTEND;TZID=Europe/B,erlin:20240101T110000")
    r = alice.put(f"{CAL}/comma.ics", content=body, headers={"Content-Type": "text/calendar"})
    assert r.status_code == 201, r.text[:2000]
    assert alice.get(f"{CAL}/comma.ics").content == body


@pytest.mark.parametrize("charset", ["idna"])
def test_vcard_with_a_charset_python_cannot_decode_with_is_stored(alice: httpx.Client, charset: str) -> None:
    """Quoted-printable FN with such a CHARSET was a 500 (UnicodeError); an unknown charset
    is read as UTF-8 for the index, and the bytes are kept as sent. (A CHARSET with a NUL in
    it, the other 500, is now refused: corpus vcard/invalid/nul-in-charset-param.vcf.)"""
    body = (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:charset-{len(charset)}\r\n"
            f"FN;CHARSET={charset};ENCODING=QUOTED-PRINTABLE:Ren=C3=A9\r\nEND:VCARD\r\n").encode()
    url = f"{BOOK}/charset-{len(charset)}.vcf"
    r = alice.put(url, content=body, headers={"Content-Type": "text/vcard"})
    assert r.status_code == 201, r.text[:2000]
    assert alice.get(url).content == body


@pytest.mark.parametrize("time_range", ['start="20230101T000000Z"', 'end="20240101T000000Z"'])
def test_alarm_query_with_an_open_ended_range_is_not_an_overflow(alice: httpx.Client,
                                                                 time_range: str) -> None:
    """A VALARM time-range with one end open, over a recurring event with an alarm, was a 500
    (OverflowError widening year 1 or 9999 by the alarm's reach)."""
    body = RECURRING.replace(b"UID:daily@", b"UID:alarm@").replace(b"20240101T", b"20230301T").replace(
        b"END:VEVENT", b"BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:x\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\nEND:VEVENT")
    assert alice.put(f"{CAL}/alarm.ics", content=body,
                     headers={"Content-Type": "text/calendar"}).status_code in (201, 204)
    query = (f'<C:calendar-query xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:prop><D:getetag/></D:prop>'
             '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
             f'<C:comp-filter name="VALARM"><C:time-range {time_range}/></C:comp-filter>'
             "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>").encode()
    r = alice.request("REPORT", f"{CAL}/", headers={"Depth": "1"}, content=query)
    assert r.status_code == 207, r.text[:2000]
    assert f"{CAL}/alarm.ics" in r.text
