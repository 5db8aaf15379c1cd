"""Instances of calendar components in time, and the overlap tests of RFC 4791 §9.9.

An :class:`Instance` is one occurrence of a component: the component whose properties apply (the
master, an override, or a RANGE=THISANDFUTURE override) plus its effective start and end. Recurring
sets are expanded with recurring-ical-events; the windows handed to it are widened, and the exact
§9.9 conditions are applied here, because the library's own span test differs from the RFC at the
edges (VTODO ends are inclusive, a DATE journal lasts a day, a VTODO without dates matches always).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from icalendar import vDDDTypes
from recurring_ical_events import EventAdapter, JournalAdapter, Series, TodoAdapter

from safehold.core.formats.ical_parse import VALID_DATA, InvalidCalendarData, as_list, has, is_date, prop

# Stand-ins for the open ends of a time-range (RFC 4791 §9.9: "-infinity", "+infinity").
MIN_UTC = datetime(1, 1, 2, tzinfo=UTC)
MAX_UTC = datetime(9999, 12, 30, tzinfo=UTC)
# Expansion never looks outside these years: the library overflows near year 1 and 9999, and an
# unbounded rule has to stop somewhere.
HORIZON_START = datetime(1800, 1, 1, tzinfo=UTC)
HORIZON_END = datetime(2200, 1, 1, tzinfo=UTC)
# Widening of expansion windows, enough for every place where §9.9 and the library's test differ.
MARGIN = timedelta(days=2)
ONE_DAY = timedelta(days=1)
_MAX_ALARM_REPEAT = 1000
# Expanding walks a rule from its DTSTART (dateutil, some 10 µs a step); beyond this many steps
# the work is refused rather than done for minutes. Daily from 1800 to 2200 is 146,000 steps.
MAX_STEPS = 200_000
# A rule is walked from its DTSTART, so an open-ended daily event since 2015 cost 23 ms of
# every query about November 2026, since 1800 355 ms. A rule whose instances repeat with a
# fixed period of days (below) is walked instead from a start this many periods or more
# later, when the range begins that far after DTSTART (RecurrenceSet._series_near).
SKIP_PERIODS = 200
_PERIOD_DAYS = {"DAILY": 1, "WEEKLY": 7}
# What moves with DTSTART: every instance keeps its distance to it (a VTODO's DUE too).
_MOVED_WITH_START = ("DTSTART", "DTEND", "DUE")
_FREQ_SECONDS = {"SECONDLY": 1, "MINUTELY": 60, "HOURLY": 3600, "DAILY": 86_400,
                 "WEEKLY": 604_800, "MONTHLY": 2_419_200, "YEARLY": 31_536_000}

_ADAPTERS: dict[str, Any] = {"VEVENT": EventAdapter, "VTODO": TodoAdapter, "VJOURNAL": JournalAdapter}
_EXPANSION_ERRORS = (ValueError, TypeError, KeyError, OverflowError)

Time = date | datetime


class TooManyInstances(InvalidCalendarData):
    """A recurrence too dense to expand over the range asked for (FREQ=SECONDLY and the like)."""


class InstanceLimit(TooManyInstances):
    """More instances in the range than the caller's ``limit`` (RecurrenceSet.between)."""


@dataclass(frozen=True)
class Instance:
    source: Any                  # the component whose properties this instance has
    start: Time | None           # effective DTSTART
    end: Time | None             # effective DTEND, DUE or DTSTART+DURATION; None when absent
    recurrence_id: Time | None   # the instance's original start; None outside recurring sets


def to_utc(value: Time, floating_tz: tzinfo | None) -> datetime:
    """DATE and floating values are read in ``floating_tz`` (RFC 4791 §9.9), UTC by default."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=floating_tz or UTC)
    return value.astimezone(UTC)


def value_of(comp: Any, name: str) -> Any:
    """The parsed value of a property (the first, if it repeats), or None."""
    props = as_list(prop(comp, name))
    return getattr(props[0], "dt", None) if props else None


def time_of(comp: Any, name: str) -> Time | None:
    """A DATE or DATE-TIME property's value, or None."""
    value = value_of(comp, name)
    return value if isinstance(value, date) else None


