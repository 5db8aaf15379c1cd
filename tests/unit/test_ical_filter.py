"""core.formats.ical.matches: CALDAV:filter evaluation (RFC 4791 §9.7), and the time-range
conditions of §9.9 row by row. Every expected value below was worked out from the RFC's
condition for the row, not taken from what the code returns."""

from __future__ import annotations

from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

import pytest

from safehold.core.formats.ical import (
    CompFilter,
    InvalidCalendarData,
    ParamFilter,
    PropFilter,
    TimeRange,
    matches,
)
from safehold.core.formats.textmatch import TextMatch, UnsupportedCollation
from tests.unit.test_ical import CORPUS, at, calendar, component, event, todo


def query(*comp_filters: CompFilter, props: tuple[PropFilter, ...] = ()) -> CompFilter:
    return CompFilter("VCALENDAR", comp_filters=comp_filters, prop_filters=props)


def window(start: str | None, end: str | None) -> TimeRange:
    """Times as HHMM or HHMMSS on 2024-01-10 (UTC), full iCalendar UTC stamps, or None (open)."""
    def one(value: str | None) -> datetime | None:
        if value is None:
            return None
        return at(value if "T" in value else f"20240110T{value:0<6}Z")
    return TimeRange(one(start), one(end))


def in_range(data: bytes, name: str, start: str | None, end: str | None,
             floating_tz: tzinfo | None = None) -> bool:
    return matches(data, query(CompFilter(name, time_range=window(start, end))), floating_tz)


D = "20240110T"  # the day all table tests happen on


# -- VEVENT (RFC 4791 §9.9, first table) -------------------------------------------------------

@pytest.mark.parametrize(("props", "start", "end", "hit"), [
    # DTEND: (start < DTEND) AND (end > DTSTART)
    ((f"DTSTART:{D}100000Z", f"DTEND:{D}110000Z"), "0900", "1000", False),
    ((f"DTSTART:{D}100000Z", f"DTEND:{D}110000Z"), "0900", "1001", True),
    ((f"DTSTART:{D}100000Z", f"DTEND:{D}110000Z"), "1059", "1200", True),
    ((f"DTSTART:{D}100000Z", f"DTEND:{D}110000Z"), "1100", "1200", False),
    ((f"DTSTART:{D}100000Z", f"DTEND:{D}110000Z"), None, "1000", False),
    ((f"DTSTART:{D}100000Z", f"DTEND:{D}110000Z"), "1059", None, True),
    # DURATION > 0: (start < DTSTART+DURATION) AND (end > DTSTART)
    ((f"DTSTART:{D}100000Z", "DURATION:PT1H"), "1100", "1200", False),
    ((f"DTSTART:{D}100000Z", "DURATION:PT1H"), "1059", "1200", True),
    # DURATION = 0 and no DTEND/DURATION with a DATE-TIME: (start <= DTSTART) AND (end > DTSTART)
    ((f"DTSTART:{D}100000Z", "DURATION:PT0S"), "1000", "1100", True),
    ((f"DTSTART:{D}100000Z", "DURATION:PT0S"), "0900", "1000", False),
    ((f"DTSTART:{D}100000Z",), "1000", "1001", True),
    ((f"DTSTART:{D}100000Z",), "1001", "1100", False),
    # no DTEND/DURATION with a DATE: the whole day, (start < DTSTART+P1D) AND (end > DTSTART)
    (("DTSTART;VALUE=DATE:20240110",), "2359", "20240111T010000Z", True),
    (("DTSTART;VALUE=DATE:20240110",), "20240111T000000Z", "20240111T010000Z", False),
    (("DTSTART;VALUE=DATE:20240110",), "20240109T230000Z", "0000", False),
    (("DTSTART;VALUE=DATE:20240110",), "20240109T230000Z", "0001", True),
])
def test_event_time_range(props: tuple[str, ...], start: str | None, end: str | None, hit: bool) -> None:
    assert in_range(event(*props), "VEVENT", start, end) is hit


