"""The instances of a recurring event as UTC spans, computed once when it is stored, so
that a plain time-range query (RFC 4791 §9.9, "VEVENTs overlapping this range") decides
it from the index without parsing (DESIGN: calendar index rows with "expanded instances
over a bounded horizon").

The spans come from the same expansion :func:`ical_filter.matches` runs
(:class:`RecurrenceSet`), and :func:`overlap` is ``ical_instances._event_overlaps`` on
them, so the answer is the parser's. Anything that could make the two differ is left to
the parser (None): floating or DATE values (read in a zone the query may choose),
RDATE periods (the library tests those against the master's length), rules too dense
or too long to expand here, times near the expansion horizon.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from safehold.core.formats.ical_instances import (
    HORIZON_END,
    HORIZON_START,
    RecurrenceSet,
    TooManyInstances,
    chunks,
    expansion_steps,
)
from safehold.core.formats.ical_parse import InvalidCalendarData, as_list, prop

Spans = tuple[tuple[int, int], ...]  # (start, end) in UTC epoch seconds; end == start: no length

# At most this many instances are kept per object (16 bytes each in the index row's text,
# about 20): a weekly meeting for ten years is 520. Longer series are parsed when queried.
MAX_SPANS = 1000
NEAR_HORIZON = timedelta(days=400)


def event_spans(components: list[Any], recurrence: RecurrenceSet, start: datetime | None,
                end: datetime | None) -> Spans | None:
    """The spans of the recurring VEVENT set ``components`` (expanded by ``recurrence``,
    read with floating times in UTC as queries read them) whose index envelope is
    [start, end], or None."""
    if components[0].name != "VEVENT" or start is None or end is None:
        return None
    if start < HORIZON_START + NEAR_HORIZON or end > HORIZON_END - NEAR_HORIZON:
        return None
    for comp in components:
        for rdate in as_list(prop(comp, "RDATE")):
            if any(isinstance(d.dt, tuple) for d in rdate.dts):
                return None
    try:
        if recurrence.master is not None and expansion_steps(recurrence.master, end) > MAX_SPANS:
            return None
        found: set[tuple[int, int]] = set()
        for chunk_start, chunk_end in chunks(max(start, recurrence.floor, HORIZON_START),
                                             min(end, HORIZON_END)):
            for inst in recurrence.between(chunk_start, chunk_end):
                s = _seconds(inst.start)
                e = s if inst.end is None else _seconds(inst.end)
                if s is None or e is None:
                    return None
                found.add((s, e))
                if len(found) > MAX_SPANS:
                    return None
    except (TooManyInstances, InvalidCalendarData):
        return None
    return tuple(sorted(found))


def _seconds(value: Any) -> int | None:
    """An aware date-time as whole epoch seconds; None for DATE, floating or sub-second."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        return None
    stamp = value.timestamp()
    return int(stamp) if stamp == int(stamp) else None


def overlap(spans: Spans, start: float, end: float) -> bool:
    """Whether an instance overlaps [start, end) by RFC 4791 §9.9's VEVENT rows (open ends
    as -inf/+inf), exactly as ``ical_instances._event_overlaps`` decides it."""
    for s, e in spans:
        if s >= end:
            break  # sorted by start: no later one can overlap
        if (start < e) if e > s else (start <= s):
            return True
    return False