def add_duration(start: Time, delta: timedelta) -> Time:
    # A DATE plus a duration with a time part becomes a floating date-time, as in the library.
    if is_date(start) and (delta.seconds or delta.microseconds):
        start = datetime(start.year, start.month, start.day)
    return start + delta


def own_instance(comp: Any) -> Instance:
    """The component's own instance, ignoring any recurrence it defines."""
    start = time_of(comp, "DTSTART")
    return Instance(comp, start, _own_end(comp, start), time_of(comp, "RECURRENCE-ID"))


def _own_end(comp: Any, start: Time | None) -> Time | None:
    if comp.name == "VFREEBUSY":
        return time_of(comp, "DTEND")
    if comp.name == "VTODO" and has(comp, "DUE"):
        return time_of(comp, "DUE")
    if start is None or comp.name not in ("VEVENT", "VTODO"):
        return None
    if comp.name == "VEVENT" and has(comp, "DTEND"):
        return time_of(comp, "DTEND")
    duration = value_of(comp, "DURATION")
    if isinstance(duration, timedelta):
        return add_duration(start, duration)
    if comp.name == "VTODO":
        return None
    # RFC 5545 §3.6.1: without DTEND or DURATION an all-day event lasts the day, a timed one no time.
    return start + ONE_DAY if is_date(start) else start


def is_recurring_set(group: list[Any]) -> bool:
    """Whether one UID's components form a recurrence set that needs expanding."""
    if group[0].name not in _ADAPTERS:
        return False
    if any(has(c, "RECURRENCE-ID") for c in group):
        return True
    # A rule needs a DTSTART to anchor it (RFC 5545 §3.8.5.3); inspect_calendar refuses one without.
    return any((has(c, "RRULE") or has(c, "RDATE")) and has(c, "DTSTART") for c in group)


def by_uid(components: list[Any]) -> list[list[Any]]:
    groups: dict[str, list[Any]] = {}
    for comp in components:
        groups.setdefault(str(comp.get("UID", id(comp))), []).append(comp)
    return list(groups.values())


