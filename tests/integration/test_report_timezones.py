"""Floating and all-day times in time-range reports, over real HTTP (RFC 4791 §7.3, §9.8,
§9.9): a calendar-query reads them in the zone of its CALDAV:timezone, else in the
calendar's CALDAV:calendar-timezone, else (no zone anywhere) in UTC as before; a
free-busy-query, and a calendar-multiget's expand and limit-recurrence-set, in the
property's zone. MKCALENDAR and PROPPATCH take only a property value that such a report
can read (RFC 4791 §5.2.2, §5.3.1.1). A phone in New York asking for 1 November from
00:00 UTC must get the all-day event of 31 October, which lasts there until 04:00 UTC.

The index keeps floating times widened for the zones of UTC-12 to UTC+14
(ical.CalendarInfo); the "far" zones below (UTC±20, which a VTIMEZONE may declare) show
that the lookup and the decisions taken from the index alone hold beyond them too."""

from __future__ import annotations

from collections.abc import Iterator
from xml.etree import ElementTree as ET

import httpx
import pytest

from tests.support.clients import dav_error
from tests.support.server import Server

CALDAV = "urn:ietf:params:xml:ns:caldav"
D, C = "{DAV:}", f"{{{CALDAV}}}"
CALS = "/dav/calendars/alice"
PLAIN, NEW_YORK, FAR = f"{CALS}/tz-plain/", f"{CALS}/tz-new-york/", f"{CALS}/tz-far/"
XML = {"Content-Type": "application/xml; charset=utf-8"}
NOV_1, NOV_2 = "20261101T000000Z", "20261102T000000Z"


