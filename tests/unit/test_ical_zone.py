"""The zone of a report's CALDAV:timezone or CALDAV:calendar-timezone (RFC 4791 §7.3,
§9.8): resolved as objects' TZIDs are, UTC as none, anything else refused quickly."""

from __future__ import annotations

import time
import zoneinfo
from datetime import UTC, datetime

import pytest

from safehold.core.formats.ical_instances import to_utc
from safehold.core.formats.ical_parse import VALID_DATA, InvalidCalendarData
from safehold.core.formats.ical_zone import report_zone

US = ("BEGIN:DAYLIGHT\r\nDTSTART:20070311T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\n"
      "TZOFFSETFROM:-0500\r\nTZOFFSETTO:-0400\r\nEND:DAYLIGHT\r\n"
      "BEGIN:STANDARD\r\nDTSTART:20071104T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\n"
      "TZOFFSETFROM:-0400\r\nTZOFFSETTO:-0500\r\nEND:STANDARD\r\n")
ZERO = "BEGIN:STANDARD\r\nDTSTART:19700101T000000\r\nTZOFFSETFROM:+0000\r\nTZOFFSETTO:+0000\r\nEND:STANDARD\r\n"


def zone(tzid: str, rules: str = US) -> str:
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VTIMEZONE\r\nTZID:{tzid}\r\n"
            f"{rules}END:VTIMEZONE\r\nEND:VCALENDAR\r\n")


def test_an_iana_name_wins_and_names_the_zone() -> None:
    found = report_zone(zone("America/New_York", ZERO))  # the name, not the (wrong) rules
    assert found is not None and found.key == "America/New_York"
    assert isinstance(found.tz, zoneinfo.ZoneInfo)
    assert to_utc(datetime(2026, 11, 1), found.tz) == datetime(2026, 11, 1, 4, tzinfo=UTC)


def test_own_rules_are_read_and_keyed_by_their_text() -> None:
    found = report_zone(zone("US-Eastern"))
    assert found is not None and found.key.startswith("sha256:")
    assert to_utc(datetime(2026, 11, 1), found.tz) == datetime(2026, 11, 1, 4, tzinfo=UTC)
    assert to_utc(datetime(2026, 11, 2), found.tz) == datetime(2026, 11, 2, 5, tzinfo=UTC)
    other = report_zone(zone("US-Eastern").replace("2SU", "1SU"))
    assert other is not None and other.key != found.key


@pytest.mark.parametrize("text", [zone("UTC", ZERO), zone("Etc/UTC"), zone("My-UTC", ZERO)])
def test_utc_is_no_zone(text: str) -> None:
    assert report_zone(text) is None


@pytest.mark.parametrize("text", [
    "", "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", zone("A") + zone("B"),
    zone("A").replace("END:VCALENDAR", f"BEGIN:VTIMEZONE\r\nTZID:B\r\n{US}END:VTIMEZONE\r\nEND:VCALENDAR"),
    zone("Nowhere", ""), zone("").replace("TZID:\r\n", ""),
    zone("Endless", US.replace("FREQ=YEARLY;BYMONTH=3", "FREQ=YEARLY;INTERVAL=0;BYMONTH=3")),
    zone("Secondly", US.replace("FREQ=YEARLY;BYMONTH=3;BYDAY=2SU", "FREQ=SECONDLY")),
], ids=["empty", "no-vtimezone", "two-calendars", "two-vtimezones", "no-rules", "no-tzid",
        "interval-0", "secondly"])
def test_anything_else_is_refused_quickly(text: str) -> None:
    began = time.monotonic()
    with pytest.raises(InvalidCalendarData) as caught:
        report_zone(text)
    assert caught.value.precondition == VALID_DATA
    assert time.monotonic() - began < 2
