"""core.formats.ical: calendar-data expand (RFC 4791 §9.6.5), limit-recurrence-set (§9.6.6)
and the free-busy-query answer (§7.10)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest

from safehold.core.formats.ical import (
    InvalidCalendarData,
    expand,
    freebusy,
    inspect_calendar,
    limit_recurrence_set,
)
from safehold.core.formats import ical_freebusy
from safehold.core.formats.ical_expand import MAX_EXPANDED
from safehold.core.formats.ical_instances import TooManyInstances
from tests.unit.test_ical import CORPUS, at, calendar, component, event

BERLIN = (CORPUS / "valid" / "recurring-overrides-exdate-berlin.ics").read_bytes()
THISANDFUTURE = (CORPUS / "valid" / "recurring-thisandfuture.ics").read_bytes()


def components(data: bytes) -> list[Any]:
    return [c for c in icalendar.Calendar.from_ical(data).subcomponents]


def utc_text(comp: Any, name: str) -> str:
    return comp[name].to_ical().decode()


# -- expand -----------------------------------------------------------------------------------

def test_expand_gives_one_component_per_instance_in_utc() -> None:
    out = expand(BERLIN, at("20240301T000000Z"), at("20240501T000000Z"))
    found = components(out)
    assert [c.name for c in found] == ["VEVENT"] * 5
    assert [utc_text(c, "RECURRENCE-ID") for c in found] == [
        "20240307T083000Z", "20240314T083000Z", "20240321T083000Z", "20240404T073000Z", "20240425T073000Z"]
    assert [utc_text(c, "DTSTART") for c in found] == [
        "20240307T083000Z", "20240314T083000Z", "20240322T130000Z", "20240404T073000Z", "20240425T073000Z"]
    assert [str(c["SUMMARY"]) for c in found] == [
        "Jour fixe", "Jour fixe", "Jour fixe (verschoben)", "Jour fixe mit Kunde", "Jour fixe"]
    assert utc_text(found[3], "DTEND") == "20240404T090000Z"


def test_expand_refuses_more_instances_than_it_builds() -> None:
    """An open-ended daily event over centuries: refused at once (the REPORT then sends
    the object as stored), not 64,000 components built over tens of seconds."""
    daily = event("DTSTART:20240101T090000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY")
    with pytest.raises(TooManyInstances):
        expand(daily, at("18000101T000000Z"), at("22000101T000000Z"))
    start = at("20240101T000000Z")
    out = expand(daily, start, start + (MAX_EXPANDED - 1) * timedelta(days=1))
    assert len(components(out)) == MAX_EXPANDED - 1


def test_expanded_output_has_no_recurrence_rules_zones_or_tzids() -> None:
    out = expand(BERLIN, at("20240301T000000Z"), at("20240501T000000Z"))
    for marker in (b"RRULE", b"RDATE", b"EXDATE", b"VTIMEZONE", b"TZID"):
        assert marker not in out
    assert out.endswith(b"END:VCALENDAR\r\n")
    assert all(line.endswith(b"\r") for line in out.split(b"\n")[:-1])


def test_expanded_instances_keep_their_alarms() -> None:
    found = components(expand(BERLIN, at("20240307T000000Z"), at("20240308T000000Z")))
    assert [a.name for a in found[0].subcomponents] == ["VALARM"]


def test_expanded_output_is_itself_acceptable() -> None:
    out = expand(BERLIN, at("20240301T000000Z"), at("20240501T000000Z"))
    assert inspect_calendar(out).uid == "weekly-jour-fixe@example.com"


def test_expand_thisandfuture() -> None:
    found = components(expand(THISANDFUTURE, at("20240613T000000Z"), at("20240618T000000Z")))
    assert [utc_text(c, "RECURRENCE-ID") for c in found] == [
        "20240613T080000Z", "20240614T080000Z", "20240615T080000Z", "20240616T080000Z", "20240617T080000Z"]
    assert [utc_text(c, "DTSTART") for c in found] == [
        "20240613T080000Z", "20240614T080000Z", "20240615T100000Z", "20240616T100000Z", "20240617T100000Z"]
    assert [c["DURATION"].dt.seconds // 60 for c in found] == [30, 30, 45, 45, 45]
    assert all("RANGE" not in c["RECURRENCE-ID"].params for c in found)


def test_expand_all_day_keeps_dates() -> None:
    data = (CORPUS / "valid" / "allday-yearly-birthday.ics").read_bytes()
    found = components(expand(data, at("20240101T000000Z"), at("20260101T000000Z")))
    assert [c["DTSTART"].dt for c in found] == [date(2024, 12, 10), date(2025, 12, 10)]
    assert [c["RECURRENCE-ID"].dt for c in found] == [date(2024, 12, 10), date(2025, 12, 10)]
    assert b"DTSTART;VALUE=DATE:20241210" in expand(data, at("20241201T000000Z"), at("20250101T000000Z"))


def test_expand_a_single_event_converts_it_to_utc() -> None:
    data = (CORPUS / "valid" / "outlook-windows-tzid.ics").read_bytes()
    found = components(expand(data, at("20240618T000000Z"), at("20240619T000000Z")))
    assert len(found) == 1
    assert (utc_text(found[0], "DTSTART"), utc_text(found[0], "DTEND")) == ("20240618T080000Z", "20240618T090000Z")
    assert "RECURRENCE-ID" not in found[0]


def test_expand_outside_every_instance_is_an_empty_calendar() -> None:
    out = expand(BERLIN, at("20250101T000000Z"), at("20250201T000000Z"))
    assert components(out) == []
    assert out.startswith(b"BEGIN:VCALENDAR\r\n")


def test_expand_keeps_floating_times_floating() -> None:
    data = event("DTSTART:20240101T090000", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=3")
    found = components(expand(data, at("20240102T000000Z"), at("20240103T000000Z")))
    assert [utc_text(c, "DTSTART") for c in found] == ["20240102T090000"]
    berlin = components(expand(data, at("20240102T075900Z"), at("20240102T080100Z"), ZoneInfo("Europe/Berlin")))
    assert len(berlin) == 1


def test_expand_recurring_todo_sets_due_per_instance() -> None:
    data = (CORPUS / "valid" / "todo-recurring.ics").read_bytes()
    found = components(expand(data, at("20240110T000000Z"), at("20240120T000000Z")))
    assert [(utc_text(c, "DTSTART"), utc_text(c, "DUE")) for c in found] == [
        ("20240112T150000Z", "20240112T160000Z"), ("20240119T150000Z", "20240119T160000Z")]


def test_expand_rdate_periods() -> None:
    data = (CORPUS / "valid" / "rdate-periods.ics").read_bytes()
    found = components(expand(data, at("20240901T000000Z"), at("20241001T000000Z")))
    assert [(utc_text(c, "DTSTART"), utc_text(c, "DTEND")) for c in found] == [
        ("20240902T170000Z", "20240902T190000Z"), ("20240909T170000Z", "20240909T190000Z"),
        ("20240916T160000Z", "20240916T200000Z"), ("20240930T170000Z", "20240930T190000Z")]


# -- limit-recurrence-set ---------------------------------------------------------------------

def _blocks(data: bytes) -> list[bytes]:
    parts = data.split(b"BEGIN:VEVENT")
    return [b"BEGIN:VEVENT" + p.split(b"END:VEVENT")[0] + b"END:VEVENT" for p in parts[1:]]


def test_limit_drops_overrides_outside_the_range_byte_for_byte() -> None:
    out = limit_recurrence_set(BERLIN, at("20240401T000000Z"), at("20240501T000000Z"))
    master, moved, customer = _blocks(BERLIN)
    assert _blocks(out) == [master, customer]
    assert out == BERLIN.replace(moved + b"\r\n", b"")


def test_limit_keeps_an_override_whose_original_time_is_in_range() -> None:
    # The 21 March instance moved to the 22nd; the range only covers its original slot.
    out = limit_recurrence_set(BERLIN, at("20240321T080000Z"), at("20240321T090000Z"))
    assert [b"verschoben" in b for b in _blocks(out)] == [False, True]


def test_limit_with_nothing_to_drop_returns_the_stored_bytes() -> None:
    assert limit_recurrence_set(BERLIN, at("20240301T000000Z"), at("20240501T000000Z")) is BERLIN


def test_limit_keeps_thisandfuture_overrides_that_affect_the_range() -> None:
    assert b"RANGE=THISANDFUTURE" in limit_recurrence_set(THISANDFUTURE, at("20240618T000000Z"),
                                                          at("20240619T000000Z"))
    before = limit_recurrence_set(THISANDFUTURE, at("20240610T000000Z"), at("20240611T000000Z"))
    assert b"RANGE=THISANDFUTURE" not in before
    assert inspect_calendar(before).recurring


def test_limit_works_on_lf_only_input() -> None:
    data = BERLIN.replace(b"\r\n", b"\n")
    out = limit_recurrence_set(data, at("20240401T000000Z"), at("20240501T000000Z"))
    assert out.count(b"BEGIN:VEVENT") == 2
    assert b"\r" not in out


# -- free-busy --------------------------------------------------------------------------------

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def busy_lines(out: bytes) -> list[str]:
    return [line for line in out.decode().split("\r\n") if line.startswith("FREEBUSY")]


def test_freebusy_answer_shape() -> None:
    out = freebusy([], at("20240610T000000Z"), at("20240617T000000Z"), now=NOW)
    assert out == (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//safehold//free-busy//EN\r\n"
                   b"BEGIN:VFREEBUSY\r\nDTSTAMP:20240601T120000Z\r\nDTSTART:20240610T000000Z\r\n"
                   b"DTEND:20240617T000000Z\r\nEND:VFREEBUSY\r\nEND:VCALENDAR\r\n")


def test_freebusy_from_events_by_status_and_transparency() -> None:
    objects = [
        event("DTSTART:20240610T090000Z", "DTEND:20240610T100000Z", uid="plain"),
        event("DTSTART:20240610T093000Z", "DTEND:20240610T110000Z", "STATUS:CONFIRMED", uid="overlapping"),
        event("DTSTART:20240610T110000Z", "DTEND:20240610T113000Z", uid="touching"),
        event("DTSTART:20240610T140000Z", "DTEND:20240610T150000Z", "STATUS:TENTATIVE", uid="maybe"),
        event("DTSTART:20240610T160000Z", "DTEND:20240610T170000Z", "STATUS:CANCELLED", uid="off"),
        event("DTSTART:20240610T180000Z", "DTEND:20240610T190000Z", "TRANSP:TRANSPARENT", uid="free"),
        event("DTSTART:20240610T200000Z", uid="zero-length"),
    ]
    out = freebusy(objects, at("20240610T000000Z"), at("20240611T000000Z"), now=NOW)
    assert busy_lines(out) == [
        "FREEBUSY;FBTYPE=BUSY:20240610T090000Z/20240610T113000Z",
        "FREEBUSY;FBTYPE=BUSY-TENTATIVE:20240610T140000Z/20240610T150000Z",
    ]


def test_freebusy_clips_to_the_range_and_expands_recurrences() -> None:
    out = freebusy([BERLIN], at("20240321T000000Z"), at("20240404T080000Z"), now=NOW)
    assert busy_lines(out) == [
        "FREEBUSY;FBTYPE=BUSY:20240322T130000Z/20240322T140000Z",
        "FREEBUSY;FBTYPE=BUSY:20240404T073000Z/20240404T080000Z",
    ]


def test_freebusy_from_vfreebusy_objects() -> None:
    data = (CORPUS / "valid" / "freebusy-published.ics").read_bytes()
    out = freebusy([data], at("20240610T000000Z"), at("20240613T000000Z"), now=NOW)
    assert busy_lines(out) == [
        "FREEBUSY;FBTYPE=BUSY:20240610T080000Z/20240610T090000Z",
        "FREEBUSY;FBTYPE=BUSY:20240610T120000Z/20240610T130000Z",
        "FREEBUSY;FBTYPE=BUSY-TENTATIVE:20240611T090000Z/20240611T110000Z",
    ]


def test_freebusy_all_day_events_in_the_calendar_zone() -> None:
    data = event("DTSTART;VALUE=DATE:20240610", uid="day")
    out = freebusy([data], at("20240609T000000Z"), at("20240612T000000Z"), now=NOW,
                   floating_tz=ZoneInfo("Europe/Berlin"))
    assert busy_lines(out) == ["FREEBUSY;FBTYPE=BUSY:20240609T220000Z/20240610T220000Z"]


def test_freebusy_skips_objects_it_cannot_read() -> None:
    good = event("DTSTART:20240610T090000Z", "DTEND:20240610T100000Z")
    out = freebusy([b"garbage", good], at("20240610T000000Z"), at("20240611T000000Z"), now=NOW)
    assert len(busy_lines(out)) == 1


def test_freebusy_output_parses() -> None:
    out = freebusy([BERLIN], at("20240301T000000Z"), at("20240601T000000Z"))
    parsed = icalendar.Calendar.from_ical(out)
    fb = parsed.subcomponents[0]
    assert fb.name == "VFREEBUSY"
    assert len(fb["FREEBUSY"]) == 6


def test_freebusy_over_centuries_of_an_open_ended_event_is_refused() -> None:
    """An open-ended daily event over 1800-2200 was 146,000 busy periods (3.5 s of CPU with
    the GIL held; 50 such events 176 s and 1.4 GB): more instances than the cap."""
    data = event("DTSTART:20000101T100000Z", "DTEND:20000101T103000Z", "RRULE:FREQ=DAILY")
    with pytest.raises(TooManyInstances, match="shorter time-range"):
        freebusy([data], at("18000101T000000Z"), at("22000101T000000Z"), now=NOW)
    week = freebusy([data], at("20261102T000000Z"), at("20261109T000000Z"), now=NOW)
    assert len(busy_lines(week)) == 7


def test_freebusy_cap_counts_the_instances_of_every_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ical_freebusy, "MAX_BUSY_INSTANCES", 8)
    objects = [event(f"DTSTART:2024061{i}T100000Z", "DURATION:PT30M", "RRULE:FREQ=DAILY;COUNT=4",
                     uid=f"e{i}") for i in range(3)]
    out = freebusy(objects[:2], at("20240601T000000Z"), at("20240701T000000Z"), now=NOW)
    assert len(busy_lines(out)) == 5  # 8 instances, the overlapping days merged
    with pytest.raises(TooManyInstances, match="more than 8 instances in this range"):
        freebusy(objects, at("20240601T000000Z"), at("20240701T000000Z"), now=NOW)


def test_freebusy_does_not_leave_out_a_recurrence_too_dense_to_expand() -> None:
    """A minutely event since 2000 was skipped as unreadable: its time was answered as free."""
    data = event("DTSTART:20000101T100000Z", "DURATION:PT30S", "RRULE:FREQ=MINUTELY")
    with pytest.raises(TooManyInstances, match="too dense"):
        freebusy([data], at("20261102T000000Z"), at("20261103T000000Z"), now=NOW)


@pytest.mark.parametrize("fbtype", ["BUSY-UNAVAILABLE", "X-OUT-OF-OFFICE"])
def test_freebusy_passes_other_fbtypes_through(fbtype: str) -> None:
    data = calendar(*component("VFREEBUSY", f"FREEBUSY;FBTYPE={fbtype}:20240610T090000Z/PT1H"))
    out = freebusy([data], at("20240610T000000Z"), at("20240611T000000Z"), now=NOW)
    assert busy_lines(out) == [f"FREEBUSY;FBTYPE={fbtype}:20240610T090000Z/20240610T100000Z"]


# -- recurrences too dense to expand ------------------------------------------------------------

EVERY_SECOND = event("DTSTART:20240101T000000Z", "RRULE:FREQ=SECONDLY")


def test_a_dense_recurrence_is_accepted_and_indexed_as_endless() -> None:
    info = inspect_calendar(EVERY_SECOND)
    assert (info.recurring, info.end) == (True, None)


def test_a_dense_recurrence_is_refused_for_expansion_not_ground_through() -> None:
    with pytest.raises(InvalidCalendarData):
        expand(EVERY_SECOND, at("20240601T000000Z"), at("20240601T000010Z"))
    # Nor is it answered as free time (it was): see the free-busy tests above.
    with pytest.raises(TooManyInstances):
        freebusy([EVERY_SECOND], at("20240601T000000Z"), at("20240602T000000Z"), now=NOW)


def test_a_dense_but_short_recurrence_expands() -> None:
    data = event("DTSTART:20240101T000000Z", "DURATION:PT1M", "RRULE:FREQ=MINUTELY;COUNT=30")
    found = components(expand(data, at("20240101T000000Z"), at("20250101T000000Z")))
    assert len(found) == 30
