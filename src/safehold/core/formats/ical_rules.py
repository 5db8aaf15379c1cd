"""Recurrence rules the server can afford to expand (RFC 5545 §3.3.10).

dateutil, which expands RRULE and EXRULE here and in recurring_ical_events, looks for a
rule's next instance day by day (hour by hour, ...) until year 9999 when none comes: a
rule no date can ever match (``BYMONTH=13``; February 30th; ``FREQ=DAILY;INTERVAL=7;
BYDAY=TU`` from a Monday; ``FREQ=HOURLY;INTERVAL=2;BYHOUR=3`` from an even hour) kept a
PUT busy for 7-12 s of CPU, on the event loop, holding up every other client, and every
calendar-query that met it again. Such rules are refused at PUT (valid-calendar-data):
a value outside the part's range, or a rule that matches nothing in a whole 400-year
cycle of the Gregorian calendar (146,097 days: a whole number of weeks, months and
years, so every pattern of a rule repeats within it, whatever its INTERVAL). Before that
search, what would send it (or expansion) astray is refused outright: an INTERVAL below 1
(dateutil never ends), a negative COUNT, a BYDAY ordinal outside ±1..53 or past the 5th
in a month (dateutil's IndexError), and a BYSETPOS past the instances of a DAILY or
shorter period (dateutil tries every period: minutes for ``FREQ=SECONDLY;BYSETPOS=2``).
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Any

from dateutil.rrule import rrulestr
from icalendar import vRecur

# (lowest, highest, negatives allowed) of each numeric part (RFC 5545 §3.3.10). BYSECOND=60,
# a leap second, is in the RFC's range but no date library can expand it (dateutil raised
# ValueError: a 500).
_RANGES = {"BYSECOND": (0, 59, False), "BYMINUTE": (0, 59, False), "BYHOUR": (0, 23, False),
           "BYMONTHDAY": (1, 31, True), "BYYEARDAY": (1, 366, True),
           "BYWEEKNO": (1, 53, True), "BYMONTH": (1, 12, False), "BYSETPOS": (1, 366, True)}
_CYCLE_YEARS = 400
_CYCLE_DAYS = 146_097
# The parts that choose days (the rest choose times of a day, all reachable in range).
_DAY_PARTS = ("BYMONTH", "BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY", "WKST")
# A FREQ's period in days, at most (for an INTERVAL that spans more than a cycle).
_UNIT_DAYS = {"YEARLY": 366.0, "MONTHLY": 31.0, "WEEKLY": 7.0, "DAILY": 1.0, "HOURLY": 1 / 24,
              "MINUTELY": 1 / 1440, "SECONDLY": 1 / 86400}
_LAST_YEAR = 9999  # datetime.MAXYEAR: where dateutil gives up


def problem(rule: Any, start: date | datetime) -> str | None:
    """Why ``rule`` (an icalendar vRecur) starting at ``start`` cannot be accepted, or
    None. Rules without BYxxx parts always match (every FREQ step is an instance)."""
    # First: dateutil searches a rule with INTERVAL=0 for ever (the event loop frozen), and
    # one with a negative COUNT for millions of steps.
    for value in rule.get("INTERVAL", []):
        if not isinstance(value, int) or value < 1:
            return f"INTERVAL={value} is not a positive integer"
    for value in rule.get("COUNT", []):
        if not isinstance(value, int) or value < 0:
            return f"COUNT={value} is negative"
    for part, (low, high, signed) in _RANGES.items():
        for value in rule.get(part, []):
            if not isinstance(value, int) or not (low <= abs(value) <= high if signed and value
                                                  else low <= value <= high):
                return f"{part}={value} is outside {'±' if signed else ''}{low}..{high}"
    ordinals = [int(found.group(1)) for day in rule.get("BYDAY", [])
                if (found := _ORDINAL.fullmatch(str(day))) is not None]
    if any(not 1 <= abs(n) <= 53 for n in ordinals):
        return "a BYDAY ordinal is outside ±1..53"
    if not any(part.startswith("BY") and part != "WKST" for part in rule):
        return None
    freq = str(rule.get("FREQ", [""])[0]).upper()
    in_month = freq == "MONTHLY" or freq == "YEARLY" and "BYMONTH" in rule
    try:
        # No month has a 6th weekday (dateutil fails on some: IndexError, a 500), and a
        # BYSETPOS past the instances one period can hold selects none.
        if in_month and ordinals and len(ordinals) == len(rule["BYDAY"]) and all(abs(n) > 5 for n in ordinals) \
                or _beyond_setpos(rule, freq) or _never(rule, start, freq):
            return NEVER
    except IndexError:  # dateutil's, on a rule it cannot expand
        return "it cannot be expanded"
    return None


NEVER = ("it never occurs: no date matches its BYxxx parts (and INTERVAL) in a whole 400-year "
         "cycle of the calendar")
_ORDINAL = re.compile(r"([+-]?[0-9]+)[A-Za-z]{2}")
# The parts that add instances within one period of each FREQ (RFC 5545 §3.3.10's table:
# "Expand"); in a DAILY or shorter period they are all the instances there are.
_EXPANDING = {"SECONDLY": (), "MINUTELY": ("BYSECOND",), "HOURLY": ("BYMINUTE", "BYSECOND"),
              "DAILY": ("BYHOUR", "BYMINUTE", "BYSECOND")}


def _beyond_setpos(rule: Any, freq: str) -> bool:
    """Whether every BYSETPOS asks for more instances than a DAILY or shorter period has
    (dateutil tries every period until year 9999: ``FREQ=SECONDLY;BYSETPOS=2``)."""
    if "BYSETPOS" not in rule or freq not in _EXPANDING:
        return False
    most = math.prod(len(set(rule.get(part, []))) or 1 for part in _EXPANDING[freq])
    return all(abs(int(n)) > most for n in rule["BYSETPOS"])


def _never(rule: Any, start: date | datetime, freq: str) -> bool:
    """Whether the rule, without COUNT and UNTIL, has no instance at all.

    First the days alone: every instance falls on a day that passes all of the rule's
    day filters, whatever its FREQ, so if no day of a cycle passes them there is none.
    Looked for yearly (a year's days at a time, some 50 ms for a cycle where a daily
    search takes 0.5 s and a secondly one over 1 s); without an ordinal BYDAY ("1MO")
    or BYSETPOS, whose meaning depends on FREQ. With INTERVAL 1 every period is a
    candidate, so a day found is an instance found. Otherwise the rule itself is
    searched, unless its INTERVAL spans more than a cycle (expansion then takes few
    steps of its own)."""
    interval = int(rule.get("INTERVAL", [1])[0])
    if all(str(d).isalpha() for d in rule.get("BYDAY", [])):
        # BYSETPOS only drops instances: if no day passes, none is left with it either.
        days = vRecur({"FREQ": ["YEARLY"], **{p: rule[p] for p in _DAY_PARTS if p in rule}})
        if _none_from(days, start):
            return True
        # In a DAILY or shorter period every instance is on one day, and a BYSETPOS that
        # is not beyond the period's instances (_beyond_setpos) selects one of them.
        if interval == 1 and ("BYSETPOS" not in rule or freq in _EXPANDING):
            return False
    if interval * _UNIT_DAYS.get(freq, 1) > _CYCLE_DAYS:
        return False
    return _none_from(rule, start)


def _none_from(rule: Any, start: date | datetime) -> bool:
    """Whether dateutil finds no instance of ``rule`` (COUNT and UNTIL left out) from
    ``start`` moved a whole number of cycles late enough that its search ends at year
    9999 after 400 to 800 years, which therefore cover a whole cycle."""
    text = ";".join(p for p in rule.to_ical().decode().split(";")
                    if not p.upper().startswith(("COUNT=", "UNTIL=")))
    first = start if isinstance(start, datetime) else datetime(start.year, start.month, start.day)
    cycles = (_LAST_YEAR - _CYCLE_YEARS - first.year) // _CYCLE_YEARS
    probe = first.replace(year=first.year + cycles * _CYCLE_YEARS, tzinfo=None)
    try:
        return next(iter(rrulestr(text, dtstart=probe)), None) is None
    except (ValueError, TypeError, OverflowError):
        return False  # unreadable: expansion reports it as it did