def vtimezone(tzid: str, *rules: tuple[str, str, str, str, str]) -> str:
    """A VCALENDAR holding one VTIMEZONE with (kind, DTSTART, RRULE, from, to) rules."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//safehold tests//EN", "BEGIN:VTIMEZONE",
             f"TZID:{tzid}"]
    for kind, start, rule, offset_from, offset_to in rules:
        lines += [f"BEGIN:{kind}", f"DTSTART:{start}"] + ([f"RRULE:{rule}"] if rule else []) + [
            f"TZOFFSETFROM:{offset_from}", f"TZOFFSETTO:{offset_to}", f"END:{kind}"]
    return "\r\n".join([*lines, "END:VTIMEZONE", "END:VCALENDAR"]) + "\r\n"


US_RULES = (("DAYLIGHT", "20070311T020000", "FREQ=YEARLY;BYMONTH=3;BYDAY=2SU", "-0500", "-0400"),
            ("STANDARD", "20071104T020000", "FREQ=YEARLY;BYMONTH=11;BYDAY=1SU", "-0400", "-0500"))
IANA_NEW_YORK = vtimezone("America/New_York", *US_RULES)  # resolved by its IANA name
OWN_EASTERN = vtimezone("US-Eastern", *US_RULES)  # resolved from its own rules
UTC = vtimezone("UTC", ("STANDARD", "19700101T000000", "", "+0000", "+0000"))
PLUS_20 = vtimezone("Test-Plus-20", ("STANDARD", "19700101T000000", "", "+2000", "+2000"))
MINUS_20 = vtimezone("Test-Minus-20", ("STANDARD", "19700101T000000", "", "-2000", "-2000"))

# The same objects in PLAIN and NEW_YORK. In New York, 1 November 2026 (00:00-24:00 UTC)
# is 31 October 20:00 EDT to 1 November 19:00 EST (summer time ends at 02:00 that day).
EVENTS = {
    # Ends at midnight: 2026-11-01T00:00Z read in UTC (no overlap), 04:00Z in New York.
    "all-day": "DTSTART;VALUE=DATE:20261031",
    # 22:00-23:00Z on 31 October in UTC; 02:00-03:00Z on 1 November in New York.
    "late": "DTSTART:20261031T220000\r\nDURATION:PT1H",
    # 23:00Z on 1 November in UTC (inside); 04:00Z on 2 November in New York (outside).
    "edge": "DTSTART:20261101T230000\r\nDURATION:PT1H",
    # In UTC: the same instant in every zone.
    "utc": "DTSTART:20261101T120000Z\r\nDURATION:PT1H",
    # Saturdays 22:00 floating: the one of 31 October falls on 1 November UTC in New York.
    "weekly": "DTSTART:20261003T220000\r\nDURATION:PT1H\r\nRRULE:FREQ=WEEKLY;COUNT=10",
}
READ_IN_UTC = {"edge", "utc"}
READ_IN_NEW_YORK = {"all-day", "late", "utc", "weekly"}
FAR_EVENTS = {
    # In UTC+20: 2026-10-31T23:30Z to 1 November 00:30Z. Indexed (floating, widened for
    # UTC+14 at most) from 1 November 05:30Z.
    "far-plus": "DTSTART:20261101T193000\r\nDURATION:PT1H",
    # In UTC-20: 2026-11-03T01:00Z. Indexed (widened for UTC-12 at most) up to
    # 2 November 18:00Z, well inside 1-3 November.
    "far-minus": "DTSTART:20261102T050000\r\nDURATION:PT1H",
}


def ics(uid: str, times: str) -> bytes:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//safehold tests//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20261001T000000Z\r\n{times}\r\nSUMMARY:{uid}\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n").encode()


def mkcalendar(c: httpx.Client, path: str, timezone: str | None = None) -> None:
    prop = "" if timezone is None else (
        f"<D:set><D:prop><C:calendar-timezone>{timezone}</C:calendar-timezone></D:prop></D:set>")
    body = f'<C:mkcalendar xmlns:D="DAV:" xmlns:C="{CALDAV}">{prop}</C:mkcalendar>'
    r = c.request("MKCALENDAR", path, content=body.encode(), headers=XML)
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def alice(server: Server) -> Iterator[httpx.Client]:
    with server.client("alice") as c:
        mkcalendar(c, PLAIN)
        mkcalendar(c, NEW_YORK, OWN_EASTERN)
        mkcalendar(c, FAR)
        for calendar in (PLAIN, NEW_YORK):
            for name, times in EVENTS.items():
                assert c.put(f"{calendar}{name}.ics", content=ics(name, times)).status_code == 201
        for name, times in FAR_EVENTS.items():
            assert c.put(f"{FAR}{name}.ics", content=ics(name, times)).status_code == 201
        yield c


def query(c: httpx.Client, path: str, start: str, end: str, timezone: str | None = None,
          expand: bool = False, depth: str = "1") -> httpx.Response:
    data = f'<C:calendar-data><C:expand start="{start}" end="{end}"/></C:calendar-data>' if expand else ""
    tz = "" if timezone is None else f"<C:timezone><![CDATA[{timezone}]]></C:timezone>"
    body = (f'<C:calendar-query xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:prop><D:getetag/>{data}</D:prop>'
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            f'<C:time-range start="{start}" end="{end}"/></C:comp-filter></C:comp-filter></C:filter>'
            f"{tz}</C:calendar-query>")
    return c.request("REPORT", path, content=body.encode(), headers={**XML, "Depth": depth})


def found(r: httpx.Response) -> dict[str, str]:
    """name (the href's last segment without .ics) -> calendar-data ("" if not asked for)."""
    assert r.status_code == 207, r.text[:500]
    out = {}
    for resp in ET.fromstring(r.content).iter(f"{D}response"):
        name = (resp.findtext(f"{D}href") or "").rsplit("/", 1)[-1].removesuffix(".ics")
        out[name] = resp.findtext(f".//{C}calendar-data") or ""
    return out


def test_timezone_element_reads_floating_and_all_day_times_in_its_zone(alice: httpx.Client) -> None:
    assert set(found(query(alice, PLAIN, NOV_1, NOV_2))) == READ_IN_UTC, "no zone: as before"
    assert set(found(query(alice, PLAIN, NOV_1, NOV_2, IANA_NEW_YORK))) == READ_IN_NEW_YORK
    # Asked again: the same answer from the match cache, which keeps zones apart.
    assert set(found(query(alice, PLAIN, NOV_1, NOV_2))) == READ_IN_UTC
    assert set(found(query(alice, PLAIN, NOV_1, NOV_2, IANA_NEW_YORK))) == READ_IN_NEW_YORK
    # A UTC zone changes nothing.
    assert set(found(query(alice, PLAIN, NOV_1, NOV_2, UTC))) == READ_IN_UTC


def test_expand_picks_the_instances_of_the_zone(alice: httpx.Client) -> None:
    # The weekly event's instance of Saturday 31 October 22:00 (floating, so kept as
    # written) lies in 1 November UTC in New York only.
    data = found(query(alice, PLAIN, NOV_1, NOV_2, IANA_NEW_YORK, expand=True))["weekly"]
    assert "RECURRENCE-ID:20261031T220000" in data.replace("\n", "\r\n"), data
    assert data.count("BEGIN:VEVENT") == 1, data
    assert "weekly" not in found(query(alice, PLAIN, NOV_1, NOV_2, expand=True))


def test_calendar_timezone_property_applies_unless_the_request_names_a_zone(alice: httpx.Client) -> None:
    assert set(found(query(alice, NEW_YORK, NOV_1, NOV_2))) == READ_IN_NEW_YORK
    # The request's CALDAV:timezone comes first (§9.8).
    assert set(found(query(alice, NEW_YORK, NOV_1, NOV_2, UTC))) == READ_IN_UTC
    # On one object (Depth 0), its calendar's zone.
    assert set(found(query(alice, f"{NEW_YORK}all-day.ics", NOV_1, NOV_2, depth="0"))) == {"all-day"}
    assert set(found(query(alice, f"{PLAIN}all-day.ics", NOV_1, NOV_2, depth="0"))) == set()


def test_zones_beyond_the_index_widening(alice: httpx.Client) -> None:
    # UTC+20: the lookup reaches the object whose indexed envelope starts after the range.
    assert set(found(query(alice, FAR, "20261031T000000Z", NOV_1, PLUS_20))) == {"far-plus"}
    # UTC-20: an envelope inside the range does not decide a match on its own.
    assert set(found(query(alice, FAR, NOV_1, "20261103T000000Z", MINUS_20))) == {"far-plus"}
    assert set(found(query(alice, FAR, NOV_1, "20261103T000000Z"))) == {"far-plus", "far-minus"}


def freebusy(c: httpx.Client, calendar: str) -> list[str]:
    body = (f'<C:free-busy-query xmlns:C="{CALDAV}"><C:time-range start="{NOV_1}" end="{NOV_2}"/>'
            "</C:free-busy-query>")
    r = c.request("REPORT", calendar, content=body.encode(), headers={**XML, "Depth": "1"})
    assert r.status_code == 200, r.text
    return [line.split(":", 1)[1] for line in r.text.splitlines() if line.startswith("FREEBUSY")]


def test_free_busy_reads_floating_times_in_the_calendar_timezone(alice: httpx.Client) -> None:
    # New York: the all-day event until 04:00Z (with "late" and the weekly one inside it).
    assert freebusy(alice, NEW_YORK) == ["20261101T000000Z/20261101T040000Z",
                                         "20261101T120000Z/20261101T130000Z"]
    assert freebusy(alice, PLAIN) == ["20261101T120000Z/20261101T130000Z",
                                      "20261101T230000Z/20261102T000000Z"]


@pytest.mark.parametrize("text", [
    "",
    "not iCalendar",
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n",
    IANA_NEW_YORK.replace("END:VCALENDAR\r\n", OWN_EASTERN[OWN_EASTERN.index("BEGIN:VTIMEZONE"):]),
    vtimezone("Nowhere/Unknown"),
    # dateutil would walk this rule forever, holding a worker for good.
    vtimezone("Endless", ("DAYLIGHT", "20070311T020000", "FREQ=YEARLY;INTERVAL=0;BYMONTH=3;BYDAY=2SU",
                          "-0500", "-0400"), US_RULES[1]),
], ids=["empty", "not-icalendar", "no-vtimezone", "two-vtimezones", "no-rules", "interval-0"])
def test_invalid_timezone_is_refused(server: Server, alice: httpx.Client, text: str) -> None:
    changes = server.changes()
    dav_error(query(alice, PLAIN, NOV_1, NOV_2, text), 403, CALDAV, "valid-calendar-data")
    assert server.changes() == changes


MULTIGET_CAL = f"{CALS}/tz-multiget/"
# Weekly on Saturdays 22:00 floating, the instance of 31 October moved by an hour: in New
# York that instance (and its original time) falls on 1 November UTC, in UTC it does not.
MOVED = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//safehold tests//EN\r\n"
         b"BEGIN:VEVENT\r\nUID:moved\r\nDTSTAMP:20261001T000000Z\r\nDTSTART:20261003T220000\r\n"
         b"DURATION:PT1H\r\nRRULE:FREQ=WEEKLY;COUNT=10\r\nSUMMARY:weekly\r\nEND:VEVENT\r\n"
         b"BEGIN:VEVENT\r\nUID:moved\r\nDTSTAMP:20261001T000000Z\r\nRECURRENCE-ID:20261031T220000\r\n"
         b"DTSTART:20261031T230000\r\nDURATION:PT1H\r\nSUMMARY:moved\r\nEND:VEVENT\r\n"
         b"END:VCALENDAR\r\n")