# -- VTODO (RFC 4791 §9.9, second table) -------------------------------------------------------

START_DURATION = (f"DTSTART:{D}100000Z", "DURATION:PT1H")
START_DUE = (f"DTSTART:{D}100000Z", f"DUE:{D}110000Z")
START_ONLY = (f"DTSTART:{D}100000Z",)
DUE_ONLY = (f"DUE:{D}110000Z",)
COMPLETED_CREATED = (f"COMPLETED:{D}120000Z", f"CREATED:{D}080000Z")
COMPLETED_ONLY = (f"COMPLETED:{D}120000Z",)
CREATED_ONLY = (f"CREATED:{D}080000Z",)


@pytest.mark.parametrize(("props", "start", "end", "hit"), [
    # Y Y N: (start <= DTSTART+DURATION) AND ((end > DTSTART) OR (end >= DTSTART+DURATION))
    (START_DURATION, "1100", "1200", True),
    (START_DURATION, "110001", "1200", False),
    (START_DURATION, "0900", "1000", False),
    (START_DURATION, "0900", "100001", True),
    # Y N Y: ((start < DUE) OR (start <= DTSTART)) AND ((end > DTSTART) OR (end >= DUE))
    (START_DUE, "1100", "1200", False),
    (START_DUE, "1059", "1200", True),
    (START_DUE, "0900", "1000", False),
    (START_DUE, "0900", "100001", True),
    ((f"DTSTART:{D}100000Z", f"DUE:{D}100000Z"), "0900", "1000", True),  # end >= DUE
    ((f"DTSTART:{D}100000Z", f"DUE:{D}100000Z"), "1000", "1100", True),  # start <= DTSTART
    # Y N N: (start <= DTSTART) AND (end > DTSTART)
    (START_ONLY, "1000", "1100", True),
    (START_ONLY, "0900", "1000", False),
    (START_ONLY, "100001", "1100", False),
    # N N Y: (start < DUE) AND (end >= DUE)
    (DUE_ONLY, "1000", "1100", True),
    (DUE_ONLY, "1100", "1200", False),
    (DUE_ONLY, "0900", "1000", False),
    (DUE_ONLY, None, "1100", True),
    # N N N Y Y: ((start <= CREATED) OR (start <= COMPLETED)) AND ((end >= CREATED) OR (end >= COMPLETED))
    (COMPLETED_CREATED, "1200", "1300", True),
    (COMPLETED_CREATED, "120001", "1300", False),
    (COMPLETED_CREATED, "0700", "0800", True),
    (COMPLETED_CREATED, "0600", "0700", False),
    # N N N Y N: (start <= COMPLETED) AND (end >= COMPLETED)
    (COMPLETED_ONLY, "1100", "1200", True),
    (COMPLETED_ONLY, "1200", "1300", True),
    (COMPLETED_ONLY, "120001", "1300", False),
    (COMPLETED_ONLY, "1000", "1100", False),
    # N N N N Y: (end > CREATED)
    (CREATED_ONLY, "0700", "0800", False),
    (CREATED_ONLY, "0700", "080001", True),
    (CREATED_ONLY, "20300101T000000Z", "20300102T000000Z", True),
    # N N N N N: TRUE
    ((), "0000", "0001", True),
    ((), "19000101T000000Z", "19000102T000000Z", True),
    ((), None, "1000", True),
])
def test_todo_time_range(props: tuple[str, ...], start: str | None, end: str | None, hit: bool) -> None:
    assert in_range(todo(*props), "VTODO", start, end) is hit


def test_recurring_todo_instances_follow_the_table() -> None:
    data = todo(f"DTSTART:{D}100000Z", f"DUE:{D}110000Z", "RRULE:FREQ=DAILY;COUNT=3")
    assert in_range(data, "VTODO", "20240112T105900Z", "20240112T120000Z")
    assert not in_range(data, "VTODO", "20240112T110000Z", "20240112T120000Z")
    # DUE is inclusive at the range end: the instance on the 11th touches [09:00, 10:00).
    assert in_range(data, "VTODO", "20240111T090000Z", "20240111T100001Z")
    assert not in_range(data, "VTODO", "20240113T000000Z", None)


