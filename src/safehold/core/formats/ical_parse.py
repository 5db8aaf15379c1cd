"""Parsing iCalendar bytes (RFC 5545) into an ``icalendar`` tree, for validation and indexing only.

The stored bytes are never rewritten (promise 3): everything here works on a private parse.

Time zones are resolved per object. icalendar on its own resolves a TZID through a process-wide
cache that keeps the *first* VTIMEZONE ever seen for each unknown TZID; Outlook names every
custom zone "Customized Time Zone", so one user's definition would silently shift another user's
events (promise 9). We therefore parse with TZID lookups switched off and attach zones ourselves:
an IANA name wins, then the object's own VTIMEZONE (RFC 5545 §3.6.5), then the Windows and
"globally unique" (§3.2.19) spellings of IANA names; anything else stays floating.
"""

from __future__ import annotations

import functools
import io
import re
import zoneinfo
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, ClassVar

import x_wr_timezone
from dateutil import tz as dateutil_tz
from icalendar import Calendar, vDDDTypes
from icalendar.parser.content_line import Contentline, Contentlines
from icalendar.parser.parameter import Parameters
from icalendar.parser.ical.calendar import CalendarIcalParser
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

VALID_DATA = "valid-calendar-data"
VALID_OBJECT = "valid-calendar-object-resource"

# Properties that may carry TZID (RFC 5545 §3.2.19).
TZID_PROPERTIES = ("DTSTART", "DTEND", "DUE", "RECURRENCE-ID", "RDATE", "EXDATE")

# A broken value in one of these changes what the object means in time, so it is rejected;
# a broken GEO or X- value is kept, as clients send those and we only index.
_CRITICAL_PROPERTIES = frozenset(TZID_PROPERTIES) | {
    "DURATION", "RRULE", "TRIGGER", "REPEAT", "FREEBUSY", "COMPLETED", "CREATED", "SEQUENCE",
    "TZOFFSETFROM", "TZOFFSETTO",
}

# Python's dates end at years 1 and 9999; the index widens every time a little.
TOO_FAR = "a date or time too close to year 1 or 9999 to be indexed; use dates between years 2 and 9998"

_NAME = re.compile(r"[A-Za-z0-9-]+(?=[;:])")
_LINE_BREAK = re.compile(r"\r\n|\n|\r")
_FOLD = re.compile(rb"(?:\r\n|\n|\r)[ \t]")
_BINARY = re.compile(r";(?:ENCODING=BASE64|VALUE=BINARY)(?=[;:])", re.IGNORECASE)
_SLIM_OVER = 4096
# Free-text properties that neither the index nor any check of a PUT reads. Written without
# parameters ("SUMMARY:..."), icalendar can neither fail to split such a line nor fail to read
# its TEXT value (vText), so leaving the line out of a parse for the index changes no outcome;
# these are the long lines of most events, and icalendar splits lines a character at a time.
# A line with parameters may be malformed, so it is always parsed.
_UNINDEXED_TEXT = frozenset({"SUMMARY", "DESCRIPTION", "LOCATION", "COMMENT", "CONTACT", "PRODID",
                             "VERSION"})
# X- properties: icalendar keeps an unreadable X- value as an error in every component, and no
# index field comes from one but X-WR-TIMEZONE (_apply_x_wr_timezone).
_INDEXED_X = "X-WR-TIMEZONE"
# In a VEVENT icalendar records a value it cannot read as an error of that property rather than
# failing (Event.ignore_exceptions), and _check_values ignores errors of properties outside
# _CRITICAL_PROPERTIES: there these lines change no outcome either (other components raise).
_UNINDEXED_IN_VEVENT = frozenset({"DTSTAMP", "LAST-MODIFIED", "STATUS", "TRANSP", "CLASS", "PRIORITY"})


class InvalidCalendarData(ValueError):
    """The body is not acceptable as a calendar object resource (RFC 4791 §5.3.2).

    ``precondition`` names the CALDAV precondition to report: ``valid-calendar-data`` for bytes
    that are not iCalendar, ``valid-calendar-object-resource`` for iCalendar that breaks §4.1.
    """

    def __init__(self, precondition: str, message: str) -> None:
        super().__init__(message)
        self.precondition = precondition


