"""Recurring events: the instances :func:`matches` and :func:`expand` find must be the ones
recurring-ical-events finds on the same data, across DST transitions, time zones defined in the
object, overrides, EXDATE/RDATE, all-day and floating series. For VEVENT the library's span test
is the RFC 4791 §9.9 condition, so the two must agree on every window."""

from __future__ import annotations

import contextlib
import functools
import signal
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import icalendar
import pytest
import recurring_ical_events
from hypothesis import given, settings
from hypothesis import strategies as st

from safehold.core.formats.ical import (
    CompFilter,
    InvalidCalendarData,
    TimeRange,
    expand,
    inspect_calendar,
    matches,
)
from safehold.core.formats.ical_spans import overlap
from tests.unit.test_ical import CORPUS, at, calendar, component

SOUTHERN_ZONE = [  # a made-up zone with southern-hemisphere DST, known only from this object
    "BEGIN:VTIMEZONE", "TZID:Recurrence Test Zone (South)",
    "BEGIN:STANDARD", "DTSTART:19700405T030000", "RRULE:FREQ=YEARLY;BYMONTH=4;BYDAY=1SU",
    "TZOFFSETFROM:+1100", "TZOFFSETTO:+1000", "END:STANDARD",
    "BEGIN:DAYLIGHT", "DTSTART:19701004T020000", "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=1SU",
    "TZOFFSETFROM:+1000", "TZOFFSETTO:+1100", "END:DAYLIGHT",
    "END:VTIMEZONE",
]

GENERATED = {
    "weekly-berlin-endless-with-overrides": calendar(
        *component("VEVENT", "DTSTART;TZID=Europe/Berlin:20240305T180000",
                   "DTEND;TZID=Europe/Berlin:20240305T193000", "RRULE:FREQ=WEEKLY;BYDAY=TU,TH",
                   "EXDATE;TZID=Europe/Berlin:20240328T180000,20241029T180000"),
        *component("VEVENT", "RECURRENCE-ID;TZID=Europe/Berlin:20240402T180000",
                   "DTSTART;TZID=Europe/Berlin:20240401T070000", "DTEND;TZID=Europe/Berlin:20240401T080000"),
        *component("VEVENT", "RECURRENCE-ID;TZID=Europe/Berlin:20241024T180000",
                   "DTSTART;TZID=America/New_York:20241027T180000",
                   "DTEND;TZID=America/New_York:20241027T200000")),
    "daily-custom-southern-zone": calendar(
        *SOUTHERN_ZONE,
        *component("VEVENT", 'DTSTART;TZID="Recurrence Test Zone (South)":20240320T083000',
                   'DTEND;TZID="Recurrence Test Zone (South)":20240320T093000',
                   "RRULE:FREQ=DAILY;INTERVAL=3;COUNT=120")),
    "daily-new-york-nonexistent-hour": calendar(
        *component("VEVENT", "DTSTART;TZID=America/New_York:20240305T023000", "DURATION:PT1H",
                   "RRULE:FREQ=DAILY;COUNT=20")),
    "floating-daily-with-exdate": calendar(
        *component("VEVENT", "DTSTART:20240601T230000", "DTEND:20240602T003000",
                   "RRULE:FREQ=DAILY;UNTIL=20240630T230000", "EXDATE:20240610T230000")),
    "all-day-weekly-multi-day": calendar(
        *component("VEVENT", "DTSTART;VALUE=DATE:20240103", "DTEND;VALUE=DATE:20240105",
                   "RRULE:FREQ=WEEKLY;COUNT=12")),
    "hourly-utc-with-rdate": calendar(
        *component("VEVENT", "DTSTART:20240101T000000Z", "DURATION:PT50M",
                   "RRULE:FREQ=HOURLY;INTERVAL=7;COUNT=150", "RDATE:20231231T120000Z",
                   "EXDATE:20240101T070000Z")),
}

FROM_CORPUS = [
    "recurring-overrides-exdate-berlin.ics",
    "dst-daily-new-york.ics",
    "recurring-thisandfuture.ics",
    "rdate-periods.ics",
    "allday-yearly-birthday.ics",
    "orphan-override.ics",
]

SERIES = {**{n: (CORPUS / "valid" / n).read_bytes() for n in FROM_CORPUS}, **GENERATED}


@functools.cache
def reference(name: str) -> Any:
    return recurring_ical_events.of(icalendar.Calendar.from_ical(SERIES[name]))