class RecurrenceSet:
    """One UID's components (master and overrides), expanded on demand."""

    def __init__(self, group: list[Any], floating_tz: tzinfo | None) -> None:
        self.zone = floating_tz or UTC
        masters = [c for c in group if not has(c, "RECURRENCE-ID")]
        self.master = _highest_sequence(masters) if masters else None
        self.overrides: dict[datetime, Any] = {}
        for comp in group:
            if has(comp, "RECURRENCE-ID"):
                key = recurrence_key(value_of(comp, "RECURRENCE-ID"))
                current = self.overrides.get(key)
                self.overrides[key] = _highest_sequence([current, comp] if current is not None else [comp])
        self.floor = _earliest_start(group)
        _check_intervals(group)
        self._group = group
        self._series = self._series_of(group)

    @staticmethod
    def _series_of(group: list[Any]) -> Any:
        try:
            return Series([_ADAPTERS[group[0].name](c) for c in group])
        except _EXPANSION_ERRORS as exc:
            raise InvalidCalendarData(VALID_DATA, f"cannot expand the recurrence: {exc}") from exc

    def _series_near(self, start: datetime) -> tuple[Any, Any]:
        """The series to walk for a window beginning at ``start``, and the master it walks
        from: ours, or a copy whose DTSTART (and DTEND or DUE) lie a whole number of the rule's
        periods later, at least one period and the instance's length before the window.

        From there on the copy's rule yields the same instances: a DAILY or WEEKLY rule
        without COUNT (which counts from DTSTART) generates candidates every INTERVAL days
        or weeks from DTSTART, in the zone's wall-clock time as this shift is, and its BY*
        parts, UNTIL, EXDATE, RDATE and the overrides (keyed by their original start) are
        absolute. The instance at the copy's DTSTART, which the rule itself might not
        yield, and the original DTSTART's lie before the window."""
        master = self.master
        shift = _skip(master, start) if master is not None else None
        if master is None or shift is None:
            return self._series, master
        moved = master.copy()  # the values are shared; only the two set here are new
        moved.subcomponents = master.subcomponents  # (a shallow copy has none: its VALARMs)
        for name in _MOVED_WITH_START:
            old = prop(master, name)
            if old is not None:
                value = vDDDTypes(old.dt + shift)
                value.params = old.params
                moved[name] = value
        return self._series_of([moved if c is master else c for c in self._group]), moved

    def between(self, start: datetime, end: datetime, limit: int | None = None) -> list[Instance]:
        """Instances touching [start, end), give or take MARGIN: callers apply the §9.9 test.

        With ``limit``, raises InstanceLimit as soon as there are more than that many, so no
        more than ``limit + 1`` of them are ever built."""
        # Clamped to the horizon before widening: a range from year 1 or to 9999 (an expand
        # asking for "everything") would overflow datetime, and the horizon cuts it anyway.
        start = max(max(start, HORIZON_START) - MARGIN, self.floor, HORIZON_START).astimezone(self.zone)
        end = min(min(end, HORIZON_END) + MARGIN, HORIZON_END).astimezone(self.zone)
        if start >= end:
            return []
        series, walked = self._series_near(start)
        if walked is not None and expansion_steps(walked, end) > MAX_STEPS:
            raise TooManyInstances(VALID_DATA, f"the recurrence is too dense to expand up to {end}")
        try:
            stop = None if limit is None else limit + 1
            occurrences = list(itertools.islice(series.between(start, end), stop))
        except _EXPANSION_ERRORS as exc:
            raise InvalidCalendarData(VALID_DATA, f"cannot expand the recurrence: {exc}") from exc
        if limit is not None and len(occurrences) > limit:
            raise InstanceLimit(VALID_DATA, f"more than {limit} instances between {start} and {end}")
        return [self._instance(occurrence) for occurrence in occurrences]

    def _instance(self, occurrence: Any) -> Instance:
        ids = occurrence.recurrence_ids
        source = self.overrides.get(ids[0]) if ids else self.master
        if source is None:  # not expected: both sides key instances the same way
            raise InvalidCalendarData(VALID_DATA, f"no component for the instance at {occurrence.start}")
        if has(source, "RECURRENCE-ID"):  # an override: its own instance (the master's is not)
            own = own_instance(source)
            # A RANGE=THISANDFUTURE override also lends its properties to the instances after it.
            derived = is_thisandfuture(source) and not _same_time(occurrence.start, own.start)
            if not derived:
                return own
        else:
            derived = False
        end = occurrence.end if _has_end(source) else None
        recurrence_id = occurrence.start - thisandfuture_shift(source) if derived else occurrence.start
        return Instance(source, occurrence.start, end, recurrence_id)


def _skip(master: Any, start: datetime) -> timedelta | None:
    """How far ``RecurrenceSet._series_near`` may move ``master``'s DTSTART for a window
    beginning at ``start``; None when not at all (see there)."""
    rules = as_list(prop(master, "RRULE"))
    if len(rules) != 1 or has(master, "EXRULE") or rules[0].get("COUNT"):
        return None
    days = _PERIOD_DAYS.get(str(rules[0].get("FREQ", [""])[0]).upper())
    first = own_instance(master)
    if days is None or first.start is None:
        return None
    period = timedelta(days=days * int(rules[0].get("INTERVAL", [1])[0]))
    length = timedelta(0)
    if first.end is not None:
        length = max(to_utc(first.end, None) - to_utc(first.start, None), timedelta(0))
    room = start - to_utc(first.start, None) - length - 2 * MARGIN - period
    periods = room // period
    return period * periods if periods >= SKIP_PERIODS else None


def _check_intervals(group: list[Any]) -> None:
    """RFC 5545 §3.3.10: INTERVAL is a positive integer. dateutil walks a rule with INTERVAL=0
    forever without yielding (the event loop blocked, memory growing by GBs), so such a rule
    is refused here, where every PUT, query and expand of a recurring set passes."""
    for comp in group:
        for name in ("RRULE", "EXRULE"):
            for rule in as_list(prop(comp, name)):
                if any(not isinstance(n, int) or n < 1 for n in rule.get("INTERVAL", [])):
                    raise InvalidCalendarData(VALID_DATA, f"{name} INTERVAL must be a positive "
                                              "integer (RFC 5545 §3.3.10)")


def expansion_steps(master: Any, end: datetime) -> float:
    """About how many candidates dateutil visits to expand ``master``'s rules up to ``end``."""
    start = time_of(master, "DTSTART")
    if start is None:
        return 0.0
    return rule_steps(as_list(prop(master, "RRULE")), start, end)