# -- VJOURNAL, VFREEBUSY ---------------------------------------------------------------------

def journal(*props: str) -> bytes:
    return calendar(*component("VJOURNAL", *props))


@pytest.mark.parametrize(("props", "start", "end", "hit"), [
    # DATE-TIME: (start <= DTSTART) AND (end > DTSTART)
    ((f"DTSTART:{D}100000Z",), "1000", "1100", True),
    ((f"DTSTART:{D}100000Z",), "0900", "1000", False),
    # DATE: (start < DTSTART+P1D) AND (end > DTSTART)
    (("DTSTART;VALUE=DATE:20240110",), "1200", "1300", True),
    (("DTSTART;VALUE=DATE:20240110",), "20240111T000000Z", "20240112T000000Z", False),
    (("DTSTART;VALUE=DATE:20240110",), "20240109T000000Z", "0000", False),
    # no DTSTART: FALSE
    ((), None, None, False),
    ((), "0000", "2359", False),
])
def test_journal_time_range(props: tuple[str, ...], start: str | None, end: str | None, hit: bool) -> None:
    assert in_range(journal(*props), "VJOURNAL", start, end) is hit


def freebusy_object(*props: str) -> bytes:
    return calendar(*component("VFREEBUSY", *props))


@pytest.mark.parametrize(("props", "start", "end", "hit"), [
    # DTSTART and DTEND: (start <= DTEND) AND (end > DTSTART)
    ((f"DTSTART:{D}100000Z", f"DTEND:{D}120000Z"), "1200", "1300", True),
    ((f"DTSTART:{D}100000Z", f"DTEND:{D}120000Z"), "120001", "1300", False),
    ((f"DTSTART:{D}100000Z", f"DTEND:{D}120000Z"), "0900", "1000", False),
    # FREEBUSY only: (start < period-end) AND (end > period-start), any period, any FBTYPE
    ((f"FREEBUSY;FBTYPE=FREE:{D}100000Z/PT1H,{D}140000Z/{D}150000Z",), "1100", "1200", False),
    ((f"FREEBUSY;FBTYPE=FREE:{D}100000Z/PT1H,{D}140000Z/{D}150000Z",), "1059", "1200", True),
    ((f"FREEBUSY;FBTYPE=FREE:{D}100000Z/PT1H,{D}140000Z/{D}150000Z",), "1300", "1400", False),
    ((f"FREEBUSY;FBTYPE=FREE:{D}100000Z/PT1H,{D}140000Z/{D}150000Z",), "1459", None, True),
    # neither: FALSE
    ((), None, None, False),
])
def test_freebusy_time_range(props: tuple[str, ...], start: str | None, end: str | None, hit: bool) -> None:
    assert in_range(freebusy_object(*props), "VFREEBUSY", start, end) is hit


# -- VALARM (RFC 4791 §9.9: (start <= trigger-time) AND (end > trigger-time)) -----------------

def alarm(*props: str) -> tuple[str, ...]:
    return ("BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:ping", *props, "END:VALARM")


def alarm_query(start: str | None, end: str | None, parent: str = "VEVENT",
                parent_range: TimeRange | None = None, props: tuple[PropFilter, ...] = ()) -> CompFilter:
    return query(CompFilter(parent, time_range=parent_range, comp_filters=(
        CompFilter("VALARM", time_range=window(start, end), prop_filters=props),)))


MEETING = (f"DTSTART:{D}100000Z", f"DTEND:{D}110000Z")


