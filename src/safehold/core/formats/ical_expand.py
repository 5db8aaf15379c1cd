"""calendar-data post-processing for REPORT responses: CALDAV:expand (RFC 4791 §9.6.5) and
CALDAV:limit-recurrence-set (§9.6.6). The results are new bytes for one response; what is stored
is never touched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, tzinfo
from typing import Any

from icalendar import vDDDTypes

from safehold.core.formats.ical_filter import TimeRange, bounds
from safehold.core.formats.ical_instances import (
    MIN_UTC,
    Instance,
    TooManyInstances,
    add_duration,
    RecurrenceSet,
    by_uid,
    is_recurring_set,
    is_thisandfuture,
    overlaps,
    own_instance,
    thisandfuture_shift,
    to_utc,
    value_of,
)
from safehold.core.formats.ical_parse import VALID_DATA, main_components, new_calendar, parse

_RECURRENCE_PROPERTIES = ("RRULE", "RDATE", "EXDATE", "EXRULE")
# Instances one object may be expanded into per request. A component per instance costs
# ~0.3-0.6 ms: an open-ended daily event expanded from 1800 to 2200 (64,000 instances)
# took 18-41 s of CPU and an 11 MB answer. Beyond this the object is sent as stored
# (caldav/reports.py), as one that cannot be expanded is.
MAX_EXPANDED = 5_000
_EXPANDABLE = ("VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY")
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\n|\r|$)")


def expand(data: bytes, start: datetime, end: datetime, floating_tz: tzinfo | None = None) -> bytes:
    """One component per instance overlapping [start, end) (RFC 4791 §9.6.5).

    Instances of recurring sets carry a RECURRENCE-ID and no RRULE/RDATE/EXDATE/EXRULE; every
    date-time with a time zone is converted to UTC (DATE and floating values stay as they are,
    having no zone to convert from) and VTIMEZONE is dropped. ``floating_tz`` is only used to
    decide which floating and all-day instances overlap the range.
    """
    cal = parse(data)
    range_start, range_end = bounds(TimeRange(start, end))
    out = new_calendar(cal)
    found = list(_overlapping(cal, range_start, range_end, floating_tz))
    if len(found) > MAX_EXPANDED:
        raise TooManyInstances(VALID_DATA, f"{len(found)} instances in the range; at most "
                               f"{MAX_EXPANDED} are expanded")
    found.sort(key=lambda item: MIN_UTC if item[0].start is None else to_utc(item[0].start, floating_tz))
    for inst, recurring in found:
        out.add_component(_instance_component(inst, recurring))
    result: bytes = out.to_ical()
    return result


def _overlapping(
    cal: Any, start: datetime, end: datetime, floating_tz: tzinfo | None
) -> Iterator[tuple[Instance, bool]]:
    components = [c for c in main_components(cal) if c.name in _EXPANDABLE]
    for group in by_uid(components):
        recurring = is_recurring_set(group)
        if recurring:
            candidates = RecurrenceSet(group, floating_tz).between(start, end)
        else:
            candidates = [own_instance(c) for c in group]
        for inst in candidates:
            if overlaps(inst, start, end, floating_tz):
                yield inst, recurring


def _instance_component(inst: Instance, recurring: bool) -> Any:
    source = inst.source
    comp = source.copy()  # shallow: properties are replaced below, never modified in place
    for name in _RECURRENCE_PROPERTIES:
        comp.pop(name, None)
    for name in ("DTSTART", "DTEND", "DUE", "RECURRENCE-ID"):
        value = value_of(comp, name)
        if value is not None:
            comp[name] = vDDDTypes(_utc_or_floating(value))
    if inst.start is not None and "DTSTART" in source:
        comp["DTSTART"] = vDDDTypes(_utc_or_floating(inst.start))
    end_name = {"VEVENT": "DTEND", "VTODO": "DUE"}.get(source.name)
    if end_name is not None and end_name in source and inst.end is not None:
        comp[end_name] = vDDDTypes(_utc_or_floating(inst.end))
    if recurring and inst.recurrence_id is not None:
        # RANGE is dropped with the old value: an expanded instance stands for itself only.
        comp["RECURRENCE-ID"] = vDDDTypes(_utc_or_floating(inst.recurrence_id))
    for sub in source.subcomponents:
        comp.add_component(sub)
    return comp


def _utc_or_floating(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return to_utc(value, None)
    return value


def limit_recurrence_set(
    data: bytes, start: datetime, end: datetime, floating_tz: tzinfo | None = None
) -> bytes:
    """The object without the overridden components that do not impact [start, end) (§9.6.6).

    An override impacts the range when its current or its original time overlaps it; a
    RANGE=THISANDFUTURE override also when it changes instances at or after the range start.
    Everything kept is returned byte for byte as stored; ``data`` itself when nothing is dropped.
    """
    cal = parse(data)
    range_start, range_end = bounds(TimeRange(start, end))
    masters = {str(c.get("UID")): c for c in main_components(cal) if "RECURRENCE-ID" not in c}
    keep = [
        _impacts(c, masters.get(str(c.get("UID"))), range_start, range_end, floating_tz)
        for c in cal.subcomponents
    ]
    if all(keep):
        return data
    kept = _without_blocks(data, keep)
    if kept is None:
        out = new_calendar(cal)
        for comp, wanted in zip(cal.subcomponents, keep, strict=True):
            if wanted:
                out.add_component(comp)
        kept = out.to_ical()
    return kept


def _impacts(comp: Any, master: Any, start: datetime, end: datetime, floating_tz: tzinfo | None) -> bool:
    if "RECURRENCE-ID" not in comp or comp.name not in _EXPANDABLE:
        return True
    current = own_instance(comp)
    if overlaps(current, start, end, floating_tz):
        return True
    recurrence_id = value_of(comp, "RECURRENCE-ID")
    if is_thisandfuture(comp):
        first = to_utc(recurrence_id, floating_tz)
        return min(first, first + thisandfuture_shift(comp)) < end
    if master is None:
        return False
    original = own_instance(master)
    length = None
    if original.start is not None and original.end is not None:
        length = to_utc(original.end, floating_tz) - to_utc(original.start, floating_tz)
    original_end = add_duration(recurrence_id, length) if length is not None else None
    return overlaps(Instance(master, recurrence_id, original_end, recurrence_id), start, end, floating_tz)


def _without_blocks(data: bytes, keep: list[bool]) -> bytes | None:
    """``data`` minus the top-level components whose ``keep`` entry is False, byte for byte;
    None if the text's components cannot be lined up with the parsed ones."""
    lines = [m.group() for m in _LINE.finditer(data) if m.group()]
    out: list[bytes] = []
    depth, index, dropping = 0, -1, False
    for line in lines:
        name = line.rstrip(b"\r\n").upper().removeprefix(b"\xef\xbb\xbf")
        if line[:1] not in (b" ", b"\t"):
            if name.startswith(b"BEGIN:"):
                depth += 1
                if depth == 2:
                    index += 1
                    dropping = index < len(keep) and not keep[index]
            elif name.startswith(b"END:"):
                depth -= 1
                if depth == 1 and dropping:
                    dropping = False
                    continue
        if not dropping:
            out.append(line)
    if index + 1 != len(keep):
        return None
    return b"".join(out)
