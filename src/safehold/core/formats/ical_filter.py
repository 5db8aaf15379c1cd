"""CALDAV:filter evaluation (RFC 4791 §9.7) against one calendar object resource.

A comp-filter's conditions are tested on the components as stored (prop-filters, nested
filters without a time-range) before any recurrence is expanded; only when a time-range is
involved, on the component or on one of its VALARMs, are instances enumerated, and the search
stops at the first instance that satisfies everything (RFC 4791 §9.9: "if any one instance
matches, then the test returns true").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from safehold.core.formats.ical_instances import (
    HORIZON_END,
    HORIZON_START,
    MARGIN,
    MAX_UTC,
    MIN_UTC,
    ONE_DAY,
    Instance,
    RecurrenceSet,
    TooManyInstances,
    alarm_triggers,
    by_uid,
    chunks,
    is_recurring_set,
    overlaps,
    own_instance,
    to_utc,
    value_of,
)
from safehold.core.formats.ical_parse import as_list, parse
from safehold.core.formats.textmatch import TextMatch, check_collation, text_match

_TIMED_COMPONENTS = ("VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY")


@dataclass(frozen=True)
class TimeRange:
    start: datetime | None = None  # UTC, aware; None = -infinity
    end: datetime | None = None    # UTC, aware; None = +infinity


@dataclass(frozen=True)
class ParamFilter:
    name: str
    is_not_defined: bool = False
    text_match: TextMatch | None = None


@dataclass(frozen=True)
class PropFilter:
    name: str
    is_not_defined: bool = False
    time_range: TimeRange | None = None
    text_match: TextMatch | None = None
    param_filters: tuple[ParamFilter, ...] = ()


@dataclass(frozen=True)
class CompFilter:
    name: str
    is_not_defined: bool = False
    time_range: TimeRange | None = None
    prop_filters: tuple[PropFilter, ...] = ()
    comp_filters: tuple[CompFilter, ...] = ()


def matches(data: bytes, flt: CompFilter, floating_tz: tzinfo | None = None) -> bool:
    """Whether the object matches the top-level (VCALENDAR) comp-filter of RFC 4791 §9.7.1.

    DATE and floating values are read in ``floating_tz`` (the calendar-timezone, RFC 4791 §7.3),
    UTC when None. Inline binary values (ATTACH;ENCODING=BASE64) are not text-matched. Raises
    textmatch.UnsupportedCollation before looking at the data, and InvalidCalendarData if the
    data cannot be parsed or its recurrence cannot be expanded. An object whose recurrence is
    too dense to expand (more than ical_instances.MAX_STEPS steps) matches.
    """
    _check_collations(flt)
    try:
        return _Matcher(parse(data, slim=True), floating_tz).calendar(flt)
    except TooManyInstances:
        # So dense a recurrence has instances in every range; listing it is the safe error
        # (a client may delete what a query leaves out, promise 8).
        return True


def _check_collations(flt: CompFilter) -> None:
    for prop in flt.prop_filters:
        for tm in [prop.text_match, *(p.text_match for p in prop.param_filters)]:
            if tm is not None:
                check_collation(tm.collation)
    for child in flt.comp_filters:
        _check_collations(child)


def bounds(time_range: TimeRange) -> tuple[datetime, datetime]:
    """The range in aware UTC, open ends as far-away instants. Naive input is taken as UTC."""
    return _aware(time_range.start, MIN_UTC), _aware(time_range.end, MAX_UTC)


def _aware(value: datetime | None, default: datetime) -> datetime:
    if value is None:
        return default
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _needs_instances(flt: CompFilter) -> bool:
    if flt.is_not_defined:
        return False
    return flt.time_range is not None or any(_needs_instances(c) for c in flt.comp_filters)


def _named(parent: Any, name: str) -> list[Any]:
    return [c for c in parent.subcomponents if c.name == name.upper()]


class _Matcher:
    def __init__(self, cal: Any, floating_tz: tzinfo | None) -> None:
        self.cal = cal
        self.tz = floating_tz

    def calendar(self, flt: CompFilter) -> bool:
        if flt.name.upper() != "VCALENDAR" or flt.is_not_defined:
            return False
        if flt.time_range is not None and not any(
            self.component(CompFilter(name, time_range=flt.time_range)) for name in _TIMED_COMPONENTS
        ):
            return False
        return self.props(self.cal, flt.prop_filters) and all(self.component(c) for c in flt.comp_filters)

    def component(self, flt: CompFilter) -> bool:
        """A comp-filter on the components directly below VCALENDAR."""
        comps = _named(self.cal, flt.name)
        if flt.is_not_defined:
            return not comps
        passing = {id(c) for c in comps if self.static(c, flt)}
        if not passing or not _needs_instances(flt):
            return bool(passing)
        return any(
            self._group_matches(group, flt, passing)
            for group in by_uid(comps)
            if any(id(c) in passing for c in group)
        )

    def _group_matches(self, group: list[Any], flt: CompFilter, passing: set[int]) -> bool:
        for inst in self._candidates(group, flt):
            if id(inst.source) not in passing:
                continue
            if flt.time_range is not None and not overlaps(inst, *bounds(flt.time_range), self.tz):
                continue
            if all(self.below(inst.source, inst, c) for c in flt.comp_filters if _needs_instances(c)):
                return True
        return False

    def _candidates(self, group: list[Any], flt: CompFilter) -> Iterator[Instance]:
        if not is_recurring_set(group):
            yield from (own_instance(c) for c in group)
            return
        recurrence = RecurrenceSet(group, self.tz)
        if flt.time_range is not None:
            start, end = bounds(flt.time_range)
        else:
            # Only VALARM time-ranges below: absolute triggers need no instance, relative ones
            # need the instances whose alarms can reach the ranges.
            yield from (Instance(c, None, None, None) for c in group)
            start, end = _alarm_window(group, flt)
        first = max(start, recurrence.floor, HORIZON_START)
        for chunk_start, chunk_end in chunks(first, min(end, HORIZON_END)):
            yield from recurrence.between(chunk_start, chunk_end)

    def below(self, parent: Any, inst: Instance, flt: CompFilter) -> bool:
        """A comp-filter on ``parent``'s subcomponents, ``inst`` being the instance they belong to."""
        children = _named(parent, flt.name)
        if flt.is_not_defined:
            return not children
        for child in children:
            if not self.static(child, flt):
                continue
            if flt.time_range is not None and not self._alarm_in_range(child, inst, flt.time_range):
                continue
            if all(self.below(child, inst, c) for c in flt.comp_filters if _needs_instances(c)):
                return True
        return False

    def _alarm_in_range(self, comp: Any, inst: Instance, time_range: TimeRange) -> bool:
        # RFC 4791 §9.9 gives time-range a meaning below VCALENDAR's children only for VALARM.
        if comp.name != "VALARM":
            return False
        start, end = bounds(time_range)
        return any(start <= t < end for t in alarm_triggers(comp, inst, self.tz))

    def static(self, comp: Any, flt: CompFilter) -> bool:
        """Every condition of ``flt`` that does not depend on a recurrence instance: all of
        them when no time-range is involved, else what must hold before instances are tried."""
        if not self.props(comp, flt.prop_filters):
            return False
        return all(self._static_child(comp, c) for c in flt.comp_filters)

    def _static_child(self, comp: Any, flt: CompFilter) -> bool:
        children = _named(comp, flt.name)
        if flt.is_not_defined:
            return not children
        return any(self.static(c, flt) for c in children)

    def props(self, comp: Any, filters: tuple[PropFilter, ...]) -> bool:
        return all(self._prop(comp, f) for f in filters)

    def _prop(self, comp: Any, flt: PropFilter) -> bool:
        found = as_list(comp.get(flt.name.upper()))
        if flt.is_not_defined:
            return not found
        # RFC 4791 §9.7.2: one property instance has to satisfy all conditions together.
        return any(self._prop_instance(p, flt) for p in found)

    def _prop_instance(self, prop: Any, flt: PropFilter) -> bool:
        if flt.time_range is not None and not self._prop_in_range(prop, flt.time_range):
            return False
        if flt.text_match is not None and not text_match(property_text(prop), flt.text_match):
            return False
        return all(_param(prop, f) for f in flt.param_filters)

    def _prop_in_range(self, prop: Any, time_range: TimeRange) -> bool:
        start, end = bounds(time_range)
        for item in getattr(prop, "dts", None) or [prop]:
            value = getattr(item, "dt", None)
            if isinstance(value, tuple):  # PERIOD: start/end or start/duration
                first, last = value
                last = first + last if isinstance(last, timedelta) else last
                if start < to_utc(last, self.tz) and end > to_utc(first, self.tz):
                    return True
            elif isinstance(value, datetime):
                if start <= to_utc(value, self.tz) < end:
                    return True
            elif isinstance(value, date):  # a DATE covers its day
                if start < to_utc(value + ONE_DAY, self.tz) and end > to_utc(value, self.tz):
                    return True
        return False


