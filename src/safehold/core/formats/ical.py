"""iCalendar calendar object resources: validation, index extraction, queries (RFC 5545, RFC 4791).

Pure functions over bytes; the stored bytes are never rewritten (promise 3). The work is split:

- ical_parse      parsing, per-object time zones, the InvalidCalendarData error
- ical_instances  recurrence expansion and the RFC 4791 §9.9 overlap tests
- ical_filter     calendar-query filters (§9.7) and :func:`matches`
- ical_expand     calendar-data expand (§9.6.5) and limit-recurrence-set (§9.6.6)
- ical_freebusy   free-busy-query answers (§7.10)

This module validates and indexes (:func:`inspect_calendar`) and re-exports the rest.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dateutil.rrule import rrulestr
from icalendar import vRecur

from safehold.core.formats import ical_rules, ical_simple
from safehold.core.formats.contentlines import nul_byte
from safehold.core.formats.ical_expand import expand, limit_recurrence_set
from safehold.core.formats.ical_filter import CompFilter, ParamFilter, PropFilter, TimeRange, matches
from safehold.core.formats.ical_freebusy import freebusy
from safehold.core.formats.ical_spans import MAX_SPANS, NEAR_HORIZON, Spans, event_spans
from safehold.core.formats.ical_instances import (
    HORIZON_END,
    HORIZON_START,
    RecurrenceSet,
    Time,
    rule_steps,
    freebusy_periods,
    is_recurring_set,
    is_thisandfuture,
    own_instance,
    thisandfuture_shift,
    to_utc,
    value_of,
)
from safehold.core.formats.ical_parse import (
    TOO_FAR,
    VALID_DATA,
    VALID_OBJECT,
    InvalidCalendarData,
    as_list,
    has,
    is_date,
    decode,
    main_components,
    parse_text,
    prop,
)

__all__ = [
    "CalendarInfo", "CompFilter", "InvalidCalendarData", "ParamFilter", "PropFilter", "TimeRange",
    "expand", "freebusy", "inspect_calendar", "limit_recurrence_set", "matches",
]

COMPONENTS = ("VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY")
# A recurrence with more instances than this, or reaching past this year, is indexed as endless.
MAX_INSTANCES = 10_000
MAX_YEAR = 2200
# A floating or DATE value happens at a different instant in each zone, from UTC+14 to UTC-12.
_EARLIEST_ZONE = timedelta(hours=14)
_LATEST_ZONE = timedelta(hours=12)
# iCalendar times have whole seconds; one more makes strict index comparisons safe at the edges.
_SPARE = timedelta(seconds=1)
_ONCE = ("DTSTART", "DTEND", "DUE", "DURATION", "RECURRENCE-ID")


@dataclass(frozen=True)
class CalendarInfo:
    """What the index keeps of a calendar object resource.

    ``start``/``end`` (aware UTC) bound every instance with a second to spare, so that the
    object can match a time-range [s, e) only if ``(start is None or start < e) and (end is
    None or end > s)`` — which stays true of instants RFC 4791 §9.9 counts at either edge.
    They are a superset (floating and DATE values are widened to cover every zone from UTC+14
    to UTC-12), and VALARM trigger times are not part of them: :func:`matches` decides.
    None means unbounded or unknown: a VTODO without dates, an endless or very long RRULE.
    """

    component: str
    uid: str
    start: datetime | None
    end: datetime | None
    recurring: bool
    # A recurring VEVENT's instances, when they decide time-range queries exactly (ical_spans).
    spans: Spans | None = None


def inspect_calendar(data: bytes, *, stored: bool = False) -> CalendarInfo:
    """Validate one calendar object resource and extract its index fields.

    Raises InvalidCalendarData: ``valid-calendar-data`` when the bytes are not iCalendar,
    ``valid-calendar-object-resource`` when they break RFC 4791 §4.1. ``stored`` skips the
    NUL check, for bytes accepted before it existed (items.index_for).
    """
    text = decode(data)  # once, for both readings
    simple = ical_simple.simple_event(text)
    walked = False  # the plain-series walk was tried on this object and declined
    if simple is not None:
        found, walked = _simple(simple, stored)
        if found is not None:
            return found
    cal = parse_text(text, slim=True, for_index=True)
    # After parsing, so that a body that is no iCalendar at all (an image) is named so.
    nul = None if stored else nul_byte(data)
    if nul is not None:
        raise InvalidCalendarData(VALID_DATA, f"a NUL byte at {nul}: iCalendar text cannot hold "
                                  "one (RFC 5545 §3.1)")
    components = _object_components(cal)
    for comp in components:
        _check_component(comp)
        if not stored:  # accepted before: expanded as it was (slowly), never stranded
            _check_rules(comp)
    recurring = is_recurring_set(components)
    if recurring:
        _check_once(components)
    try:
        plain = _plain_series(components) if recurring and not walked else None
        if plain is not None:
            start, end, spans = plain
        else:
            # What is accepted must be expandable when a query meets it.
            recurrence = RecurrenceSet(components, None) if recurring else None
            start, end = _bounds(components)
            spans = event_spans(components, recurrence, start, end) if recurrence else None
    except OverflowError as exc:
        raise InvalidCalendarData(VALID_DATA, TOO_FAR) from exc
    return CalendarInfo(components[0].name, str(prop(components[0], "UID")), start, end, recurring, spans)


def _simple(event: ical_simple.SimpleEvent, stored: bool) -> tuple[CalendarInfo | None, bool]:
    """inspect_calendar of a simple event (ical_simple), as the full parse comes to it:
    (the index, None where the full parse must decide; whether the plain-series walk was
    tried and declined, which the full parse, given the same rule, start and length, then
    need not repeat). A rule ical_rules refuses is refused here, as _check_rules words it
    (its probe can take a tenth of a second). Stored bytes with a rule: the full parse."""
    if event.rule is None:
        try:
            low, high = _hull([event.start, event.end])  # _bounds of a lone VEVENT
            return CalendarInfo("VEVENT", event.uid, low - _SPARE, high + _SPARE, False), False
        except OverflowError:
            return None, False
    if stored or not isinstance(event.start, datetime):
        return None, False
    try:
        rule = vRecur.from_ical(event.rule)
    except (ValueError, TypeError):
        return None, False
    if "COUNT" in rule and "UNTIL" in rule:
        return None, False  # _check_component's refusal
    problem = ical_rules.problem(rule, event.start)
    if problem is not None:
        raise InvalidCalendarData(VALID_DATA, _rule_refusal("VEVENT", "RRULE", problem))
    try:
        series = _series(rule, event.start, _length_until(event.end, event.start))
    except (ValueError, TypeError, OverflowError):
        return None, False
    if series is None:
        return None, True
    start, end, spans = series
    return CalendarInfo("VEVENT", event.uid, start, end, True, spans), False


def _object_components(cal: Any) -> list[Any]:
    """The components of one calendar object resource, checked against RFC 4791 §4.1."""
    if has(cal, "METHOD"):
        raise InvalidCalendarData(VALID_OBJECT, "a stored calendar object must not have METHOD (RFC 4791 §4.1)")
    scale = prop(cal, "CALSCALE")
    if scale is not None and str(scale).upper() != "GREGORIAN":
        raise InvalidCalendarData(VALID_DATA, "only the GREGORIAN calendar scale is supported")
    components = [c for c in main_components(cal) if not c.name.startswith("X-")]
    names = sorted({c.name for c in components})
    if not names:
        raise InvalidCalendarData(VALID_OBJECT, "the object holds no calendar component")
    if len(names) > 1:
        raise InvalidCalendarData(VALID_OBJECT, f"one component type per object, found {', '.join(names)}")
    if names[0] not in COMPONENTS:
        raise InvalidCalendarData(VALID_OBJECT, f"unsupported component {names[0]}")
    uids = {str(prop(c, "UID") or "") for c in components}
    if "" in uids:
        raise InvalidCalendarData(VALID_OBJECT, f"every {names[0]} needs a UID")
    if len(uids) > 1:
        raise InvalidCalendarData(VALID_OBJECT, "all components of an object must share one UID")
    if sum(not has(c, "RECURRENCE-ID") for c in components) > 1:
        raise InvalidCalendarData(VALID_OBJECT, "more than one component without RECURRENCE-ID for one UID")
    return components


def _check_once(components: list[Any]) -> None:
    """RFC 5545 §3.6.1, §3.6.2: these occur at most once in a component. Where one repeats in
    a lone component the index reads the first; a recurring set cannot be expanded so
    (recurring_ical_events fails on it), and a set stored so could never answer a query."""
    for comp in components:
        for name in _ONCE:
            if len(as_list(prop(comp, name))) > 1:
                raise InvalidCalendarData(VALID_DATA, f"{comp.name} has {name} more than once "
                                          "(RFC 5545 §3.6.1)")
            # Nor can it be expanded when one of them has another value type (such as
            # "DTEND;VALUE=BINARY:...", parsed as vBinary): the library reads .dt off it.
            wanted, kind = (timedelta, "duration") if name == "DURATION" else (date, "date or date-time")
            if has(comp, name) and not isinstance(value_of(comp, name), wanted):
                raise InvalidCalendarData(VALID_DATA, f"{comp.name} {name} is not a {kind} "
                                          "(RFC 5545 §3.8.2, §3.8.4.4)")
        for name in ("RDATE", "EXDATE"):  # "RDATE:202409" is parsed as a TIME
            for found in as_list(prop(comp, name)):
                if not all(isinstance(d.dt, date | tuple) for d in getattr(found, "dts", [])):
                    raise InvalidCalendarData(VALID_DATA, f"{comp.name} {name} holds a value that is "
                                              "not a date, date-time or period (RFC 5545 §3.8.5)")


def _check_component(comp: Any) -> None:
    start = value_of(comp, "DTSTART")
    # RFC 5545 §3.6.1: DTSTART is required in a VEVENT of an object without METHOD.
    if comp.name == "VEVENT" and start is None:
        raise InvalidCalendarData(VALID_DATA, "VEVENT without DTSTART")
    if (has(comp, "RRULE") or has(comp, "RDATE")) and start is None:
        raise InvalidCalendarData(VALID_DATA, f"{comp.name} with RRULE or RDATE but no DTSTART")
    for name in ("RRULE", "EXRULE"):
        # "RRULE;VALUE=TEXT:..." is parsed as text, which expansion cannot read (it failed
        # with an AttributeError, a 500, before this check).
        if not all(isinstance(rule, vRecur) for rule in as_list(prop(comp, name))):
            raise InvalidCalendarData(VALID_DATA, f"{comp.name} {name} is not a recurrence rule "
                                      "(RFC 5545 §3.3.10, §3.8.5.3)")
    for rule in as_list(prop(comp, "RRULE")):
        if "COUNT" in rule and "UNTIL" in rule:
            raise InvalidCalendarData(VALID_DATA, "RRULE with both COUNT and UNTIL (RFC 5545 §3.3.10)")


def _check_rules(comp: Any) -> None:
    """Refuse a recurrence rule that expansion could not afford (ical_rules)."""
    start = value_of(comp, "DTSTART")
    if not isinstance(start, date):
        return  # no DTSTART, or not a date: the checks before or after answer it
    for name in ("RRULE", "EXRULE"):
        for rule in as_list(prop(comp, name)):
            problem = ical_rules.problem(rule, start)
            if problem is not None:
                raise InvalidCalendarData(VALID_DATA, _rule_refusal(comp.name, name, problem))


def _rule_refusal(component: str, name: str, problem: str) -> str:
    return f"{component} {name}: {problem} (RFC 5545 §3.3.10)"


def _bounds(components: list[Any]) -> tuple[datetime | None, datetime | None]:
    spans = [_span(c) for c in components]
    for comp in components:
        if not has(comp, "RECURRENCE-ID") and (has(comp, "RRULE") or has(comp, "RDATE")):
            spans.append(_recurrence_span(comp, components))
    starts = [s for s, _ in spans]
    ends = [e for _, e in spans]
    start = None if None in starts else min(s for s in starts if s is not None) - _SPARE
    end = None if None in ends else max(e for e in ends if e is not None) + _SPARE
    return start, end


def _lower(value: Time) -> datetime:
    floating = not isinstance(value, datetime) or value.tzinfo is None
    return to_utc(value, None) - (_EARLIEST_ZONE if floating else timedelta(0))


def _upper(value: Time) -> datetime:
    floating = not isinstance(value, datetime) or value.tzinfo is None
    return to_utc(value, None) + (_LATEST_ZONE if floating else timedelta(0))


def _hull(values: list[Time]) -> tuple[datetime, datetime]:
    return min(_lower(v) for v in values), max(_upper(v) for v in values)


def _span(comp: Any) -> tuple[datetime | None, datetime | None]:
    """Bounds of the component's own instance, following the rows of RFC 4791 §9.9."""
    inst = own_instance(comp)
    if comp.name == "VTODO" and inst.start is None and inst.end is None:
        return _undated_todo_span(comp)
    if comp.name == "VJOURNAL" and inst.start is not None:
        low, high = _hull([inst.start])
        return low, high + _length(comp)
    if comp.name == "VFREEBUSY" and (inst.start is None or inst.end is None):
        periods = freebusy_periods(comp, UTC)
        if not periods:
            return None, None
        return min(p[0] for p in periods), max(p[1] for p in periods)
    dates = [v for v in (inst.start, inst.end) if v is not None]
    return _hull(dates) if dates else (None, None)