class _PlainLine(Contentline):
    """A content line without parameters, "NAME:value" (``_PLAIN``).

    icalendar splits a line one character at a time, minding quotes and backslashes, to find
    where its name and parameters end; a name of letters, digits and "-" followed by a colon
    has neither, so the split comes to (the name as written, no parameters, the rest), which
    this takes at the first colon. Most lines of most objects look so; a line with parameters
    keeps icalendar's split. tests/unit/test_ical_lean.py compares the two on every corpus line.
    """

    __slots__ = ()

    def raw_parts(self) -> tuple[str, Parameters, str]:
        colon = self.index(":")
        return self[:colon], Parameters(), self[colon + 1:]


class _BoundaryLine(_PlainLine):
    """A line beginning or ending a component, "BEGIN:VEVENT" (``_BOUNDARIES``, ``_COMPONENT``).

    icalendar reads only the name and the value (the component's name) of these, never the
    parameters, and such a value holds no backslash to unescape; so both are taken as they
    are, with one empty Parameters shared by all, where each line would build its own and
    unescape its value (some 3 µs a line; every object has four of them or more).
    """

    __slots__ = ()

    def parts(self) -> tuple[str, Parameters, str]:
        colon = self.index(":")
        return self[:colon], _NO_PARAMETERS, self[colon + 1:]


_NO_PARAMETERS = Parameters()  # never handed on: icalendar drops a BEGIN or END line's
_PLAIN = re.compile(r"[A-Za-z0-9-]+:")
_BOUNDARIES = frozenset({"BEGIN:", "END:"})
_COMPONENT = re.compile(r"[A-Za-z0-9-]+")
_plain_line: Callable[[str], Contentline] = _PlainLine  # icalendar leaves __new__ unannotated
_boundary_line: Callable[[str], Contentline] = _BoundaryLine
_content_line: Callable[[str], Contentline] = Contentline


def _line(text: str) -> Contentline:
    """``text`` as the content line icalendar's parser takes."""
    plain = _PLAIN.match(text)
    if plain is None:
        return _content_line(text)
    if text[:plain.end()] in _BOUNDARIES and _COMPONENT.fullmatch(text, plain.end()):
        return _boundary_line(text)
    return _plain_line(text)


class _LocalParser(CalendarIcalParser):
    # No TZID lookups while parsing: values stay naive, their TZID parameter is kept, and
    # _attach_zones resolves them against this object only.
    datetime_names: ClassVar[tuple[str, ...]] = ()

    def get_factory_for_property(self, name: str, params: Parameters) -> Any:
        # Most lines have no parameters (_PlainLine), so no VALUE either; reading it costs
        # more than the lookup of the type.
        return _value_type(name, params.value if params else None)

    def parse_and_add_property(self, name: str, params: Parameters, val: str, tzid: str | None,
                               line: Contentline) -> None:
        """The base class's, but a date or time value (vDDDTypes: DTSTART, DTEND, ...) gets the
        line's parameters without first building a set of its own: the base class replaces
        the one vDDDTypes.__init__ builds (and derives a TZID for, some 4 µs a value) at once."""
        factory = self.get_factory_for_property(name, params)
        component = self.component
        if factory is not vDDDTypes or tzid is not None or component is None:
            super().parse_and_add_property(name, params, val, tzid, line)
            return
        try:
            parsed = _date_or_time(val)
        except (ValueError, TypeError) as exc:
            self.handle_property_parse_error(exc, name, params, val, line)
            return
        value = vDDDTypes.__new__(vDDDTypes)
        value.dt, value.params = parsed, params
        component.add(name, value, encode=False)

    def handle_end_component(self, vals: str) -> None:
        # The base class registers every VTIMEZONE in icalendar's process-wide cache when the
        # name it is given is "VTIMEZONE"; the name serves no other purpose there.
        super().handle_end_component("")


_date_or_time: Callable[[str], Any] = vDDDTypes.from_ical  # icalendar leaves it unannotated


class _LocalCalendar(Calendar):
    @classmethod
    def _get_ical_parser(cls, st: str | bytes | list[Contentline]) -> _LocalParser:
        return _LocalParser(st, cls._get_component_factory(), cls.types_factory)


# icalendar looks a property's value type up twice per line (handle_property, then
# parse_and_add_property), each time through case-folding dictionaries; the answer depends
# only on the property's name and VALUE parameter.
@functools.lru_cache(maxsize=512)
def _value_type(name: str, value: str | None) -> Any:
    return _LocalCalendar.types_factory.for_property(name, value)


