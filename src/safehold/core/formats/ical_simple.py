"""The validation and index fields of the simplest calendar objects, read without icalendar.

Many events a client writes are one VEVENT with its times in UTC (or floating, or dates),
at most one RRULE, and no line with parameters. For such bytes :func:`simple_event` gives
what ical.inspect_calendar's full parse reads from them (the UID, the own instance's
DTSTART and end, RFC 4791 §9.9, and the RRULE, which ical._simple reads with icalendar's
vRecur alone); the full parse builds some thirty icalendar objects for that (in the
server, with the PUT stubbed out of it, an event PUT's CPU fell by ~0.3 ms; this path
saves ~0.15-0.2 ms of it). Events in a named zone (TZID, VTIMEZONE) and with
alarms are not simple: they take the full parse. For every other body, and
for every body the full parse might refuse, it returns None: the full parse then decides,
and words the error. tests/unit/test_ical_lean.py compares the two on the corpus, on the
edge cases and on generated events.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import date, datetime, timedelta
from typing import NamedTuple

from safehold.core.formats.ical_instances import Time
from safehold.core.formats.ical_parse import left_out_for_index, logical_lines

# "NAME:value": a line without parameters (icalendar splits it at the first colon).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9-]+(?=:)")
# The DATE-TIME (UTC or floating) and DATE forms of RFC 5545 §3.3.4-5, in ASCII digits.
_DATE_TIME = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})(Z?)")
_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_DIGITS = re.compile(r"[0-9]{1,10}")  # longer: the full parse decides (int() caps digits)
_MAX_INTEGER = 2_147_483_647
_ONCE = frozenset({"UID", "DTSTART", "DTEND", "RRULE"})  # each at most once in a simple event
_ONE_DAY = timedelta(days=1)
_UTC_ZONE = zoneinfo.ZoneInfo("UTC")  # what icalendar gives "...Z" values (one cached object)


class SimpleEvent(NamedTuple):
    uid: str
    start: Time
    end: Time  # of the own instance: DTEND, else as RFC 5545 §3.6.1 says
    rule: str | None  # the RRULE's value as written


def simple_event(text: str) -> SimpleEvent | None:
    """The UID, own instance and RRULE of a simple event, else None. ``text``: the
    stream's text (ical_parse.decode), which the full parse reads too.

    Simple: one VCALENDAR holding one VEVENT and nothing else; every line "NAME:value";
    no NUL character; in the VEVENT one UID (no backslash), one DTSTART and at most one
    DTEND, each a UTC or floating DATE-TIME or a DATE, at most one RRULE, optionally
    CREATED (a UTC DATE-TIME) and SEQUENCE (up to 10 digits, at most 2^31 - 1); every
    other line one the full parse leaves out for the index (SUMMARY, DESCRIPTION,
    DTSTAMP, X- ...); in the VCALENDAR only such lines and CALSCALE GREGORIAN. No RDATE,
    EXDATE, DURATION, RECURRENCE-ID, METHOD, X-WR-TIMEZONE, VALARM or VTIMEZONE. The
    RRULE is returned as written: the caller reads it (ical._simple)."""
    if "\0" in text:
        return None
    lines = list(logical_lines(text))
    if len(lines) < 4 or lines[0] != "BEGIN:VCALENDAR" or lines[-1] != "END:VCALENDAR":
        return None
    component = "VCALENDAR"
    events = 0
    scale = False
    once: dict[str, str] = {}  # the values of _ONCE
    for line in lines[1:-1]:
        found = _PLAIN_NAME.match(line)
        if found is None:
            return None
        name, value = found.group(), line[found.end() + 1:]
        if name == "BEGIN":
            if value != "VEVENT" or events:
                return None
            component, events = "VEVENT", 1
        elif name == "END":
            if value != "VEVENT" or component != "VEVENT":
                return None
            component = "VCALENDAR"
        elif left_out_for_index(name.upper(), component):
            continue
        elif component == "VCALENDAR":
            if name != "CALSCALE" or value.upper() != "GREGORIAN" or scale:
                return None  # twice, the full parse reads a list, which is no GREGORIAN
            scale = True
        elif name in _ONCE:
            if name in once:
                return None
            once[name] = value
        elif name == "CREATED":
            created = _time(value)
            if not isinstance(created, datetime) or created.tzinfo is None:
                return None
        elif name != "SEQUENCE" or not _DIGITS.fullmatch(value) or int(value) > _MAX_INTEGER:
            return None  # icalendar refuses an INTEGER outside RFC 5545 §3.3.8's range
    uid, start = once.get("UID"), _time(once.get("DTSTART", ""))
    if component != "VCALENDAR" or not events or not uid or "\\" in uid or start is None:
        return None
    if "DTEND" in once:
        end = _time(once["DTEND"])
        if end is None:
            return None
    elif isinstance(start, datetime):  # RFC 5545 §3.6.1: a timed event lasts no time,
        end = start
    elif start.year < 9999:  # an all-day one the day
        end = start + _ONE_DAY
    else:
        return None  # past year 9999: the full parse words it
    return SimpleEvent(uid, start, end, once.get("RRULE"))


def _time(value: str) -> Time | None:
    try:
        found = _DATE_TIME.fullmatch(value)
        if found is not None:
            year, month, day, hour, minute, second, zulu = found.groups()
            return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                            tzinfo=_UTC_ZONE if zulu else None)
        found = _DATE.fullmatch(value)
        if found is not None:
            return date(*map(int, found.groups()))
    except ValueError:
        return None
    return None