def _undated_todo_span(comp: Any) -> tuple[datetime | None, datetime | None]:
    stamps = [v for v in (value_of(comp, "COMPLETED"), value_of(comp, "CREATED")) if v is not None]
    if "COMPLETED" not in comp and stamps:
        return _lower(stamps[0]), None  # only CREATED: matches every range ending after it
    return _hull(stamps) if stamps else (None, None)


def _recurrence_span(master: Any, components: list[Any]) -> tuple[datetime | None, datetime | None]:
    """Bounds of everything the master's RRULE and RDATE generate."""
    own = own_instance(master)
    assert own.start is not None  # checked by _check_component
    length = _length(master)
    starts: list[Time] = [own.start]
    ends: list[Time] = []
    for rule in as_list(prop(master, "RRULE")):
        last = _last_rule_start(rule, own.start)
        if last is None:
            return _lower(own.start), None
        starts.append(last)
    for rdate in _rdates(master):
        if isinstance(rdate, tuple):
            first, second = rdate
            starts.append(first)
            ends.append(first + second if isinstance(second, timedelta) else second)
        else:
            starts.append(rdate)
    shift, longest = timedelta(0), length
    for comp in components:
        if is_thisandfuture(comp):
            shift = max(shift, thisandfuture_shift(comp))
            longest = max(longest, _length(comp))
    low, high = _hull(starts + ends)
    return low, high + shift + longest