def parse(data: bytes, *, slim: bool = False, for_index: bool = False) -> Any:
    """Parse and check one iCalendar stream; raises InvalidCalendarData (valid-calendar-data)."""
    return parse_text(decode(data), slim=slim, for_index=for_index)


def parse_text(text: str, *, slim: bool = False, for_index: bool = False) -> Any:
    """``parse`` of the stream's text (:func:`decode`), for a caller that has it already.

    ``slim`` leaves out the values of inline binary properties (ATTACH;ENCODING=BASE64): they
    matter neither to the index nor to any filter, and icalendar reads long lines slowly.
    ``for_index`` also leaves out the lines without parameters that no index field comes from
    and that cannot change the outcome (``_UNINDEXED_TEXT``, ``_UNINDEXED_IN_VEVENT``, X-
    properties): the tree then serves validation and indexing only, not filters.
    """
    lines = content_lines(text, slim=slim, for_index=for_index)
    try:
        # icalendar's parser takes content lines as well as text. Ours are unfolded already and
        # hold exactly one VCALENDAR, so joining them only for icalendar to split them again
        # (what Calendar.from_ical does) would be work for nothing; the trailing "" is the
        # empty line Contentlines.from_ical ends with.
        given = Contentlines([*map(_line, lines), _content_line("")])
        found = _LocalCalendar._get_ical_parser(given).parse()
    # icalendar reports malformed input with assorted exception types; all mean "not iCalendar".
    except Exception as exc:
        raise InvalidCalendarData(VALID_DATA, f"not parseable as iCalendar: {exc}") from exc
    if len(found) != 1:  # content_lines allows one VCALENDAR; a guard, not a case
        raise InvalidCalendarData(VALID_OBJECT, "a calendar object resource holds one VCALENDAR")
    cal = found[0]
    _check_values(cal)
    if _may_name_zones(given):
        _attach_zones(cal)
    return _apply_x_wr_timezone(cal)


def _may_name_zones(lines: list[Contentline]) -> bool:
    """Whether a line may carry a TZID parameter (RFC 5545 §3.2.19). Only a line with
    parameters can, and icalendar reads parameter names in upper case; without one there is
    no zone to attach (most objects are written in UTC or in floating time)."""
    return any(type(line) is not _PlainLine and "TZID" in line.upper() for line in lines)


def decode(data: bytes) -> str:
    """The unfolded text of ``data``.

    Unfolding happens on the bytes, before decoding: RFC 5545 §3.1 warns that simple writers
    fold inside a multi-octet UTF-8 sequence. Bytes that are not UTF-8 (§3.1.4) are indexed
    with replacement characters rather than refused; the stored bytes are untouched either way.
    """
    return _FOLD.sub(b"", data).decode("utf-8", errors="replace").removeprefix("\ufeff")


def logical_lines(text: str) -> Iterator[str]:
    """The content lines of unfolded text, blank lines skipped."""
    return (line for line in _LINE_BREAK.split(text) if line)


def content_lines(text: str, *, slim: bool = False, for_index: bool = False) -> list[str]:
    """The lines of one VCALENDAR with balanced BEGIN/END (RFC 5545 §3.4, §3.6)."""
    lines: list[str] = []
    stack: list[str] = []
    calendars = 0
    for number, line in enumerate(logical_lines(text), start=1):
        match = _NAME.match(line)
        if match is None:
            raise InvalidCalendarData(VALID_DATA, f"line {number} is not an iCalendar content line")
        name = match.group().upper()
        if name == "BEGIN" or name == "END":
            value = line[match.end() + 1:].strip().upper()
            if not stack and not (name == "BEGIN" and value == "VCALENDAR"):
                raise InvalidCalendarData(VALID_DATA, f"line {number}: expected BEGIN:VCALENDAR")
            if name == "BEGIN":
                if not stack:
                    calendars += 1
                stack.append(value)
            else:
                if stack[-1] != value:
                    raise InvalidCalendarData(VALID_DATA, f"line {number}: END:{value} closes BEGIN:{stack[-1]}")
                stack.pop()
        elif not stack:
            raise InvalidCalendarData(VALID_DATA, f"line {number}: expected BEGIN:VCALENDAR")
        elif for_index and line[match.end()] == ":" and left_out_for_index(name, stack[-1]):
            continue
        elif slim and len(line) > _SLIM_OVER:
            line = _without_binary_value(line, match.end())
        lines.append(line)
    if calendars == 0:
        raise InvalidCalendarData(VALID_DATA, "empty body, expected BEGIN:VCALENDAR")
    if stack:
        raise InvalidCalendarData(VALID_DATA, f"BEGIN:{stack[-1]} is never closed")
    if calendars > 1:
        raise InvalidCalendarData(VALID_OBJECT, "a calendar object resource holds one VCALENDAR")
    return lines