@pytest.mark.parametrize(("trigger", "start", "end", "hit"), [
    (("TRIGGER:-PT15M",), "0945", "0946", True),
    (("TRIGGER:-PT15M",), "0944", "0945", False),
    (("TRIGGER:-PT15M",), "0946", "1000", False),
    (("TRIGGER;RELATED=END:PT5M",), "1105", "1106", True),
    (("TRIGGER;RELATED=END:PT5M",), "1000", "1105", False),
    ((f"TRIGGER;VALUE=DATE-TIME:{D}080000Z",), "0800", "0801", True),
    ((f"TRIGGER;VALUE=DATE-TIME:{D}080000Z",), "0900", "1200", False),
    # REPEAT: 09:45, 09:50, 09:55
    (("TRIGGER:-PT15M", "REPEAT:2", "DURATION:PT5M"), "0955", "0956", True),
    (("TRIGGER:-PT15M", "REPEAT:2", "DURATION:PT5M"), "0951", "0955", False),
    (("TRIGGER:-PT15M", "REPEAT:2", "DURATION:PT5M"), "0956", "1000", False),
])
def test_alarm_time_range(trigger: tuple[str, ...], start: str, end: str, hit: bool) -> None:
    data = event(*MEETING, subs=alarm(*trigger))
    assert matches(data, alarm_query(start, end)) is hit


def test_alarm_of_a_todo_relative_to_due() -> None:
    data = todo(f"DUE:{D}170000Z", subs=alarm("TRIGGER;RELATED=END:-PT1H"))
    assert matches(data, alarm_query("1600", "1601", parent="VTODO"))
    assert not matches(data, alarm_query("1700", "1800", parent="VTODO"))


def test_alarm_relative_to_a_start_that_does_not_exist_never_fires() -> None:
    data = todo(f"DUE:{D}170000Z", subs=alarm("TRIGGER:-PT1H"))
    assert not matches(data, alarm_query(None, None, parent="VTODO"))


def test_alarm_of_a_todo_from_thunderbird_one_day_before_due() -> None:
    data = (CORPUS / "valid" / "todo-due-alarm.ics").read_bytes()
    # DUE 2024-07-31 18:00 Berlin = 16:00Z; TRIGGER;RELATED=END:-P1D.
    assert matches(data, alarm_query("20240730T160000Z", "20240730T160001Z", parent="VTODO"))
    assert not matches(data, alarm_query("20240731T000000Z", None, parent="VTODO"))


RECURRING_WITH_ALARMS = calendar(
    *component("VEVENT", f"DTSTART:{D}100000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=10",
               "EXDATE:20240113T100000Z", subs=alarm("TRIGGER:-PT15M")),
    *component("VEVENT", "RECURRENCE-ID:20240115T100000Z", "DTSTART:20240115T140000Z", "DURATION:PT1H"),
    *component("VEVENT", "RECURRENCE-ID:20240116T100000Z", "DTSTART:20240116T100000Z", "DURATION:PT1H",
               subs=alarm("TRIGGER:-PT1H")),
)


@pytest.mark.parametrize(("start", "end", "hit"), [
    ("20240112T094500Z", "20240112T094600Z", True),    # an ordinary instance's alarm
    ("20240113T094500Z", "20240113T094600Z", False),   # excluded by EXDATE
    ("20240115T094500Z", "20240115T094600Z", False),   # overridden, the override has no alarm
    ("20240115T134500Z", "20240115T134600Z", False),   # ... not even at its new time
    ("20240116T090000Z", "20240116T090100Z", True),    # the override's own alarm
    ("20240116T094500Z", "20240116T094600Z", False),   # ... which replaces the master's
    ("20240119T094500Z", "20240119T094600Z", True),    # the last instance
    ("20240120T094500Z", "20240120T094600Z", False),   # past COUNT
])
def test_alarms_of_recurring_instances(start: str, end: str, hit: bool) -> None:
    assert matches(RECURRING_WITH_ALARMS, alarm_query(start, end)) is hit


@pytest.mark.parametrize("start,end,hit", [
    ("20240119T094500Z", None, True),     # from the last instance's alarm on
    ("20240120T000000Z", None, False),    # after every alarm
    (None, "20240110T094600Z", True),     # up to the first alarm
    (None, "20240110T094500Z", False),    # before every alarm
])
def test_alarms_of_recurring_instances_with_an_open_ended_range(start: str | None, end: str | None,
                                                                hit: bool) -> None:
    """An open end is year 1 or 9999; widening it by the alarms' reach overflowed (a 500)."""
    assert matches(RECURRING_WITH_ALARMS, alarm_query(start, end)) is hit