def rule_steps(rules: list[Any], start: Time, end: datetime) -> float:
    """``expansion_steps`` of these RRULEs from ``start``."""
    steps = 0.0
    for rule in rules:
        counts = rule.get("COUNT")
        if counts:  # dateutil stops after COUNT instances
            steps += int(counts[0])
            continue
        untils = rule.get("UNTIL")
        stop = min(end, to_utc(untils[0], None)) if untils else end
        interval = max(int(rule.get("INTERVAL", [1])[0]), 1)
        period = _FREQ_SECONDS.get(str(rule.get("FREQ", ["DAILY"])[0]).upper(), 86_400) * interval
        spread = math.prod(len(rule.get(part, [])) or 1 for part in ("BYHOUR", "BYMINUTE", "BYSECOND"))
        steps += max((stop - to_utc(start, None)).total_seconds(), 0.0) / period * spread
    return steps


def _earliest_start(group: list[Any]) -> datetime:
    """No instance of the set starts before this: its DTSTARTs (DUE, for a VTODO override
    without one) and RDATEs, less MARGIN, which also covers floating times read in any zone.
    RANGE=THISANDFUTURE shifts never move an instance before the override's own DTSTART."""
    times: list[Time] = [t for c in group for t in (time_of(c, "DTSTART"), time_of(c, "DUE")) if t is not None]
    for comp in group:
        for rdate in as_list(prop(comp, "RDATE")):
            times += [d.dt[0] if isinstance(d.dt, tuple) else d.dt for d in rdate.dts]
    return min((to_utc(t, None) for t in times), default=HORIZON_START) - MARGIN


def _has_end(comp: Any) -> bool:
    if comp.name == "VEVENT":
        return True
    return comp.name == "VTODO" and (has(comp, "DUE") or has(comp, "DURATION"))


def is_thisandfuture(comp: Any) -> bool:
    rid = as_list(prop(comp, "RECURRENCE-ID"))
    return bool(rid) and str(rid[0].params.get("RANGE", "")).upper() == "THISANDFUTURE"


def thisandfuture_shift(override: Any) -> timedelta:
    """RFC 5545 §3.8.4.4: later instances move by the override's own DTSTART - RECURRENCE-ID."""
    start = value_of(override, "DTSTART")
    if start is None:
        return timedelta(0)
    return to_utc(start, None) - to_utc(value_of(override, "RECURRENCE-ID"), None)


def recurrence_key(value: Time) -> datetime:
    """The key recurring-ical-events identifies an instance by: naive UTC, or naive local time."""
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _same_time(a: Time | None, b: Time | None) -> bool:
    if a is None or b is None:
        return a is b
    return to_utc(a, None) == to_utc(b, None)


def _highest_sequence(comps: list[Any]) -> Any:
    # The library keeps the first of equal SEQUENCE numbers; so must we, to agree on the source.
    best = comps[0]
    for comp in comps[1:]:
        if int(comp.get("SEQUENCE", -1)) > int(best.get("SEQUENCE", -1)):
            best = comp
    return best


