"""A DAILY or WEEKLY rule is walked from a later start when the range begins hundreds of
periods after DTSTART (ical_instances.RecurrenceSet._series_near): the instances must
be exactly those of the walk from DTSTART, whatever the rule, zone, overrides and range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safehold.core.formats import ical_instances
from safehold.core.formats.ical_filter import CompFilter, TimeRange, matches
from safehold.core.formats.ical_instances import RecurrenceSet
from safehold.core.formats.ical_parse import main_components, parse


def _calendar(*components: str) -> bytes:
    body = "".join(f"BEGIN:VEVENT\r\n{c}END:VEVENT\r\n" for c in components)
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n{body}"
            "END:VCALENDAR\r\n").encode()


def _instances(data: bytes, start: datetime, end: datetime, skip: bool,
               monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    monkeypatch.setattr(ical_instances, "SKIP_PERIODS", 200 if skip else 10**9)
    recurrence = RecurrenceSet(main_components(parse(data)), None)
    found = recurrence.between(start, end)
    masters = [c for c in main_components(parse(data))]
    assert all(i.source in masters or i.source is recurrence.master or
               i.source in recurrence.overrides.values() for i in found)
    return [(i.start, i.end, i.recurrence_id, i.source is recurrence.master) for i in found]


def _same(data: bytes, start: datetime, end: datetime, monkeypatch: pytest.MonkeyPatch) -> int:
    walked = _instances(data, start, end, False, monkeypatch)
    skipped = _instances(data, start, end, True, monkeypatch)
    assert skipped == walked
    return len(walked)


NOV_2026 = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
# The week Europe/Berlin leaves summer time (25 October 2026).
DST_WEEK = (datetime(2026, 10, 22, tzinfo=UTC), datetime(2026, 10, 29, tzinfo=UTC))


@pytest.mark.parametrize("event", [
    "UID:a\r\nDTSTART;TZID=Europe/Berlin:20150105T091500\r\nDTEND;TZID=Europe/Berlin:20150105T093000\r\n"
    "RRULE:FREQ=DAILY\r\n",
    "UID:b\r\nDTSTART;TZID=Europe/Berlin:20150105T091500\r\nDURATION:PT15M\r\n"
    "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR\r\n",
    "UID:c\r\nDTSTART;TZID=America/New_York:20150107T230000\r\nDTEND;TZID=America/New_York:20150108T010000\r\n"
    "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH;WKST=SU\r\n",
    "UID:d\r\nDTSTART;VALUE=DATE:20100301\r\nDTEND;VALUE=DATE:20100302\r\nRRULE:FREQ=DAILY;INTERVAL=3\r\n",
    "UID:e\r\nDTSTART:20120101T120000\r\nDTEND:20120101T130000\r\nRRULE:FREQ=DAILY;BYDAY=SA,SU\r\n",
    "UID:f\r\nDTSTART:20120101T120000Z\r\nDTEND:20120104T120000Z\r\nRRULE:FREQ=WEEKLY\r\n",
    "UID:g\r\nDTSTART;TZID=Europe/Berlin:20150105T091500\r\nDTEND;TZID=Europe/Berlin:20150105T093000\r\n"
    "RRULE:FREQ=DAILY;UNTIL=20261115T000000Z\r\nEXDATE;TZID=Europe/Berlin:20261103T091500,20261024T091500\r\n",
    "UID:h\r\nDTSTART;TZID=Europe/Berlin:20150106T100000\r\nDTEND;TZID=Europe/Berlin:20150106T110000\r\n"
    "RRULE:FREQ=DAILY;BYMONTH=10,11;BYMONTHDAY=1,15,25,26\r\nRDATE;TZID=Europe/Berlin:20261110T080000\r\n",
    "UID:i\r\nDTSTART;TZID=Europe/Berlin:20150107T091500\r\nDTEND;TZID=Europe/Berlin:20150107T093000\r\n"
    "RRULE:FREQ=WEEKLY;BYDAY=MO\r\n",  # DTSTART (a Wednesday) is not an instance of the rule
    "UID:j\r\nDTSTART;TZID=Europe/Berlin:20150105T091500\r\nDTEND;TZID=Europe/Berlin:20150105T093000\r\n"
    "RRULE:FREQ=WEEKLY;BYDAY=MO,WE,FR;BYSETPOS=-1\r\n",
])
@pytest.mark.parametrize("window", [NOV_2026, DST_WEEK])
def test_the_same_instances_as_the_walk_from_dtstart(event: str, window: tuple[datetime, datetime],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    master = RecurrenceSet(main_components(parse(_calendar(event))), None).master
    assert ical_instances._skip(master, window[0]) is not None  # the case under test
    _same(_calendar(event), *window, monkeypatch)


def test_a_recurring_todo_keeps_its_due(monkeypatch: pytest.MonkeyPatch) -> None:
    """DUE moves with DTSTART: left behind, every instance ran from 2015 to its start."""
    data = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VTODO\r\nUID:t\r\n"
            b"DTSTART;TZID=Europe/Berlin:20150105T090000\r\nDUE;TZID=Europe/Berlin:20150105T170000\r\n"
            b"RRULE:FREQ=DAILY\r\nEND:VTODO\r\nEND:VCALENDAR\r\n")
    master = RecurrenceSet(main_components(parse(data)), None).master
    assert ical_instances._skip(master, NOV_2026[0]) is not None
    assert _same(data, *NOV_2026, monkeypatch) == 34


def test_overrides_and_a_moved_instance_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    master = ("UID:o\r\nDTSTART;TZID=Europe/Berlin:20150105T091500\r\n"
              "DTEND;TZID=Europe/Berlin:20150105T093000\r\nRRULE:FREQ=DAILY\r\nSUMMARY:standup\r\n")
    moved = ("UID:o\r\nRECURRENCE-ID;TZID=Europe/Berlin:20261110T091500\r\n"
             "DTSTART;TZID=Europe/Berlin:20261110T140000\r\nDTEND;TZID=Europe/Berlin:20261110T150000\r\n"
             "SUMMARY:moved\r\n")
    later = ("UID:o\r\nRECURRENCE-ID;TZID=Europe/Berlin;RANGE=THISANDFUTURE:20261120T091500\r\n"
             "DTSTART;TZID=Europe/Berlin:20261120T100000\r\nDTEND;TZID=Europe/Berlin:20261120T101500\r\n"
             "SUMMARY:later\r\n")
    # November's 30 days and MARGIN's two on each side (callers apply the exact test).
    assert _same(_calendar(master, moved, later), *NOV_2026, monkeypatch) == 34


def test_a_walk_is_still_refused_when_the_rule_cannot_be_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    """COUNT counts from DTSTART, so it is never moved; HOURLY is left to the dense-rule cap."""
    counted = _calendar("UID:k\r\nDTSTART:20150105T091500Z\r\nDTEND:20150105T093000Z\r\n"
                        "RRULE:FREQ=DAILY;COUNT=5000\r\n")
    assert _same(counted, *NOV_2026, monkeypatch) == 34
    hourly = _calendar("UID:l\r\nDTSTART:19000105T091500Z\r\nRRULE:FREQ=HOURLY\r\n")
    recurrence = RecurrenceSet(main_components(parse(hourly)), None)
    with pytest.raises(ical_instances.TooManyInstances):
        recurrence.between(*NOV_2026)


@settings(max_examples=80, deadline=None)
@given(first=st.dates(min_value=datetime(2016, 1, 1).date(), max_value=datetime(2024, 12, 31).date()),
       hour=st.integers(0, 23), minutes=st.sampled_from([15, 60, 24 * 60, 3 * 24 * 60]),
       weekly=st.booleans(), interval=st.integers(1, 4),
       days=st.sets(st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU"]), max_size=3),
       zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", None]),
       offset=st.integers(0, 500), length=st.integers(1, 60))
def test_any_daily_or_weekly_rule(first: object, hour: int, minutes: int, weekly: bool, interval: int,
                                  days: set[str], zone: str | None, offset: int, length: int) -> None:
    tz = f";TZID={zone}" if zone else ""
    start = f"{first:%Y%m%d}T{hour:02d}0000"
    rule = f"FREQ={'WEEKLY' if weekly else 'DAILY'};INTERVAL={interval}"
    if days:
        rule += ";BYDAY=" + ",".join(sorted(days))
    event = f"UID:h\r\nDTSTART{tz}:{start}\r\nDURATION:PT{minutes}M\r\nRRULE:{rule}\r\n"
    window_start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=offset)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _same(_calendar(event), window_start, window_start + timedelta(days=length), monkeypatch)


@pytest.mark.parametrize("window", [NOV_2026, (datetime(2026, 11, 3, 8, 0, tzinfo=UTC),
                                               datetime(2026, 11, 3, 8, 12, tzinfo=UTC))])
def test_alarm_queries_see_the_same_instances(window: tuple[datetime, datetime],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A VALARM time-range is decided on the instances the walk yields (RFC 4791 §9.9)."""
    data = _calendar("UID:al\r\nDTSTART;TZID=Europe/Berlin:20150105T091500\r\n"
                     "DTEND;TZID=Europe/Berlin:20150105T093000\r\nRRULE:FREQ=DAILY\r\n"
                     "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:x\r\nTRIGGER:-PT10M\r\nEND:VALARM\r\n")
    alarm = CompFilter("VCALENDAR", comp_filters=(CompFilter("VEVENT", comp_filters=(
        CompFilter("VALARM", time_range=TimeRange(*window)),)),))
    answers = []
    for periods in (10**9, 200):
        monkeypatch.setattr(ical_instances, "SKIP_PERIODS", periods)
        answers.append(matches(data, alarm))
    assert answers == [True, True]