def _length(comp: Any) -> timedelta:
    """How long one instance lasts (a DATE journal entry: its day, RFC 4791 §9.9)."""
    inst = own_instance(comp)
    if comp.name == "VJOURNAL" and is_date(inst.start):
        return timedelta(days=1)
    if inst.start is None or inst.end is None:
        return timedelta(0)
    return max(to_utc(inst.end, None) - to_utc(inst.start, None), timedelta(0))


def _rdates(comp: Any) -> list[Any]:
    return [item.dt for rdate in as_list(prop(comp, "RDATE")) for item in rdate.dts]


def _last_rule_start(rule: Any, start: Time) -> Time | None:
    """The last start an RRULE generates; None when endless or beyond the caps."""
    counts = rule.get("COUNT")
    untils = rule.get("UNTIL")
    if not counts and not untils:
        return None
    if counts and int(counts[0]) > MAX_INSTANCES:
        return None
    # Recurrences are computed in the local time of DTSTART (RFC 5545 §3.3.10), naive here.
    first = _wall_time(start)
    until = _wall_until(untils[0], start) if untils else None
    if until is not None and until.year > MAX_YEAR:
        return None
    text = ";".join(p for p in rule.to_ical().decode().split(";") if not p.upper().startswith("UNTIL="))
    try:
        generated = rrulestr(text, dtstart=first)
    except (ValueError, TypeError) as exc:
        raise InvalidCalendarData(VALID_DATA, f"RRULE cannot be evaluated: {exc}") from exc
    last = first
    try:
        for index, occurrence in enumerate(generated):
            if until is not None and occurrence > until:
                break
            if index >= MAX_INSTANCES or occurrence.year > MAX_YEAR:
                return None
            last = occurrence
    except ValueError as exc:  # "year 10000 is out of range", from a start late in 9999
        raise InvalidCalendarData(VALID_DATA, TOO_FAR) from exc
    return _from_wall_time(last, start)