def left_out_for_index(name: str, component: str) -> bool:
    """Whether a parse ``for_index`` leaves out a line without parameters named ``name``
    (upper case) in ``component``: no index field and no check of a PUT reads it."""
    return name in _UNINDEXED_TEXT or name in _UNINDEXED_IN_VEVENT and component == "VEVENT" \
        or name.startswith("X-") and name != _INDEXED_X


def _without_binary_value(line: str, name_end: int) -> str:
    quoted = False
    for index in range(name_end, len(line)):
        char = line[index]
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            return line[:index + 1] if _BINARY.search(line, name_end, index + 1) else line
    return line


def _check_values(cal: Any) -> None:
    for comp in cal.walk():
        for name, message in comp.errors:
            if name is None or name.upper() in _CRITICAL_PROPERTIES:
                raise InvalidCalendarData(VALID_DATA, f"{comp.name} {name or 'line'}: {message}")


def _attach_zones(cal: Any) -> None:
    definitions = {str(c["TZID"]): c for c in cal.subcomponents if c.name == "VTIMEZONE" and "TZID" in c}
    resolved: dict[str, tzinfo | None] = {}
    for comp in cal.walk():
        if comp.name in ("VTIMEZONE", "STANDARD", "DAYLIGHT"):
            continue
        for name in TZID_PROPERTIES:
            for found in as_list(prop(comp, name)):
                tzid = found.params.get("TZID")
                if tzid is None:
                    continue
                if isinstance(tzid, list):
                    # An unquoted comma makes icalendar split the one value RFC 5545 §3.2.19
                    # allows ("TZID=Europe/B,erlin"); read it back as written, an unknown zone.
                    tzid = ",".join(tzid)
                if tzid not in resolved:
                    resolved[tzid] = _resolve_tzid(str(tzid), definitions)
                _localize_property(found, resolved[tzid])


def prop(comp: Any, name: str) -> Any:
    """``comp.get(name)`` for an upper-case ``name``. icalendar keeps property names upper-cased
    (its CaselessDict), so the plain dict lookup finds the same property; the case-folding one,
    which raises and catches KeyError when the property is absent, costs about ten times as much;
    indexing one object asks dozens of times."""
    return dict.get(comp, name)


def has(comp: Any, name: str) -> bool:
    """``name in comp`` for an upper-case ``name`` (see :func:`prop`)."""
    return dict.__contains__(comp, name)


def as_list(value: Any) -> list[Any]:
    """icalendar gives one property, or a list when the name repeats (EXDATE, ATTENDEE, ...)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _localize_property(prop: Any, zone: tzinfo | None) -> None:
    if zone is None:
        return
    for item in getattr(prop, "dts", None) or [prop]:
        item.dt = _localize_value(item.dt, zone)


def _localize_value(value: Any, zone: tzinfo) -> Any:
    if isinstance(value, tuple):  # an RDATE PERIOD: (start, end or duration)
        return tuple(_localize_value(part, zone) for part in value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=zone)
    return value


def _resolve_tzid(tzid: str, definitions: dict[str, Any]) -> tzinfo | None:
    if tzid in _iana_names():
        return zoneinfo.ZoneInfo(tzid)
    definition = definitions.get(tzid)
    if definition is not None:
        text = _definition_text(definition)
        zone = _zone_from_definition(text) if text is not None else None
        if zone is not None:
            return zone
    windows = WINDOWS_TO_OLSON.get(tzid.strip())
    if windows is not None:
        return zoneinfo.ZoneInfo(windows)
    # RFC 5545 §3.2.19 "globally unique" ids such as /mozilla.org/20050126_1/Europe/Berlin.
    parts = tzid.strip("/").split("/")
    for first in range(1, len(parts)):
        candidate = "/".join(parts[first:])
        if candidate in _iana_names():
            return zoneinfo.ZoneInfo(candidate)
    return None


@functools.cache
def _iana_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _definition_text(vtimezone: Any) -> str | None:
    """The VTIMEZONE reduced to what dateutil's strict reader accepts (it refuses the X-LIC-
    LOCATION that most clients add), or None when an observance lacks a required property."""
    lines = ["BEGIN:VTIMEZONE", f"TZID:{vtimezone['TZID']}"]
    for rule in vtimezone.subcomponents:
        if rule.name in ("STANDARD", "DAYLIGHT"):
            observance = _observance_lines(rule)
            if observance is None:
                return None
            lines += observance
    lines.append("END:VTIMEZONE")
    return "\r\n".join(lines) + "\r\n"


# dateutil walks an observance's RRULE from its DTSTART to find the offset in effect: with
# INTERVAL=0 it never stops (a PUT held its worker for good), and a rule recurring every
# second takes minutes. Time zone rules recur yearly; monthly is allowed too.
_WALKABLE = frozenset({"YEARLY", "MONTHLY"})


def walkable_rule(rule: Any) -> bool:
    """Whether an observance's RRULE (a vRecur) can be walked to find an offset."""
    freq = str(rule.get("FREQ", [""])[0]).upper()
    return freq in _WALKABLE and all(isinstance(n, int) and n >= 1 for n in rule.get("INTERVAL", [1]))