def span(name: str) -> tuple[datetime, datetime]:
    """Where to look: the series' indexed bounds, a day around; 400 days of endless ones."""
    info = inspect_calendar(SERIES[name])
    assert info.start is not None
    start = max(info.start, at("20241101T000000Z")) if info.end is None else info.start
    end = info.end or start + timedelta(days=400)
    return start - timedelta(days=1), end + timedelta(days=1)


def utc(value: date | datetime) -> date | datetime:
    if not isinstance(value, datetime):
        return value
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def library_starts(name: str, start: datetime, end: datetime) -> set[date | datetime]:
    """The library's instances in the window, plus those it leaves out although their
    own DTSTART..DTEND overlaps it (RFC 4791 §9.9): recurring-ical-events 3.8 tests an
    RDATE;VALUE=PERIOD instance against the master's duration, not the period's end
    (rdate-periods.ics: 16:00–20:00 is missing from a window starting at 18:15)."""
    found = {utc(c["DTSTART"].dt) for c in reference(name).between(start, end)}
    for c in reference(name).between(start - timedelta(days=2), end):
        begins, ends = utc(c["DTSTART"].dt), utc(c["DTEND"].dt) if "DTEND" in c else None
        if isinstance(begins, datetime) and isinstance(ends, datetime) \
                and begins < ends and begins < end and ends > start:
            found.add(begins)
    return found


def expanded_starts(name: str, start: datetime, end: datetime) -> set[date | datetime]:
    out = icalendar.Calendar.from_ical(expand(SERIES[name], start, end))
    return {utc(c["DTSTART"].dt) for c in out.subcomponents}


def in_range(name: str, start: datetime, end: datetime) -> bool:
    flt = CompFilter("VCALENDAR", comp_filters=(CompFilter("VEVENT", time_range=TimeRange(start, end)),))
    return matches(SERIES[name], flt)


def windows(name: str) -> Iterator[tuple[datetime, datetime]]:
    """Windows of several lengths sliding over the series at an odd step."""
    first, last = span(name)
    step = max((last - first) / 40, timedelta(hours=1))
    for length in (timedelta(minutes=30), timedelta(hours=7), timedelta(days=1), timedelta(days=9)):
        cursor = first
        while cursor < last:
            yield cursor, cursor + length
            cursor += step + timedelta(minutes=37)


@pytest.mark.parametrize("name", sorted(SERIES))
def test_matches_agrees_with_the_library_on_sliding_windows(name: str) -> None:
    checked = hits = 0
    for start, end in windows(name):
        expected = bool(library_starts(name, start, end))
        assert in_range(name, start, end) is expected, (start, end)
        checked, hits = checked + 1, hits + expected
    assert checked > 100 and 0 < hits < checked  # the windows do test both outcomes


@pytest.mark.parametrize("name", sorted(SERIES))
def test_expand_finds_the_library_instances(name: str) -> None:
    first, last = span(name)
    middle = first + (last - first) / 2
    for start, end in [(first, last), (first, middle), (middle, last), (middle, middle + timedelta(days=3))]:
        assert expanded_starts(name, start, end) == library_starts(name, start, end), (start, end)


@pytest.mark.parametrize("name", sorted(set(SERIES) - {"recurring-thisandfuture.ics"}))
def test_expand_recurrence_ids_are_the_library_ones(name: str) -> None:
    # Without RANGE=THISANDFUTURE the library reports each instance's RECURRENCE-ID too.
    first, last = span(name)

    def ids(components: list[Any]) -> set[tuple[date | datetime, date | datetime]]:
        return {(utc(c["RECURRENCE-ID"].dt), utc(c["DTSTART"].dt)) for c in components}

    ours = ids(icalendar.Calendar.from_ical(expand(SERIES[name], first, last)).subcomponents)
    assert ours == ids(reference(name).between(first, last))


def test_thisandfuture_recurrence_ids_name_the_original_slots() -> None:
    name = "recurring-thisandfuture.ics"
    out = icalendar.Calendar.from_ical(expand(SERIES[name], *span(name)))
    shifted = {utc(c["RECURRENCE-ID"].dt): utc(c["DTSTART"].dt) for c in out.subcomponents}
    assert shifted[at("20240618T080000Z")] == at("20240618T100000Z")
    assert len(shifted) == 10


@pytest.mark.parametrize("name", sorted(SERIES))
@settings(max_examples=30, deadline=None, database=None)
@given(position=st.floats(min_value=0, max_value=1), minutes=st.integers(min_value=1, max_value=60 * 24 * 20))
def test_random_windows_agree_with_the_library(name: str, position: float, minutes: int) -> None:
    first, last = span(name)
    start = (first + (last - first) * position).replace(microsecond=0)
    end = start + timedelta(minutes=minutes)
    expected = library_starts(name, start, end)
    assert in_range(name, start, end) is bool(expected)
    assert expanded_starts(name, start, end) == expected