def _wall_time(value: Time) -> datetime:
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=None)


def _wall_until(until: Time, start: Time) -> datetime:
    if not isinstance(until, datetime):
        return datetime(until.year, until.month, until.day, 23, 59, 59)
    if until.tzinfo is not None and isinstance(start, datetime) and start.tzinfo is not None:
        return until.astimezone(start.tzinfo).replace(tzinfo=None)
    return until.replace(tzinfo=None)


def _from_wall_time(value: datetime, start: Time) -> Time:
    if not isinstance(start, datetime):
        return value.date()
    return value.replace(tzinfo=start.tzinfo)


# The parts of an RRULE a plain series may have (_plain_series); BYSETPOS, BYWEEKNO and the
# like are left to the general path, as are rules with both COUNT and UNTIL (refused above).
_PLAIN_RULE_PARTS = frozenset({"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTH",
                               "BYMONTHDAY", "WKST"})
_UTC_ZONE = zoneinfo.ZoneInfo("UTC")  # the zone icalendar gives "...Z" values (cached: one object)


def _plain_series(components: list[Any]) -> tuple[datetime | None, datetime | None, Spans | None] | None:
    """(start, end, spans) of the most common recurring object, a lone VEVENT in UTC with one
    bounded RRULE and no RDATE, EXDATE, EXRULE or overrides, from one walk of its rule; None
    for anything else, and whenever the walk fails or reaches a cap, so that the general path
    (RecurrenceSet, _bounds, event_spans) decides, with its own errors.

    The general path walks the rule three times (recurring_ical_events builds a Series, then
    _last_rule_start and event_spans walk it), some 500 µs a PUT. Here the instances are the
    rule's starts (dateutil, as there) plus DTSTART unless UNTIL is before it (RFC 5545
    §3.8.5.3, as recurring_ical_events adds it), each lasting DTEND - DTSTART; the envelope
    is _bounds' and the spans are event_spans' for them. tests/unit/test_ical_lean.py
    compares both paths over recurring objects of every kind."""
    if len(components) != 1:
        return None
    master = components[0]
    if master.name != "VEVENT" or any(has(master, n) for n in ("RECURRENCE-ID", "RDATE", "EXDATE", "EXRULE")):
        return None
    rule = prop(master, "RRULE")
    first = value_of(master, "DTSTART")
    if rule is None or isinstance(rule, list) or not isinstance(first, datetime) or first.tzinfo is not _UTC_ZONE:
        return None
    return _series(rule, first, _plain_length(master, first))