def test_alarm_and_component_ranges_must_hold_for_the_same_instance() -> None:
    parent = window("20240112T000000Z", "20240113T000000Z")
    assert matches(RECURRING_WITH_ALARMS, alarm_query("20240112T094500Z", "20240112T094600Z",
                                                      parent_range=parent))
    assert not matches(RECURRING_WITH_ALARMS, alarm_query("20240114T094500Z", "20240114T094600Z",
                                                          parent_range=parent))


def test_alarm_filter_with_a_property_condition() -> None:
    data = event(*MEETING, subs=alarm("TRIGGER:-PT15M"))
    display = (PropFilter("ACTION", text_match=TextMatch("DISPLAY", match_type="equals")),)
    audio = (PropFilter("ACTION", text_match=TextMatch("AUDIO")),)
    assert matches(data, alarm_query("0945", "0946", props=display))
    assert not matches(data, alarm_query("0945", "0946", props=audio))


def test_absolute_alarm_on_a_recurring_event() -> None:
    data = event(f"DTSTART:{D}100000Z", "RRULE:FREQ=DAILY", subs=alarm("TRIGGER;VALUE=DATE-TIME:20240101T080000Z"))
    assert matches(data, alarm_query("20240101T080000Z", "20240101T080001Z"))


def test_alarm_is_not_defined() -> None:
    with_alarm = event(*MEETING, subs=alarm("TRIGGER:-PT15M"))
    without = event(*MEETING)
    flt = query(CompFilter("VEVENT", comp_filters=(CompFilter("VALARM", is_not_defined=True),)))
    assert (matches(with_alarm, flt), matches(without, flt)) == (False, True)


# -- recurrence in comp-filters ---------------------------------------------------------------

BERLIN = (CORPUS / "valid" / "recurring-overrides-exdate-berlin.ics").read_bytes()


@pytest.mark.parametrize(("start", "end", "hit"), [
    ("20240307T083000Z", "20240307T083001Z", True),   # first, winter time
    ("20240425T073000Z", "20240425T073001Z", True),   # summer time
    ("20240425T083000Z", "20240425T090000Z", False),  # winter-time slot on a summer day
    ("20240328T083000Z", "20240328T090000Z", False),  # EXDATE
    ("20240411T000000Z", "20240419T000000Z", False),  # two EXDATEs
    ("20240321T000000Z", "20240322T000000Z", False),  # moved away ...
    ("20240322T130000Z", "20240322T130001Z", True),   # ... to here
    ("20240404T083000Z", "20240404T084500Z", True),   # the longer override
    ("20240502T073000Z", "20240502T073001Z", True),   # UNTIL is inclusive
    ("20240509T000000Z", None, False),
    (None, "20240307T083000Z", False),
])
def test_recurring_event_with_overrides_and_exdates(start: str | None, end: str | None, hit: bool) -> None:
    assert in_range(BERLIN, "VEVENT", start, end) is hit


def test_property_and_time_conditions_hold_for_the_same_instance() -> None:
    customer = CompFilter("VEVENT", time_range=window("20240404T000000Z", "20240405T000000Z"),
                          prop_filters=(PropFilter("SUMMARY", text_match=TextMatch("Kunde")),))
    assert matches(BERLIN, query(customer))
    other_week = CompFilter("VEVENT", time_range=window("20240314T000000Z", "20240315T000000Z"),
                            prop_filters=customer.prop_filters)
    assert not matches(BERLIN, query(other_week))


def test_an_endless_rule_matches_an_open_range_far_ahead() -> None:
    data = event("DTSTART;TZID=Europe/Berlin:20200101T090000", "DURATION:PT1H", "RRULE:FREQ=DAILY")
    assert in_range(data, "VEVENT", "21500101T000000Z", None)
    assert in_range(data, "VEVENT", "20240101T000000Z", None)
    assert not in_range(data, "VEVENT", None, "20200101T080000Z")