# -- the index's expanded instances (core/formats/ical_spans.py) ------------------------
# A query decides a recurring event from the spans stored at PUT instead of parsing it, so
# the spans must give the parser's answer (and the library's) on every window.
INDEXED = [name for name in sorted(SERIES) if inspect_calendar(SERIES[name]).spans is not None]


def spans_say(name: str, start: datetime, end: datetime) -> bool:
    spans = inspect_calendar(SERIES[name]).spans
    assert spans is not None
    return overlap(spans, start.timestamp(), end.timestamp())


def test_series_with_zone_bound_times_are_indexed_and_the_rest_left_to_the_parser() -> None:
    assert len(INDEXED) >= 6
    # Floating and DATE values depend on the zone a query reads them in; RDATE periods on
    # the library's reading of them; endless rules have no complete list of instances.
    for name in ("all-day-weekly-multi-day", "allday-yearly-birthday.ics", "floating-daily-with-exdate",
                 "rdate-periods.ics", "weekly-berlin-endless-with-overrides"):
        assert name not in INDEXED


@pytest.mark.parametrize("name", INDEXED)
def test_spans_agree_with_the_library_and_the_parser_on_sliding_windows(name: str) -> None:
    checked = hits = 0
    for start, end in windows(name):
        expected = bool(library_starts(name, start, end))
        assert spans_say(name, start, end) is expected, (start, end)
        assert in_range(name, start, end) is expected, (start, end)
        checked, hits = checked + 1, hits + expected
    assert checked > 100 and 0 < hits < checked


@pytest.mark.parametrize("name", INDEXED)
@settings(max_examples=40, deadline=None, database=None)
@given(position=st.floats(min_value=-0.1, max_value=1.1), minutes=st.integers(min_value=1, max_value=60 * 24 * 20),
       open_end=st.sampled_from([None, "start", "end"]))
def test_random_windows_agree_between_spans_and_parser(name: str, position: float, minutes: int,
                                                       open_end: str | None) -> None:
    first, last = span(name)
    start = (first + (last - first) * position).replace(microsecond=0)
    end = start + timedelta(minutes=minutes)
    spans = inspect_calendar(SERIES[name]).spans
    assert spans is not None
    low = float("-inf") if open_end == "start" else start.timestamp()
    high = float("inf") if open_end == "end" else end.timestamp()
    tr = TimeRange(None if open_end == "start" else start, None if open_end == "end" else end)
    flt = CompFilter("VCALENDAR", comp_filters=(CompFilter("VEVENT", time_range=tr),))
    assert overlap(spans, low, high) is matches(SERIES[name], flt)


@contextlib.contextmanager
def _within(seconds: int) -> Iterator[None]:
    """Fail, rather than hang, if the block runs longer than ``seconds``."""
    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still running after {seconds}s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("kind", ["VEVENT", "VTODO", "VJOURNAL"])
def test_a_rule_with_interval_zero_is_refused_not_walked_forever(kind: str) -> None:
    """dateutil walks INTERVAL=0 forever (the server's event loop blocked, GBs of memory):
    a PUT refuses it, and an object stored before that (or imported) is refused by a
    query or an expand, which then send it as stored, instead of hanging."""
    data = calendar(*component(kind, "DTSTART:20240101T100000Z", "RRULE:FREQ=HOURLY;INTERVAL=0"))
    flt = CompFilter("VCALENDAR", comp_filters=(CompFilter(kind, time_range=TimeRange(
        at("19000101T000000Z"), at("21000101T000000Z"))),))
    with _within(20):
        for attempt in (lambda: inspect_calendar(data), lambda: matches(data, flt),
                        lambda: expand(data, at("20240101T000000Z"), at("20250101T000000Z"))):
            with pytest.raises(InvalidCalendarData, match="INTERVAL"):
                attempt()


def test_expand_over_all_of_time_is_clamped_to_the_horizon() -> None:
    """An expand from year 1 to 9999 overflowed datetime while widening the window."""
    data = calendar(*component("VEVENT", "DTSTART:20240101T100000Z", "DTEND:20240101T110000Z",
                               "RRULE:FREQ=DAILY;COUNT=3"))
    out = expand(data, datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert out.count(b"RECURRENCE-ID:2024010") == 3, out
