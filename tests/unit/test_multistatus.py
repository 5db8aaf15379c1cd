"""Multistatus bodies written as text, and calendar-query answers taken from the index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from safehold.caldav import filters
from safehold.core.formats import ical
from safehold.dav import multistatus, reportutil
from safehold.dav.xml import dav


def test_object_data_keeps_crlf_and_markup_through_an_xml_parser() -> None:
    data = b"BEGIN:VCALENDAR\r\nSUMMARY:a < b & c > d\x01\r\nEND:VCALENDAR\r\n"
    body = multistatus.document([multistatus.response(
        "/dav/x%20y.ics", [reportutil.data_element("{urn:ietf:params:xml:ns:caldav}calendar-data",
                                                   "C", "urn:ietf:params:xml:ns:caldav", data)])])
    root = etree.fromstring(body)
    text = root.findtext(".//{urn:ietf:params:xml:ns:caldav}calendar-data")
    # The control character cannot be carried by XML 1.0 and is left out; the rest is exact.
    assert text == "BEGIN:VCALENDAR\r\nSUMMARY:a < b & c > d\r\nEND:VCALENDAR\r\n"
    assert root.findtext(f"{dav('response')}/{dav('href')}") == "/dav/x%20y.ics"


def test_found_and_missing_properties_get_their_own_propstat() -> None:
    body = multistatus.document([
        multistatus.response("/a", [multistatus.text_element(dav("getetag"), '"1-ab"')],
                             [multistatus.empty("{http://example.com/ns}color")]),
        multistatus.status_response("/gone", 404),
    ], multistatus.text_element(dav("sync-token"), "urn:x:1"))
    root = etree.fromstring(body)
    first, second = root.findall(dav("response"))
    stats = [ps.findtext(dav("status")) for ps in first.findall(dav("propstat"))]
    assert stats == ["HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found"]
    assert first.findtext(f"{dav('propstat')}/{dav('prop')}/{dav('getetag')}") == '"1-ab"'
    assert first.find(".//{http://example.com/ns}color") is not None
    assert second.findtext(dav("status")) == "HTTP/1.1 404 Not Found"
    assert root.findtext(dav("sync-token")) == "urn:x:1"


def _event(lines: str) -> bytes:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:u1\r\n"
            "DTSTAMP:20260101T000000Z\r\n" + lines + "END:VEVENT\r\nEND:VCALENDAR\r\n").encode()


EVENTS = [
    "DTSTART:20260310T100000Z\r\nDTEND:20260310T110000Z\r\n",
    "DTSTART:20260310T100000Z\r\nDTEND:20260310T100000Z\r\n",  # zero length
    "DTSTART:20260310T100000Z\r\n",  # no end: an instant
    "DTSTART:20260310T100000Z\r\nDURATION:PT0S\r\n",
    "DTSTART;VALUE=DATE:20260310\r\n",  # a whole (floating) day
    "DTSTART:20260310T100000\r\nDTEND:20260310T110000\r\n",  # floating
    "DTSTART;TZID=Europe/Berlin:20260310T100000\r\nDTEND;TZID=Europe/Berlin:20260310T110000\r\n",
    "DTSTART:20260310T110000Z\r\nDTEND:20260310T100000Z\r\n",  # ends before it starts
]


@pytest.mark.parametrize("lines", EVENTS)
def test_the_index_never_claims_a_match_that_parsing_denies(lines: str) -> None:
    data = _event(lines)
    info = ical.inspect_calendar(data)
    assert info.start is not None and info.end is not None and not info.recurring
    base = datetime(2026, 3, 10, 10, tzinfo=UTC)
    edges = [base + timedelta(hours=h, seconds=s) for h in range(-16, 18) for s in (-1, 0, 1)]
    for start in edges[::3]:
        for end in edges:
            if end <= start:
                continue
            flt = ical.CompFilter("VCALENDAR", comp_filters=(
                ical.CompFilter("VEVENT", time_range=ical.TimeRange(start, end)),))
            decided = filters.index_decides(flt)
            assert decided is not None
            low, high = decided
            if low < info.start.timestamp() and info.end.timestamp() < high:
                assert ical.matches(data, flt), (lines, start, end)


def test_only_plain_time_range_filters_are_decided_by_the_index() -> None:
    tr = ical.TimeRange(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    plain = ical.CompFilter("VCALENDAR", comp_filters=(ical.CompFilter("VEVENT", time_range=tr),))
    assert filters.index_decides(plain) == (tr.start.timestamp(), tr.end.timestamp())  # type: ignore[union-attr]
    todo = ical.CompFilter("VCALENDAR", comp_filters=(ical.CompFilter("VTODO", time_range=tr),))
    alarm = ical.CompFilter("VCALENDAR", comp_filters=(ical.CompFilter(
        "VEVENT", time_range=tr, comp_filters=(ical.CompFilter("VALARM", time_range=tr),)),))
    prop = ical.CompFilter("VCALENDAR", comp_filters=(ical.CompFilter(
        "VEVENT", time_range=tr, prop_filters=(ical.PropFilter("SUMMARY", is_not_defined=True),)),))
    for flt in (todo, alarm, prop):
        assert filters.index_decides(flt) is None