def multiget(c: httpx.Client, path: str, hrefs: list[str], element: str) -> dict[str, str]:
    """name -> calendar-data of a calendar-multiget with ``element`` (expand or
    limit-recurrence-set) over 1 November UTC."""
    body = (f'<C:calendar-multiget xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:prop><D:getetag/>'
            f'<C:calendar-data><C:{element} start="{NOV_1}" end="{NOV_2}"/></C:calendar-data>'
            "</D:prop>" + "".join(f"<D:href>{h}</D:href>" for h in hrefs) + "</C:calendar-multiget>")
    r = c.request("REPORT", path, content=body.encode(), headers={**XML, "Depth": "1"})
    return {name: data.replace("\r\n", "\n") for name, data in found(r).items()}


def test_multiget_reads_floating_times_in_the_calendar_timezone(alice: httpx.Client) -> None:
    # A calendar with the zone from its creation; the request-URI names it, or the object.
    for path in (NEW_YORK, f"{NEW_YORK}weekly.ics"):
        data = multiget(alice, path, [f"{NEW_YORK}weekly.ics"], "expand")["weekly"]
        assert "RECURRENCE-ID:20261031T220000" in data and data.count("BEGIN:VEVENT") == 1, data
    assert "BEGIN:VEVENT" not in multiget(alice, PLAIN, [f"{PLAIN}weekly.ics"], "expand")["weekly"]
    # A calendar given the zone later: the same object's answer changes (the response
    # cache keeps zones apart).
    mkcalendar(alice, MULTIGET_CAL)
    href = f"{MULTIGET_CAL}moved.ics"
    assert alice.put(href, content=MOVED).status_code == 201
    assert "BEGIN:VEVENT" not in multiget(alice, MULTIGET_CAL, [href], "expand")["moved"]
    assert "SUMMARY:moved" not in multiget(alice, MULTIGET_CAL, [href], "limit-recurrence-set")["moved"]
    r = proppatch(alice, MULTIGET_CAL, f"<C:calendar-timezone>{IANA_NEW_YORK}</C:calendar-timezone>")
    assert r.status_code == 207 and " 200 " in r.text and " 403 " not in r.text, r.text
    data = multiget(alice, MULTIGET_CAL, [href], "expand")["moved"]
    assert "RECURRENCE-ID:20261031T220000" in data and "SUMMARY:moved" in data, data
    assert data.count("BEGIN:VEVENT") == 1, data
    data = multiget(alice, MULTIGET_CAL, [href], "limit-recurrence-set")["moved"]
    assert "SUMMARY:moved" in data and "SUMMARY:weekly" in data, data


