"""CALDAV:filter XML (RFC 4791 §9.7) into the pure filter values of core.formats.ical."""

from __future__ import annotations

import re
from datetime import datetime, UTC

from lxml import etree

from safehold.caldav import CALDAV, c
from safehold.core.formats import ical
from safehold.core.formats.textmatch import COLLATIONS, TextMatch
from safehold.dav.errors import DavError


def _bad(message: str) -> DavError:
    return DavError(403, message, condition="valid-filter", namespace=CALDAV)


# The form every client sends: read by slicing, a tenth of strptime's cost (which was a
# tenth of a calendar-query's); anything else goes through strptime as before.
_PLAIN_TIME = re.compile(r"[0-9]{8}T[0-9]{6}Z").fullmatch


def parse_time(value: str | None) -> datetime | None:
    """RFC 4791 §9.9: date-time in UTC, e.g. 20061104T000000Z."""
    if value is None:
        return None
    text = value.strip()
    try:
        if _PLAIN_TIME(text):
            return datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[9:11]),
                            int(text[11:13]), int(text[13:15]), tzinfo=UTC)
        return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise DavError(400, f"invalid UTC date-time {value!r}; expected YYYYMMDDTHHMMSSZ") from exc


def time_range(el: etree._Element) -> ical.TimeRange:
    start, end = parse_time(el.get("start")), parse_time(el.get("end"))
    if start is None and end is None:
        raise _bad("time-range needs start or end")
    if start is not None and end is not None and end <= start:
        raise _bad("time-range end must be after start")
    return ical.TimeRange(start, end)


def text_match(el: etree._Element) -> TextMatch:
    collation = el.get("collation", "i;ascii-casemap")
    if collation not in COLLATIONS:
        raise DavError(403, f"unsupported collation {collation!r}",
                       condition="supported-collation", namespace=CALDAV)
    return TextMatch(value=el.text or "", collation=collation,
                     negate=el.get("negate-condition", "no") == "yes",
                     match_type=el.get("match-type", "contains"))


def _param(el: etree._Element) -> ical.ParamFilter:
    tm = el.find(c("text-match"))
    return ical.ParamFilter(name=_name(el), is_not_defined=el.find(c("is-not-defined")) is not None,
                            text_match=text_match(tm) if tm is not None else None)


def _prop(el: etree._Element) -> ical.PropFilter:
    tr, tm = el.find(c("time-range")), el.find(c("text-match"))
    return ical.PropFilter(
        name=_name(el), is_not_defined=el.find(c("is-not-defined")) is not None,
        time_range=time_range(tr) if tr is not None else None,
        text_match=text_match(tm) if tm is not None else None,
        param_filters=tuple(_param(p) for p in el.findall(c("param-filter"))))


def _name(el: etree._Element) -> str:
    name = el.get("name")
    if not name:
        raise _bad(f"{etree.QName(el).localname} needs a name attribute")
    return name.upper()


def comp_filter(el: etree._Element) -> ical.CompFilter:
    tr = el.find(c("time-range"))
    return ical.CompFilter(
        name=_name(el), is_not_defined=el.find(c("is-not-defined")) is not None,
        time_range=time_range(tr) if tr is not None else None,
        prop_filters=tuple(_prop(p) for p in el.findall(c("prop-filter"))),
        comp_filters=tuple(comp_filter(x) for x in el.findall(c("comp-filter"))))


def parse_filter(el: etree._Element | None) -> ical.CompFilter:
    if el is None:
        raise _bad("calendar-query needs a CALDAV:filter")
    top = el.findall(c("comp-filter"))
    if len(top) != 1 or _name(top[0]) != "VCALENDAR":
        raise _bad("the filter must have exactly one comp-filter named VCALENDAR")
    return comp_filter(top[0])


def index_hint(flt: ical.CompFilter) -> tuple[str | None, float | None, float | None]:
    """The component and time range an index lookup can narrow to, if the filter
    names exactly one component (the common "events in this month" query)."""
    if len(flt.comp_filters) != 1 or flt.comp_filters[0].is_not_defined:
        return None, None, None
    inner = flt.comp_filters[0]
    tr = inner.time_range
    if tr is None:
        return inner.name, None, None
    return (inner.name, tr.start.timestamp() if tr.start else None,
            tr.end.timestamp() if tr.end else None)


def index_decides(flt: ical.CompFilter) -> tuple[float, float] | None:
    """The range [start, end) of a filter that asks only "VEVENTs overlapping this
    range" (no property, alarm or is-not-defined tests), or None.

    For such a filter a non-recurring event whose index envelope lies strictly inside
    the range matches without parsing: the envelope holds its instance (DTSTART to
    its end, both widened for floating times), so the instance starts after the range
    start and before its end, which every row of RFC 4791 §9.9's table counts as an
    overlap. A recurring event with indexed instances is decided by them
    (``ical_spans.overlap``). Anything else is parsed and tested (``ical.matches``)."""
    if flt.is_not_defined or flt.time_range is not None or flt.prop_filters \
            or len(flt.comp_filters) != 1:
        return None
    inner = flt.comp_filters[0]
    tr = inner.time_range
    if inner.name != "VEVENT" or inner.is_not_defined or tr is None or inner.prop_filters \
            or inner.comp_filters:
        return None
    return (tr.start.timestamp() if tr.start else float("-inf"),
            tr.end.timestamp() if tr.end else float("inf"))