def test_a_recurrence_too_dense_to_expand_is_listed_rather_than_left_out() -> None:
    data = event("DTSTART:20240101T000000Z", "RRULE:FREQ=SECONDLY")
    assert in_range(data, "VEVENT", "20240601T000000Z", "20240601T000005Z")
    assert in_range(data, "VEVENT", "20300601T000000Z", None)


def test_thisandfuture_moves_later_instances() -> None:
    data = (CORPUS / "valid" / "recurring-thisandfuture.ics").read_bytes()
    assert in_range(data, "VEVENT", "20240614T080000Z", "20240614T080001Z")
    assert not in_range(data, "VEVENT", "20240617T080000Z", "20240617T090000Z")
    assert in_range(data, "VEVENT", "20240617T104000Z", "20240617T104100Z")


# -- floating times and the calendar's time zone ---------------------------------------------

def test_floating_times_are_utc_unless_a_zone_is_given() -> None:
    data = (CORPUS / "valid" / "floating-event.ics").read_bytes()  # 12:00-13:00 floating
    new_york = ZoneInfo("America/New_York")
    assert in_range(data, "VEVENT", "20240510T120000Z", "20240510T120100Z")
    assert not in_range(data, "VEVENT", "20240510T160000Z", "20240510T170000Z")
    assert in_range(data, "VEVENT", "20240510T160000Z", "20240510T170000Z", floating_tz=new_york)
    assert not in_range(data, "VEVENT", "20240510T120000Z", "20240510T130000Z", floating_tz=new_york)


def test_all_day_events_begin_at_midnight_in_the_given_zone() -> None:
    data = (CORPUS / "valid" / "allday-no-dtend.ics").read_bytes()  # 2024-10-03
    tokyo = ZoneInfo("Asia/Tokyo")
    assert in_range(data, "VEVENT", "20241002T150000Z", "20241002T150100Z", floating_tz=tokyo)
    assert not in_range(data, "VEVENT", "20241002T150000Z", "20241002T150100Z")
    assert not in_range(data, "VEVENT", "20241003T150000Z", "20241004T000000Z", floating_tz=tokyo)