def proppatch(c: httpx.Client, path: str, props: str) -> httpx.Response:
    body = (f'<D:propertyupdate xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:set><D:prop>{props}'
            "</D:prop></D:set></D:propertyupdate>")
    return c.request("PROPPATCH", path, content=body.encode(), headers=XML)


def calendar_props(c: httpx.Client, path: str) -> httpx.Response:
    body = (f'<D:propfind xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:prop><D:displayname/>'
            "<C:calendar-timezone/></D:prop></D:propfind>")
    return c.request("PROPFIND", path, content=body.encode(), headers={**XML, "Depth": "0"})


# Values the old check (the text "BEGIN:VTIMEZONE" somewhere) let through, and that no
# report could read.
UNREADABLE = {
    "words": "BEGIN:VTIMEZONE is what this would need",
    "two-vtimezones": IANA_NEW_YORK.replace("END:VCALENDAR\r\n",
                                            OWN_EASTERN[OWN_EASTERN.index("BEGIN:VTIMEZONE"):]),
    "no-rules": vtimezone("Nowhere/Unknown"),
    "interval-0": vtimezone("Endless", ("DAYLIGHT", "20070311T020000",
                                        "FREQ=YEARLY;INTERVAL=0;BYMONTH=3;BYDAY=2SU", "-0500", "-0400"),
                            US_RULES[1]),
}


