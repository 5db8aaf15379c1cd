"""The answer to a CALDAV:free-busy-query REPORT (RFC 4791 §7.10)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any

from safehold.core.formats.ical_filter import TimeRange, bounds
from safehold.core.formats.ical_instances import (
    InstanceLimit,
    RecurrenceSet,
    TooManyInstances,
    by_uid,
    freebusy_periods,
    is_recurring_set,
    overlaps,
    own_instance,
    to_utc,
)
from safehold.core.formats.ical_parse import InvalidCalendarData, main_components, parse

Period = tuple[datetime, datetime]

# RFC 4791 §7.10, table: how a VEVENT's STATUS maps to FBTYPE (absent: BUSY).
_EVENT_FBTYPE = {"TENTATIVE": "BUSY-TENTATIVE", "CANCELLED": None}
_FBTYPE_ORDER = ("BUSY", "BUSY-UNAVAILABLE", "BUSY-TENTATIVE")
_TOKEN = re.compile(r"[A-Z0-9-]{1,40}")
# Recurrence instances one answer may be computed from, all objects together. Each costs some
# 24 µs of CPU with the GIL held: 50 open-ended daily events over 1800-2200 (7.3 million
# instances) took 176 s and 1.4 GB. A year of 50 daily events is 18,250.
MAX_BUSY_INSTANCES = 20_000


def freebusy(
    objects: Iterable[bytes],
    start: datetime,
    end: datetime,
    *,
    floating_tz: tzinfo | None = None,
    now: datetime | None = None,
) -> bytes:
    """A VCALENDAR with one VFREEBUSY listing the busy time in [start, end), in UTC.

    Busy time comes from VEVENT instances (TRANSP:TRANSPARENT and STATUS:CANCELLED excluded,
    STATUS:TENTATIVE as BUSY-TENTATIVE) and from the non-FREE periods of VFREEBUSY components;
    periods are clipped to the range and merged per FBTYPE where they overlap or touch.
    Objects that cannot be parsed are skipped: they hold no time we could report.
    ``now`` is the DTSTAMP, the current time when None.

    Raises TooManyInstances when the recurring events have more than MAX_BUSY_INSTANCES
    instances in the range, or one is too dense to expand: an answer without them would
    show busy time as free, so there is none (RFC 4791 §7.10,
    DAV:number-of-matches-within-limits).
    """
    range_start, range_end = bounds(TimeRange(start, end))
    busy: dict[str, list[Period]] = {}
    budget = [MAX_BUSY_INSTANCES]
    for data in objects:
        try:
            cal = parse(data, slim=True)
            found = list(_busy_periods(cal, range_start, range_end, floating_tz, budget))
        except InstanceLimit as exc:
            raise TooManyInstances(exc.precondition, "the recurring events have more than "
                                   f"{MAX_BUSY_INSTANCES} instances in this range, the most one "
                                   "free-busy answer is computed from: ask for a shorter "
                                   "time-range") from exc
        except TooManyInstances as exc:
            raise TooManyInstances(exc.precondition, f"{exc}, so its busy time cannot be "
                                   "computed") from exc
        except InvalidCalendarData:
            continue
        for fbtype, begin, finish in found:
            begin, finish = max(begin, range_start), min(finish, range_end)
            if begin < finish:
                busy.setdefault(fbtype, []).append((begin, finish))
    stamp = (now or datetime.now(UTC)).astimezone(UTC)
    return _render(range_start, range_end, stamp, {t: merge(p) for t, p in busy.items()})


def _busy_periods(
    cal: Any, start: datetime, end: datetime, floating_tz: tzinfo | None, budget: list[int]
) -> Iterator[tuple[str, datetime, datetime]]:
    """``budget`` holds the recurrence instances still allowed; what is expanded is taken off it."""
    components = main_components(cal)
    events = [c for c in components if c.name == "VEVENT"]
    for group in by_uid(events):
        if is_recurring_set(group):
            candidates = RecurrenceSet(group, floating_tz).between(start, end, limit=budget[0])
            budget[0] -= len(candidates)
        else:
            candidates = [own_instance(c) for c in group]
        for inst in candidates:
            fbtype = _event_fbtype(inst.source)
            if fbtype is None or inst.start is None or not overlaps(inst, start, end, floating_tz):
                continue
            finish = inst.end if inst.end is not None else inst.start
            yield fbtype, to_utc(inst.start, floating_tz), to_utc(finish, floating_tz)
    for comp in components:
        if comp.name == "VFREEBUSY":
            for begin, finish, fbtype in freebusy_periods(comp, floating_tz):
                if fbtype != "FREE":
                    # An odd X- FBTYPE is passed on only if it is a plain token; else it is busy.
                    yield (fbtype if _TOKEN.fullmatch(fbtype) else "BUSY"), begin, finish


def _event_fbtype(event: Any) -> str | None:
    if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
        return None
    return _EVENT_FBTYPE.get(str(event.get("STATUS", "CONFIRMED")).upper(), "BUSY")


def merge(periods: list[Period]) -> list[Period]:
    """Sorted periods with overlapping or touching ones joined."""
    merged: list[Period] = []
    for begin, finish in sorted(periods):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(finish, merged[-1][1]))
        else:
            merged.append((begin, finish))
    return merged


def _render(start: datetime, end: datetime, stamp: datetime, busy: dict[str, list[Period]]) -> bytes:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//safehold//free-busy//EN",
        "BEGIN:VFREEBUSY",
        f"DTSTAMP:{_stamp(stamp)}",
        f"DTSTART:{_stamp(start)}",
        f"DTEND:{_stamp(end)}",
    ]
    order = {t: i for i, t in enumerate(_FBTYPE_ORDER)}
    entries = sorted(
        ((begin, order.get(fbtype, len(order)), fbtype, finish) for fbtype, periods in busy.items()
         for begin, finish in periods)
    )
    # One period per line keeps every line under the 75-octet fold limit (RFC 5545 §3.1).
    lines += [f"FREEBUSY;FBTYPE={t}:{_stamp(b)}/{_stamp(f)}" for b, _, t, f in entries]
    lines += ["END:VFREEBUSY", "END:VCALENDAR"]
    return "".join(line + "\r\n" for line in lines).encode("ascii")


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