def test_recurring_floating_events_honour_the_zone() -> None:
    data = event("DTSTART:20240101T090000", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=5")
    berlin = ZoneInfo("Europe/Berlin")
    assert in_range(data, "VEVENT", "20240103T080000Z", "20240103T080100Z", floating_tz=berlin)
    assert not in_range(data, "VEVENT", "20240103T090000Z", "20240103T093000Z", floating_tz=berlin)


# -- text-match, is-not-defined, param-filter -------------------------------------------------

THUNDERBIRD = (CORPUS / "valid" / "thunderbird-event.ics").read_bytes()  # SUMMARY:Réunion d'équipe
DAVX5 = (CORPUS / "valid" / "davx5-event-new-york.ics").read_bytes()


def summary(tm: TextMatch, name: str = "SUMMARY") -> CompFilter:
    return query(CompFilter("VEVENT", prop_filters=(PropFilter(name, text_match=tm),)))


@pytest.mark.parametrize(("value", "collation", "hit"), [
    ("réunion", "i;ascii-casemap", True),     # ASCII letters fold, é is the same octets
    ("RÉUNION", "i;ascii-casemap", False),    # É does not fold to é in ASCII casemap
    ("RÉUNION", "i;unicode-casemap", True),
    ("re\u0301union", "i;unicode-casemap", True),  # decomposed é
    ("réunion", "i;octet", False),
    ("Réunion", "i;octet", True),
    ("d'équipe", "i;octet", True),
    ("Meeting", "i;unicode-casemap", False),
])
def test_text_match_collations(value: str, collation: str, hit: bool) -> None:
    assert matches(THUNDERBIRD, summary(TextMatch(value, collation=collation))) is hit


def test_text_match_negate() -> None:
    assert matches(THUNDERBIRD, summary(TextMatch("Meeting", negate=True)))
    assert not matches(THUNDERBIRD, summary(TextMatch("réunion", negate=True)))


def test_text_match_needs_the_property() -> None:
    assert not matches(THUNDERBIRD, summary(TextMatch("x", negate=True), name="X-NOT-THERE"))


def test_text_match_on_escaped_text_categories_and_addresses() -> None:
    assert matches(THUNDERBIRD, summary(TextMatch("budget, planning"), name="DESCRIPTION"))
    assert matches(THUNDERBIRD, summary(TextMatch("RÉUNION", collation="i;unicode-casemap"), name="CATEGORIES"))
    assert matches(DAVX5, summary(TextMatch("front-desk@dentist"), name="ATTENDEE"))


def test_text_match_on_any_instance_of_a_repeated_property() -> None:
    assert matches(DAVX5, summary(TextMatch("maria@"), name="ATTENDEE"))
    assert matches(DAVX5, summary(TextMatch("maria@", negate=True), name="ATTENDEE"))


def test_unknown_collation_propagates_even_when_nothing_is_compared() -> None:
    flt = summary(TextMatch("x", collation="i;klingon"), name="X-NOT-THERE")
    with pytest.raises(UnsupportedCollation):
        matches(THUNDERBIRD, flt)
    nested = query(CompFilter("VEVENT", prop_filters=(
        PropFilter("ATTENDEE", param_filters=(ParamFilter("CN", text_match=TextMatch("x", collation="bogus")),)),)))
    with pytest.raises(UnsupportedCollation):
        matches(b"not even iCalendar", nested)


def test_prop_is_not_defined() -> None:
    flt = query(CompFilter("VEVENT", prop_filters=(PropFilter("RRULE", is_not_defined=True),)))
    assert matches(THUNDERBIRD, flt)
    assert not matches((CORPUS / "valid" / "allday-yearly-birthday.ics").read_bytes(), flt)
    # Any VEVENT will do (RFC 4791 §9.7.1): the overrides carry no RRULE.
    assert matches(BERLIN, flt)


def test_comp_is_not_defined() -> None:
    assert matches(THUNDERBIRD, query(CompFilter("VTODO", is_not_defined=True)))
    assert not matches(THUNDERBIRD, query(CompFilter("VEVENT", is_not_defined=True)))
    assert not matches(THUNDERBIRD, query(CompFilter("VTODO")))


@pytest.mark.parametrize(("param", "hit"), [
    (ParamFilter("PARTSTAT", text_match=TextMatch("NEEDS-ACTION", match_type="equals")), True),
    (ParamFilter("PARTSTAT", text_match=TextMatch("DECLINED")), False),
    (ParamFilter("CN", text_match=TextMatch("smith, dds")), True),
    (ParamFilter("RSVP"), True),
    (ParamFilter("X-NOPE", is_not_defined=True), True),
    (ParamFilter("ROLE", is_not_defined=True), False),
    (ParamFilter("X-NOPE"), False),
])
def test_param_filter(param: ParamFilter, hit: bool) -> None:
    flt = query(CompFilter("VEVENT", prop_filters=(PropFilter("ATTENDEE", param_filters=(param,)),)))
    assert matches(DAVX5, flt) is hit


def test_all_conditions_of_a_prop_filter_hold_for_one_property() -> None:
    # The accepted attendee is Maria; the one who must RSVP is the dentist.
    both = PropFilter("ATTENDEE", text_match=TextMatch("maria"),
                      param_filters=(ParamFilter("RSVP"),))
    assert not matches(DAVX5, query(CompFilter("VEVENT", prop_filters=(both,))))


def test_multi_valued_parameter() -> None:
    data = event("DTSTART:20240101T100000Z",
                 'ATTENDEE;DELEGATED-TO="mailto:a@example.org","mailto:b@example.org":mailto:c@example.org')
    param = ParamFilter("DELEGATED-TO", text_match=TextMatch("b@example", collation="i;octet"))
    flt = query(CompFilter("VEVENT", prop_filters=(PropFilter("ATTENDEE", param_filters=(param,)),)))
    assert matches(data, flt)


# -- prop-filter time-range -------------------------------------------------------------------

@pytest.mark.parametrize(("name", "start", "end", "hit"), [
    ("DTSTAMP", "20240520T163112Z", "20240520T163113Z", True),
    ("DTSTAMP", "20240520T163113Z", None, False),
    ("CREATED", "20240520T000000Z", "20240521T000000Z", True),
    ("LAST-MODIFIED", None, "20240520T163112Z", False),
    ("LAST-MODIFIED", None, "20240520T163113Z", True),
    ("SUMMARY", None, None, False),
])
def test_property_time_range(name: str, start: str | None, end: str | None, hit: bool) -> None:
    flt = query(CompFilter("VEVENT", prop_filters=(PropFilter(name, time_range=window(start, end)),)))
    assert matches(THUNDERBIRD, flt) is hit


def test_completed_time_range_on_a_todo() -> None:
    data = (CORPUS / "valid" / "todo-completed.ics").read_bytes()  # COMPLETED:20240609T191500Z
    def completed(start: str, end: str) -> CompFilter:
        return query(CompFilter("VTODO", prop_filters=(PropFilter("COMPLETED", time_range=window(start, end)),)))
    assert matches(data, completed("20240609T000000Z", "20240610T000000Z"))
    assert not matches(data, completed("20240610T000000Z", "20240611T000000Z"))


def test_property_time_range_on_dates_and_lists() -> None:
    data = event("DTSTART;VALUE=DATE:20240110", "RRULE:FREQ=DAILY;COUNT=5", "EXDATE;VALUE=DATE:20240112,20240113")
    def on(name: str, start: str, end: str) -> bool:
        return matches(data, query(CompFilter("VEVENT", prop_filters=(
            PropFilter(name, time_range=window(start, end)),))))
    assert on("DTSTART", "20240110T230000Z", "20240111T000000Z")
    assert not on("DTSTART", "20240111T000000Z", "20240112T000000Z")
    assert on("EXDATE", "20240113T120000Z", "20240113T130000Z")
    assert not on("EXDATE", "20240114T000000Z", "20240115T000000Z")


# -- the VCALENDAR level ----------------------------------------------------------------------

def test_top_level_filter_must_name_vcalendar() -> None:
    assert matches(THUNDERBIRD, CompFilter("VCALENDAR"))
    assert not matches(THUNDERBIRD, CompFilter("VEVENT"))
    assert not matches(THUNDERBIRD, CompFilter("VCALENDAR", is_not_defined=True))


def test_calendar_level_properties_and_range() -> None:
    prodid = (PropFilter("PRODID", text_match=TextMatch("mozilla")),)
    assert matches(THUNDERBIRD, query(props=prodid))
    assert matches(THUNDERBIRD, CompFilter("VCALENDAR", time_range=window("20240603T120000Z", None)))
    assert not matches(THUNDERBIRD, CompFilter("VCALENDAR", time_range=window("20240604T000000Z", None)))


def test_vtimezone_can_be_filtered_for_but_has_no_time_range() -> None:
    assert matches(THUNDERBIRD, query(CompFilter("VTIMEZONE", prop_filters=(
        PropFilter("TZID", text_match=TextMatch("Europe/Paris", match_type="equals")),))))
    assert not matches(THUNDERBIRD, query(CompFilter("VTIMEZONE", time_range=window(None, None))))


def test_unparseable_data_raises() -> None:
    with pytest.raises(InvalidCalendarData):
        matches(b"garbage", query(CompFilter("VEVENT")))


def test_binary_attachments_are_not_text_matched() -> None:
    data = (CORPUS / "valid" / "large-attachment-200k.ics").read_bytes()
    assert matches(data, summary(TextMatch("agenda")))
    assert not matches(data, summary(TextMatch("A", collation="i;octet"), name="ATTACH"))