def chunks(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Growing slices of [start, end), so that a search can stop at its first hit."""
    step = timedelta(days=366)
    while start < end:
        stop = min(end, start + step)
        yield start, stop
        start, step = stop, step * 2


def overlaps(inst: Instance, start: datetime, end: datetime, floating_tz: tzinfo | None) -> bool:
    """RFC 4791 §9.9 for the instance's component type; ``start``/``end`` are UTC."""
    name = inst.source.name
    if name == "VEVENT":
        return _event_overlaps(inst, start, end, floating_tz)
    if name == "VTODO":
        return _todo_overlaps(inst, start, end, floating_tz)
    if name == "VJOURNAL":
        return _journal_overlaps(inst, start, end, floating_tz)
    if name == "VFREEBUSY":
        return _freebusy_overlaps(inst, start, end, floating_tz)
    return False


def _event_overlaps(inst: Instance, start: datetime, end: datetime, floating_tz: tzinfo | None) -> bool:
    if inst.start is None:
        return False
    s = to_utc(inst.start, floating_tz)
    e = to_utc(inst.end, floating_tz) if inst.end is not None else s
    if e > s:
        return start < e and end > s
    # Zero duration (RFC 4791 §9.9 rows "DURATION = 0" and "no DTEND/DURATION, DATE-TIME");
    # a DTEND equal to DTSTART, which §9.9 forbids, is read the same way.
    return start <= s < end


def _todo_overlaps(inst: Instance, start: datetime, end: datetime, floating_tz: tzinfo | None) -> bool:
    src = inst.source
    if inst.start is not None:
        s = to_utc(inst.start, floating_tz)
        if inst.end is None:
            return start <= s < end
        e = to_utc(inst.end, floating_tz)
        if "DUE" in src:
            return (start < e or start <= s) and (end > s or end >= e)
        return start <= e and (end > s or end >= e)
    if inst.end is not None:
        due = to_utc(inst.end, floating_tz)
        return start < due and end >= due
    return _todo_undated_overlaps(src, start, end)


def _todo_undated_overlaps(src: Any, start: datetime, end: datetime) -> bool:
    completed = value_of(src, "COMPLETED")
    created = value_of(src, "CREATED")
    if completed is not None and created is not None:
        done, made = to_utc(completed, None), to_utc(created, None)
        return (start <= made or start <= done) and (end >= made or end >= done)
    if completed is not None:
        done = to_utc(completed, None)
        return start <= done and end >= done
    if created is not None:
        return end > to_utc(created, None)
    return True


def _journal_overlaps(inst: Instance, start: datetime, end: datetime, floating_tz: tzinfo | None) -> bool:
    if inst.start is None:
        return False
    s = to_utc(inst.start, floating_tz)
    if is_date(inst.start):
        return start < to_utc(add_duration(inst.start, ONE_DAY), floating_tz) and end > s
    return start <= s < end


def _freebusy_overlaps(inst: Instance, start: datetime, end: datetime, floating_tz: tzinfo | None) -> bool:
    if inst.start is not None and inst.end is not None:
        return start <= to_utc(inst.end, floating_tz) and end > to_utc(inst.start, floating_tz)
    return any(start < pe and end > ps for ps, pe, _ in freebusy_periods(inst.source, floating_tz))


def freebusy_periods(comp: Any, floating_tz: tzinfo | None) -> list[tuple[datetime, datetime, str]]:
    """(start, end, FBTYPE) of every FREEBUSY period, in UTC (RFC 5545 §3.8.2.6)."""
    periods = []
    for found in as_list(comp.get("FREEBUSY")):
        fbtype = str(found.params.get("FBTYPE", "BUSY")).upper()
        for item in getattr(found, "dts", None) or [found]:
            begin, finish = item.dt
            if isinstance(finish, timedelta):
                finish = begin + finish
            periods.append((to_utc(begin, floating_tz), to_utc(finish, floating_tz), fbtype))
    return periods


def alarm_triggers(alarm: Any, inst: Instance | None, floating_tz: tzinfo | None) -> list[datetime]:
    """Trigger times of a VALARM (RFC 5545 §3.6.6, §3.8.6.3), repetitions included, in UTC.

    ``inst`` is the instance the alarm belongs to; without one only absolute triggers are known.
    """
    trigger = as_list(alarm.get("TRIGGER"))
    if not trigger:
        return []
    value = trigger[0].dt
    if isinstance(value, timedelta):
        anchor = _alarm_anchor(trigger[0], inst)
        if anchor is None:
            return []
        first = to_utc(add_duration(anchor, value), floating_tz)
    elif isinstance(value, date):
        first = to_utc(value, floating_tz)
    else:
        return []
    interval = value_of(alarm, "DURATION")
    if not isinstance(interval, timedelta) or interval <= timedelta(0):
        return [first]
    repeat = min(int(alarm.get("REPEAT", 0)), _MAX_ALARM_REPEAT)
    return [first + interval * i for i in range(repeat + 1)]


def _alarm_anchor(trigger: Any, inst: Instance | None) -> Time | None:
    if inst is None:
        return None
    if str(trigger.params.get("RELATED", "START")).upper() == "END":
        # RELATED=END refers to DTEND or DUE (RFC 5545 §3.2.14); a start-only component ends at its start.
        return inst.end if inst.end is not None else inst.start
    return inst.start