def _observance_lines(rule: Any) -> list[str] | None:
    start = getattr(rule.get("DTSTART"), "dt", None)
    offset_from = getattr(rule.get("TZOFFSETFROM"), "td", None)
    offset_to = getattr(rule.get("TZOFFSETTO"), "td", None)
    if not isinstance(start, date) or offset_from is None or offset_to is None:
        return None
    if not all(walkable_rule(r) for r in as_list(rule.get("RRULE"))):
        return None  # the definition is not read: its TZID resolves as an unknown one
    lines = [f"BEGIN:{rule.name}", f"DTSTART:{_wall_clock(start)}",
             f"TZOFFSETFROM:{_offset(offset_from)}", f"TZOFFSETTO:{_offset(offset_to)}"]
    lines += [f"RRULE:{r.to_ical().decode()}" for r in as_list(rule.get("RRULE"))]
    rdates = [_wall_clock(d.dt) for p in as_list(rule.get("RDATE")) for d in p.dts if isinstance(d.dt, date)]
    if rdates:
        lines.append(f"RDATE:{','.join(rdates)}")
    lines.append(f"END:{rule.name}")
    return lines


def _wall_clock(value: date) -> str:
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.strftime("%Y%m%dT%H%M%S")


def _offset(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    return f"{sign}{hours:02d}{rest // 60:02d}"


# Keyed by the definition's text, so two objects share a zone only when they define it alike.
@functools.lru_cache(maxsize=256)
def _zone_from_definition(vtimezone: str) -> tzinfo | None:
    try:
        zone: tzinfo = dateutil_tz.tzical(io.StringIO(vtimezone)).get()
        # dateutil reads a rule only when asked for an offset: a broken one (BYMONTH=0)
        # would raise at the first conversion, in the middle of indexing or a query.
        zone.utcoffset(datetime(2000, 1, 1))
    except ValueError:  # how dateutil reports a definition it cannot read
        return None
    return zone


def _apply_x_wr_timezone(cal: Any) -> Any:
    # Google-style calendars name their zone in X-WR-TIMEZONE; recurring-ical-events applies
    # it, so we do too, once, to keep every computation in this package consistent.
    if not has(cal, "X-WR-TIMEZONE"):
        return cal
    try:
        return x_wr_timezone.to_standard(cal)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return cal
    except OverflowError as exc:  # a UTC time at either end of years 1-9999, moved into the zone
        raise InvalidCalendarData(VALID_DATA, TOO_FAR) from exc


def main_components(cal: Any) -> list[Any]:
    """The object's components: everything below VCALENDAR but VTIMEZONE (RFC 4791 §4.1)."""
    return [c for c in cal.subcomponents if c.name != "VTIMEZONE"]


def is_date(value: object) -> bool:
    return isinstance(value, date) and not isinstance(value, datetime)


def new_calendar(template: Any) -> Any:
    """An empty VCALENDAR carrying the calendar-level properties of ``template``."""
    out = Calendar()
    for name, value in template.items():
        out.add(name, value, encode=False)
    return out