@pytest.mark.parametrize("case", UNREADABLE)
def test_mkcalendar_with_an_unreadable_calendar_timezone_is_refused(
        server: Server, alice: httpx.Client, case: str) -> None:
    path, changes = f"{CALS}/tz-refused-{case}/", server.changes()
    body = (f'<C:mkcalendar xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:set><D:prop>'
            "<D:displayname>Refused</D:displayname><C:calendar-timezone><![CDATA["
            f"{UNREADABLE[case]}]]></C:calendar-timezone></D:prop></D:set></C:mkcalendar>")
    r = alice.request("MKCALENDAR", path, content=body.encode(), headers=XML)
    dav_error(r, 403, CALDAV, "valid-calendar-data")
    assert calendar_props(alice, path).status_code == 404, "a refused MKCALENDAR created it"
    assert server.changes() == changes


@pytest.mark.parametrize("case", UNREADABLE)
def test_proppatch_of_an_unreadable_calendar_timezone_is_refused(
        server: Server, alice: httpx.Client, case: str) -> None:
    before, changes = calendar_props(alice, PLAIN).content, server.changes()
    r = proppatch(alice, PLAIN, "<D:displayname>Renamed</D:displayname><C:calendar-timezone>"
                                f"<![CDATA[{UNREADABLE[case]}]]></C:calendar-timezone>")
    assert r.status_code == 207, r.text
    statuses = {}
    for ps in ET.fromstring(r.content).iter(f"{D}propstat"):
        for prop in ps.iterfind(f"{D}prop/*"):
            statuses[prop.tag] = (ps.findtext(f"{D}status") or "", ps.find(f"{D}error/{C}valid-calendar-data"))
    status, error = statuses[f"{C}calendar-timezone"]
    assert " 403 " in status and error is not None, r.text
    assert " 424 " in statuses[f"{D}displayname"][0], r.text
    assert calendar_props(alice, PLAIN).content == before
    assert server.changes() == changes, "a refused PROPPATCH changed the log"


def test_a_utc_calendar_timezone_is_taken(alice: httpx.Client) -> None:
    path = f"{CALS}/tz-utc/"
    mkcalendar(alice, path, UTC)
    for name in ("all-day", "edge"):
        assert alice.put(f"{path}{name}.ics", content=ics(name, EVENTS[name])).status_code == 201
    assert set(found(query(alice, path, NOV_1, NOV_2))) == {"edge"}