def _param(prop: Any, flt: ParamFilter) -> bool:
    params = getattr(prop, "params", {})
    value = params.get(flt.name.upper())
    if flt.is_not_defined:
        return value is None
    if value is None:
        return False
    if flt.text_match is None:
        return True
    tm = flt.text_match
    return any(text_match(str(v), tm) for v in (value if isinstance(value, list) else [value]))


def property_text(prop: Any) -> str:
    """The value a text-match compares with: TEXT unescaped, other types as written."""
    if isinstance(prop, str):
        return str(prop)
    categories = getattr(prop, "cats", None)
    if categories is not None:
        return ",".join(str(c) for c in categories)
    ical = prop.to_ical()
    return ical.decode("utf-8", errors="replace") if isinstance(ical, bytes) else str(ical)


def _alarm_window(group: list[Any], flt: CompFilter) -> tuple[datetime, datetime]:
    """Instance starts whose alarms can fire within the VALARM time-ranges below ``flt``."""
    ranges = [bounds(tr) for tr in _alarm_ranges(flt)]
    reach = _alarm_reach(group)
    start, end = min(s for s, _ in ranges), max(e for _, e in ranges)
    # An open end of a range is year 1 or 9999 (``bounds``): widening it would overflow, and
    # the expansion stops at its horizon anyway.
    try:
        start -= reach
    except OverflowError:
        start = MIN_UTC
    try:
        end += reach
    except OverflowError:
        end = MAX_UTC
    return start, end


def _alarm_ranges(flt: CompFilter) -> Iterator[TimeRange]:
    for child in flt.comp_filters:
        if child.is_not_defined:
            continue
        if child.time_range is not None:
            yield child.time_range
        yield from _alarm_ranges(child)


def _alarm_reach(group: list[Any]) -> timedelta:
    """How far an alarm can fire from its instance's start: trigger offset, repeats, duration."""
    reach = MARGIN
    for comp in group:
        own = own_instance(comp)
        length = timedelta(0)
        if own.start is not None and own.end is not None:
            length = abs(to_utc(own.end, None) - to_utc(own.start, None))
        for alarm in comp.walk("VALARM"):
            offset = value_of(alarm, "TRIGGER")
            interval = value_of(alarm, "DURATION")
            spread = abs(offset) if isinstance(offset, timedelta) else timedelta(0)
            if isinstance(interval, timedelta):
                spread += abs(interval) * int(alarm.get("REPEAT", 0))
            reach = max(reach, spread + length + MARGIN)
    return reach