def _series(rule: Any, first: datetime, length: timedelta | None
            ) -> tuple[datetime | None, datetime | None, Spans | None] | None:
    """_plain_series of a VEVENT with this one RRULE, DTSTART and instance length (None: one
    the general path reads otherwise)."""
    if not set(rule) <= _PLAIN_RULE_PARTS or first.tzinfo is not _UTC_ZONE or first.microsecond \
            or first < HORIZON_START + NEAR_HORIZON + _SPARE:
        return None
    counts, untils = rule.get("COUNT"), rule.get("UNTIL")
    if length is None or len(rule.get("FREQ", [])) != 1 \
            or not all(isinstance(n, int) and n >= 1 for n in rule.get("INTERVAL", [])):
        return None
    if counts:
        if not isinstance(counts[0], int) or not 1 <= counts[0] <= MAX_INSTANCES:
            return None
        until = None
    elif untils and isinstance(untils[0], datetime) and untils[0].tzinfo is _UTC_ZONE:
        until = untils[0]
    else:
        return None  # endless, or an UNTIL recurring_ical_events rewrites (DATE, floating)
    starts = _plain_starts(rule, first, until)
    if starts is None:
        return None
    # _bounds: DTSTART's own instance and the rule's last start, each lasting ``length``.
    start = first.replace(tzinfo=UTC) - _SPARE  # the same instant, in _bounds' UTC
    last = starts[-1] if starts else first
    if length > HORIZON_END - NEAR_HORIZON - _SPARE - last:
        return None  # event_spans leaves these out (and the sum might overflow)
    end = last.replace(tzinfo=UTC) + length + _SPARE
    if rule_steps([rule], first, end) > MAX_SPANS:
        return start, end, None
    if until is None or first <= until:
        starts.append(first)
    found = {(s, s + int(length.total_seconds())) for s in map(_whole_seconds, starts)}
    if len(found) > MAX_SPANS:
        return start, end, None
    return start, end, tuple(sorted(found))


