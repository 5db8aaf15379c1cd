"""The time zone a report reads "floating" DATE and DATE-TIME values in (RFC 4791 §7.3).

A calendar-query names it in CALDAV:timezone (§9.8), else the calendar's
CALDAV:calendar-timezone property (§5.2.2) does; a free-busy-query has only the property.
Both hold "an iCalendar object with exactly one VTIMEZONE". Without one, or with a UTC
zone, such values are read in UTC, as they always were here (§7.3 leaves that choice to
the server). The zone's TZID is resolved as an object's own are (ical_parse): an IANA
name wins, then the definition, then Windows and "globally unique" spellings.
"""

from __future__ import annotations

import functools
import hashlib
import zoneinfo
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from typing import Any

from safehold.core.formats.ical_parse import (
    VALID_DATA, InvalidCalendarData, _resolve_tzid, as_list, parse, walkable_rule,
)

# The index envelope (ical.CalendarInfo) widens floating values for the zones of UTC-12 to
# UTC+14 only, and takes FREEBUSY periods as UTC. A report in a zone looks the index up this
# much wider on each side, and lets the envelope alone decide a match only this far inside
# the range: on top of that widening, enough for any offset a VTIMEZONE can declare (up to
# ±23:59, RFC 5545 §3.3.14); for FREEBUSY periods, which §3.8.2.6 wants in UTC anyway,
# enough for every zone in use.
ZONE_MARGIN = timedelta(hours=14)
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu",
                        "Etc/Zulu", "GMT", "Etc/GMT", "GMT0", "Etc/GMT0", "GMT+0", "Etc/GMT+0",
                        "GMT-0", "Etc/GMT-0", "Greenwich", "Etc/Greenwich"})
@dataclass(frozen=True)
class ReportZone:
    tz: tzinfo
    key: str  # names the zone in cache keys: its IANA name, or a digest of its definition


def report_zone(text: str) -> ReportZone | None:
    """The zone an iCalendar object with exactly one VTIMEZONE defines; None for UTC, which
    changes nothing. Raises InvalidCalendarData (valid-calendar-data) for anything else."""
    return _report_zone(text)


# Clients send the same definition with every query, and a calendar's property is read at
# every query of it; keyed by the text, so two definitions share a zone only when equal.
@functools.lru_cache(maxsize=256)
def _report_zone(text: str) -> ReportZone | None:
    try:
        cal = parse(text.encode("utf-8"))
    except InvalidCalendarData as exc:
        raise InvalidCalendarData(VALID_DATA, str(exc)) from exc
    zones = [c for c in cal.subcomponents if c.name == "VTIMEZONE"]
    if len(zones) != 1:
        raise InvalidCalendarData(VALID_DATA, f"expected exactly one VTIMEZONE, found {len(zones)}")
    tzid = zones[0].get("TZID")
    if not tzid:
        raise InvalidCalendarData(VALID_DATA, "the VTIMEZONE has no TZID")
    _check_rules(zones[0])
    tz = _resolve_tzid(str(tzid), {str(tzid): zones[0]})
    if tz is None:
        raise InvalidCalendarData(VALID_DATA, f"the VTIMEZONE {str(tzid)!r} cannot be read: it needs "
                                  "STANDARD or DAYLIGHT rules with DTSTART, TZOFFSETFROM and TZOFFSETTO")
    if isinstance(tz, zoneinfo.ZoneInfo):
        return None if tz.key in _UTC_NAMES else ReportZone(tz, tz.key)
    if _all_offsets_zero(zones[0]):
        return None
    return ReportZone(tz, "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32])


def _check_rules(vtimezone: Any) -> None:
    for observance in vtimezone.subcomponents:
        for rule in as_list(observance.get("RRULE")):
            if not walkable_rule(rule):
                raise InvalidCalendarData(VALID_DATA, f"the VTIMEZONE rule {rule.to_ical().decode()!r} "
                                          "must recur yearly or monthly with a positive INTERVAL")


def _all_offsets_zero(vtimezone: Any) -> bool:
    offsets = [getattr(rule.get(name), "td", None) for rule in vtimezone.subcomponents
               for name in ("TZOFFSETFROM", "TZOFFSETTO")]
    return all(o == timedelta(0) for o in offsets)