def _plain_length(master: Any, first: datetime) -> timedelta | None:
    """DTEND - DTSTART of a plain series, or None where the general path reads it otherwise
    (an end before the start swaps them in recurring_ical_events, clamps in _length)."""
    if has(master, "DTEND"):
        return _length_until(value_of(master, "DTEND"), first)
    duration = value_of(master, "DURATION")
    return _whole_length(duration if isinstance(duration, timedelta) else timedelta(0))


def _length_until(last: Any, first: datetime) -> timedelta | None:
    """_plain_length of a series whose DTEND is ``last``."""
    if not isinstance(last, datetime) or last.tzinfo is not _UTC_ZONE:
        return None
    return _whole_length(last - first)


def _whole_length(length: timedelta) -> timedelta | None:
    return None if length < timedelta(0) or length.microseconds else length


def _plain_starts(rule: Any, first: datetime, until: datetime | None) -> list[datetime] | None:
    """The starts the rule generates from ``first`` up to ``until``, in UTC, as
    _last_rule_start walks them; None when the walk fails or reaches its caps."""
    days = _STEP_DAYS.get(str(rule["FREQ"][0]).upper()) if set(rule) <= _STEPPED_PARTS else None
    if days is not None and all(len(values) == 1 for values in rule.values()):
        return _stepped_starts(timedelta(days=days * rule.get("INTERVAL", [1])[0]), first,
                               rule.get("COUNT", [None])[0], until)
    text = ";".join(p for p in rule.to_ical().decode().split(";") if not p.upper().startswith("UNTIL="))
    naive_until = None if until is None else until.replace(tzinfo=None)
    starts: list[datetime] = []
    try:
        for index, occurrence in enumerate(rrulestr(text, dtstart=first.replace(tzinfo=None))):
            if naive_until is not None and occurrence > naive_until:
                break
            if index >= MAX_INSTANCES or occurrence.year > MAX_YEAR:
                return None
            starts.append(occurrence.replace(tzinfo=_UTC_ZONE))
    except (ValueError, TypeError, OverflowError):
        return None
    return starts


# A DAILY or WEEKLY rule with nothing but INTERVAL and COUNT or UNTIL (and FREQ, once each)
# starts every INTERVAL days or weeks at DTSTART's time of day (RFC 5545 §3.3.10: the BYxxx
# parts default to DTSTART's); in UTC that is plain arithmetic, where dateutil spends some
# 10 µs on every start (it builds a year's masks to find each).
_STEP_DAYS = {"DAILY": 1, "WEEKLY": 7}
_STEPPED_PARTS = frozenset({"FREQ", "INTERVAL", "COUNT", "UNTIL"})


def _stepped_starts(step: timedelta, first: datetime, count: int | None,
                    until: datetime | None) -> list[datetime] | None:
    starts: list[datetime] = []
    current = first
    while (count is None or len(starts) < count) and (until is None or current <= until):
        if len(starts) >= MAX_INSTANCES or current.year > MAX_YEAR:
            return None
        starts.append(current)
        current += step
    return starts


def _whole_seconds(value: datetime) -> int:
    return int(value.timestamp())
