"""core.formats.ical: validation and index fields (inspect_calendar), over a corpus of real
client payloads and hand-made edge cases. Filters, expansion and free-busy have their own files;
the small builders here are shared with them."""

from __future__ import annotations

import time

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest

from safehold.core.formats import ical, ical_instances, ical_parse, ical_simple
from safehold.core.formats.ical import CalendarInfo, CompFilter, InvalidCalendarData, PropFilter, inspect_calendar
from safehold.core.formats.textmatch import TextMatch

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "ical"
VALID = sorted((CORPUS / "valid").glob("*.ics"))
INVALID = sorted((CORPUS / "invalid").glob("*.ics"))
SECOND = timedelta(seconds=1)


def at(text: str) -> datetime:
    """20240101T100000Z -> aware UTC datetime."""
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def calendar(*lines: str, top: tuple[str, ...] = ()) -> bytes:
    """A VCALENDAR around ``lines`` (whole components), CRLF-terminated."""
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//safehold tests//EN", *top]
    return "".join(f"{line}\r\n" for line in [*head, *lines, "END:VCALENDAR"]).encode()


def component(name: str, *props: str, uid: str = "test-uid@example.org", subs: tuple[str, ...] = ()) -> list[str]:
    return [f"BEGIN:{name}", f"UID:{uid}", "DTSTAMP:20240101T000000Z", *props, *subs, f"END:{name}"]


def event(*props: str, uid: str = "test-uid@example.org", subs: tuple[str, ...] = ()) -> bytes:
    return calendar(*component("VEVENT", *props, uid=uid, subs=subs))


def todo(*props: str, uid: str = "test-uid@example.org", subs: tuple[str, ...] = ()) -> bytes:
    return calendar(*component("VTODO", *props, uid=uid, subs=subs))


def expect(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    """Index bounds as inspect_calendar reports them: exact instants, one second to spare."""
    return (at(start) - SECOND if start else None, at(end) + SECOND if end else None)


# -- the corpus ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_every_valid_corpus_file_is_accepted_as_it_is(path: Path) -> None:
    data = path.read_bytes()
    info = inspect_calendar(data)
    assert info.component in ("VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY")
    assert info.uid
    for bound in (info.start, info.end):
        assert bound is None or bound.utcoffset() == timedelta(0)
    if info.start is not None and info.end is not None:
        assert info.start <= info.end
    assert ical.matches(data, CompFilter("VCALENDAR", comp_filters=(CompFilter(info.component),)))
    # Nothing to limit means the stored bytes go out untouched.
    assert ical.limit_recurrence_set(data, at("19000101T000000Z"), at("21000101T000000Z")) == data


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_every_invalid_corpus_file_is_refused_with_its_precondition(path: Path) -> None:
    expected = path.name.split("__")[0]
    assert expected in ("valid-calendar-data", "valid-calendar-object-resource")
    with pytest.raises(InvalidCalendarData) as caught:
        inspect_calendar(path.read_bytes())
    assert caught.value.precondition == expected
    assert str(caught.value)


def test_a_nul_byte_is_refused_on_the_way_in_only() -> None:
    """Objects stored before the check must still restore and undelete (stored=True)."""
    from safehold.core.items import CALENDAR, InvalidItem, index_for

    data = (CORPUS / "invalid" / "valid-calendar-data__nul-in-uid.ics").read_bytes()
    with pytest.raises(InvalidItem, match="a NUL byte at line"):
        index_for(CALENDAR, data)
    index = index_for(CALENDAR, data, stored=True)
    assert index is not None and index.uid == inspect_calendar(data, stored=True).uid


@pytest.mark.parametrize("char", ["\x0b", "\x1b", "\x7f"])
def test_other_control_characters_are_stored(char: str) -> None:
    """RFC 5545 §3.1 allows none but HTAB; only NUL is refused (contentlines.nul_byte)."""
    data = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:c-1\r\n"
            b"DTSTART:20260101T100000Z\r\nSUMMARY:a" + char.encode() + b"b\r\nEND:VEVENT\r\n"
            b"END:VCALENDAR\r\n")
    assert inspect_calendar(data).uid == "c-1"


INDEX = {
    # file: (component, start, end, recurring); bounds worked out by hand from the payload
    "ios-event-berlin.ics": ("VEVENT", "20240415T080000Z", "20240415T093000Z", False),
    "davx5-event-new-york.ics": ("VEVENT", "20240312T130000Z", "20240312T134500Z", False),
    "thunderbird-event.ics": ("VEVENT", "20240603T120000Z", "20240603T133000Z", False),
    "outlook-windows-tzid.ics": ("VEVENT", "20240618T080000Z", "20240618T090000Z", False),
    "outlook-customized-time-zone.ics": ("VEVENT", "20240805T040000Z", "20240805T050000Z", False),
    "evolution-globally-unique-tzid.ics": ("VEVENT", "20240710T160000Z", "20240710T180000Z", False),
    "google-event.ics": ("VEVENT", "20240902T160000Z", "20240902T170000Z", False),
    "khal-lf-line-endings.ics": ("VEVENT", "20240920T170000Z", "20240920T190000Z", False),
    "long-folded-lines-non-ascii.ics": ("VEVENT", "20240808T100000Z", "20240808T120000Z", False),
    "large-attachment-200k.ics": ("VEVENT", "20240405T130000Z", "20240405T140000Z", False),
    "bom-and-latin1-bytes.ics": ("VEVENT", "20240301T090000Z", "20240301T100000Z", False),
    "duration-event.ics": ("VEVENT", "20240515T150000Z", "20240515T163000Z", False),
    # X-WR-TIMEZONE turns the floating times into Lisbon time (UTC+1 in July).
    "x-wr-timezone-floating.ics": ("VEVENT", "20240705T190000Z", "20240705T210000Z", False),
    # Floating and DATE values are widened from UTC+14 to UTC-12.
    "floating-event.ics": ("VEVENT", "20240509T220000Z", "20240511T010000Z", False),
    "allday-multiday.ics": ("VEVENT", "20240721T100000Z", "20240803T120000Z", False),
    "allday-no-dtend.ics": ("VEVENT", "20241002T100000Z", "20241004T120000Z", False),
    "allday-yearly-birthday.ics": ("VEVENT", "18151209T100000Z", None, True),
    # 14 mornings at 06:30 New York time; the last one after the switch to EST.
    "dst-daily-new-york.ics": ("VEVENT", "20241028T103000Z", "20241110T123000Z", True),
    # UNTIL 07:30Z is 09:30 Berlin summer time, the last instance; the first is in winter time.
    "recurring-overrides-exdate-berlin.ics": ("VEVENT", "20240307T083000Z", "20240502T080000Z", True),
    # From the 15th on two hours later and 45 minutes long.
    "recurring-thisandfuture.ics": ("VEVENT", "20240610T080000Z", "20240619T104500Z", True),
    "rdate-periods.ics": ("VEVENT", "20240902T170000Z", "20240930T190000Z", True),
    "orphan-override.ics": ("VEVENT", "20240412T140000Z", "20240412T150000Z", True),
    "todo-no-dates.ics": ("VTODO", None, None, False),
    "todo-due-alarm.ics": ("VTODO", "20240715T070000Z", "20240731T160000Z", False),
    "todo-completed.ics": ("VTODO", "20240601T070000Z", "20240609T191500Z", False),
    "todo-recurring.ics": ("VTODO", "20240105T150000Z", "20240322T160000Z", True),
    "journal-jtx.ics": ("VJOURNAL", "20240515T100000Z", "20240517T120000Z", False),
    "freebusy-published.ics": ("VFREEBUSY", "20240610T080000Z", "20240612T170000Z", False),
}


def test_the_expected_index_table_covers_the_whole_corpus() -> None:
    assert sorted(INDEX) == [p.name for p in VALID]


@pytest.mark.parametrize("name", sorted(INDEX))
def test_corpus_index_fields(name: str) -> None:
    component_name, start, end, recurring = INDEX[name]
    info = inspect_calendar((CORPUS / "valid" / name).read_bytes())
    assert (info.component, (info.start, info.end), info.recurring) == (
        component_name, expect(start, end), recurring)


def test_index_fields_of_an_ios_event() -> None:
    info = inspect_calendar((CORPUS / "valid" / "ios-event-berlin.ics").read_bytes())
    assert info == CalendarInfo("VEVENT", "3F1C2B8E-6A0D-4E9B-9C1F-7B5E2A4D9C01",
                                *expect("20240415T080000Z", "20240415T093000Z"), False)


def test_outlook_uid_longer_than_a_line_is_unfolded() -> None:
    info = inspect_calendar((CORPUS / "valid" / "outlook-windows-tzid.ics").read_bytes())
    assert info.uid == ("040000008200E00074C5B7101A82E00800000000D0B1F6C2B8BBDA01000000000000000"
                        "010000000A3E4C8B0A4C2B14B9E3B8D7F1C1A2B3C")


# -- line endings, folding, encodings ---------------------------------------------------------

def test_lf_cr_and_crlf_line_endings_index_alike() -> None:
    data = event("DTSTART:20240101T100000Z", "DTEND:20240101T110000Z")
    infos = {inspect_calendar(data.replace(b"\r\n", sep)) for sep in (b"\r\n", b"\n", b"\r")}
    assert len(infos) == 1


def test_a_fold_inside_a_utf8_sequence_is_undone_before_decoding() -> None:
    summary = "SUMMARY:Grüße".encode()
    cut = summary.index("ü".encode()) + 1  # between the two octets of ü
    data = event("DTSTART:20240101T100000Z").replace(
        b"DTSTART", summary[:cut] + b"\r\n " + summary[cut:] + b"\r\nDTSTART")
    assert ical.matches(data, _summary_contains("Grüße"))


def test_text_that_is_not_utf8_is_indexed_not_refused() -> None:
    data = (CORPUS / "valid" / "bom-and-latin1-bytes.ics").read_bytes()
    assert ical.matches(data, _summary_contains("Besprechung M"))


def _summary_contains(text: str) -> CompFilter:
    return CompFilter("VCALENDAR", comp_filters=(
        CompFilter("VEVENT", prop_filters=(PropFilter("SUMMARY", text_match=TextMatch(text)),)),))


def test_inline_attachments_are_not_read_for_the_index() -> None:
    data = (CORPUS / "valid" / "large-attachment-200k.ics").read_bytes()
    assert len(data) > 200_000
    assert inspect_calendar(data).uid == "with-attachment@example.org"
    assert b"ATTACH;ENCODING=BASE64" in ical.limit_recurrence_set(data, at("20240405T000000Z"),
                                                                   at("20240406T000000Z"))


def test_a_non_recurring_object_is_never_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("expansion is not needed to index a single event")

    monkeypatch.setattr(ical_instances.RecurrenceSet, "__init__", refuse)
    assert inspect_calendar(event("DTSTART:20240101T100000Z")).recurring is False


# -- time zones -------------------------------------------------------------------------------

def _zone(tzid: str, offset: str) -> list[str]:
    return ["BEGIN:VTIMEZONE", f"TZID:{tzid}", "BEGIN:STANDARD", "DTSTART:16010101T000000",
            f"TZOFFSETFROM:{offset}", f"TZOFFSETTO:{offset}", "END:STANDARD", "END:VTIMEZONE"]


def test_a_custom_tzid_means_what_this_object_defines() -> None:
    # Outlook names every custom zone "Customized Time Zone": one object's definition must not
    # leak into another's (icalendar alone would keep the first definition it ever saw).
    name = "Customized Time Zone"
    east = calendar(*_zone(name, "+0500"), *component(
        "VEVENT", f'DTSTART;TZID="{name}":20240101T100000', uid="east"))
    west = calendar(*_zone(name, "-0300"), *component(
        "VEVENT", f'DTSTART;TZID="{name}":20240101T100000', uid="west"))
    assert inspect_calendar(east).start == at("20240101T050000Z") - SECOND
    assert inspect_calendar(west).start == at("20240101T130000Z") - SECOND
    assert inspect_calendar(east).start == at("20240101T050000Z") - SECOND


def test_a_definition_with_vendor_properties_is_used() -> None:
    # X-LIC-LOCATION, TZNAME, TZURL and LAST-MODIFIED are everywhere; dateutil alone refuses X-.
    zone = ["BEGIN:VTIMEZONE", "TZID:Newfoundland Custom", "X-LIC-LOCATION:America/St_Johns",
            "TZURL:http://tzurl.org/zoneinfo/America/St_Johns", "LAST-MODIFIED:20240101T000000Z",
            "BEGIN:STANDARD", "DTSTART:19701101T020000", "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU",
            "TZNAME:NST", "TZOFFSETFROM:-0230", "TZOFFSETTO:-0330", "X-VENDOR:1", "END:STANDARD",
            "BEGIN:DAYLIGHT", "DTSTART:19700308T020000", "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU",
            "TZNAME:NDT", "TZOFFSETFROM:-0330", "TZOFFSETTO:-0230", "END:DAYLIGHT", "END:VTIMEZONE"]
    winter = calendar(*zone, *component("VEVENT", 'DTSTART;TZID="Newfoundland Custom":20240115T100000'))
    summer = calendar(*zone, *component("VEVENT", 'DTSTART;TZID="Newfoundland Custom":20240715T100000'))
    assert inspect_calendar(winter).start == at("20240115T133000Z") - SECOND
    assert inspect_calendar(summer).start == at("20240715T123000Z") - SECOND


def test_a_broken_definition_leaves_the_time_floating() -> None:
    zone = ["BEGIN:VTIMEZONE", "TZID:Half Defined", "BEGIN:STANDARD", "DTSTART:16010101T000000",
            "END:STANDARD", "END:VTIMEZONE"]
    info = inspect_calendar(calendar(*zone, *component("VEVENT", 'DTSTART;TZID="Half Defined":20240101T100000')))
    assert (info.start, info.end) == expect("20231231T200000Z", "20240101T220000Z")


def test_parsing_leaves_icalendars_process_wide_zone_cache_alone() -> None:
    tzid = "Safehold Private Test Zone"
    inspect_calendar(calendar(*_zone(tzid, "+0130"), *component(
        "VEVENT", f'DTSTART;TZID="{tzid}":20240101T100000')))
    assert icalendar.timezone.tzp.timezone(tzid) is None


def test_a_vtimezone_may_follow_the_component_using_it() -> None:
    data = calendar(*component("VEVENT", 'DTSTART;TZID="After Zone":20240101T100000'),
                    *_zone("After Zone", "+0200"))
    assert inspect_calendar(data).start == at("20240101T080000Z") - SECOND


@pytest.mark.parametrize("tzid", ["Europe/Berlin", "W. Europe Standard Time",
                                  "/mozilla.org/20050126_1/Europe/Berlin",
                                  "/freeassociation.sourceforge.net/Tzfile/Europe/Berlin"])
def test_known_zone_spellings_resolve_without_a_vtimezone(tzid: str) -> None:
    info = inspect_calendar(event(f'DTSTART;TZID="{tzid}":20240701T100000'))
    assert info.start == at("20240701T080000Z") - SECOND


def test_an_unusable_x_wr_timezone_is_ignored() -> None:
    data = calendar(*component("VEVENT", "DTSTART:20240701T100000"), top=("X-WR-TIMEZONE:Mars/Olympus_Mons",))
    assert inspect_calendar(data).start == at("20240630T200000Z") - SECOND


def test_an_unknown_tzid_without_definition_is_read_as_floating() -> None:
    info = inspect_calendar(event('DTSTART;TZID="Atlantis/Capital":20240701T100000'))
    assert (info.start, info.end) == expect("20240630T200000Z", "20240701T220000Z")


# -- recurrence bounds -------------------------------------------------------------------------

@pytest.mark.parametrize(("rule", "end"), [
    ("FREQ=DAILY;COUNT=3", "20240103T110000Z"),
    ("FREQ=WEEKLY;UNTIL=20240122T100000Z", "20240122T110000Z"),
    ("FREQ=WEEKLY;UNTIL=20240121T235959Z", "20240115T110000Z"),
    ("FREQ=MONTHLY;BYMONTHDAY=31;COUNT=3", "20240531T110000Z"),  # Jan, Mar, May
    ("FREQ=YEARLY;COUNT=150", "21730101T110000Z"),
    ("FREQ=DAILY;COUNT=10000", "20510518T110000Z"),
    ("FREQ=DAILY", None),
    ("FREQ=DAILY;COUNT=10001", None),
    ("FREQ=HOURLY;UNTIL=20300101T000000Z", None),
    ("FREQ=YEARLY;COUNT=300", None),
    ("FREQ=YEARLY;UNTIL=23000101T000000Z", None),
])
def test_recurrence_end(rule: str, end: str | None) -> None:
    info = inspect_calendar(event("DTSTART:20240101T100000Z", "DTEND:20240101T110000Z", f"RRULE:{rule}"))
    assert info.recurring
    assert (info.start, info.end) == expect("20240101T100000Z", end)


def test_recurrence_follows_local_time_across_dst() -> None:
    info = inspect_calendar(event("DTSTART;TZID=Europe/Berlin:20240301T090000",
                                  "DTEND;TZID=Europe/Berlin:20240301T100000",
                                  "RRULE:FREQ=MONTHLY;COUNT=3"))
    # 1 May, 09:00 summer time = 07:00Z.
    assert (info.start, info.end) == expect("20240301T080000Z", "20240501T080000Z")


def test_an_until_in_utc_with_a_floating_start_is_tolerated() -> None:
    info = inspect_calendar(event("DTSTART:20240101T100000", "RRULE:FREQ=DAILY;UNTIL=20240103T100000Z"))
    assert info.end == at("20240103T100000Z") + timedelta(hours=12) + SECOND


def test_all_day_recurrence_with_date_until() -> None:
    info = inspect_calendar(event("DTSTART;VALUE=DATE:20240101", "RRULE:FREQ=DAILY;UNTIL=20240105"))
    assert info.end == at("20240106T120000Z") + SECOND


def test_rdate_before_dtstart_extends_the_start() -> None:
    info = inspect_calendar(event("DTSTART:20240110T100000Z", "RDATE:20240105T100000Z"))
    assert (info.start, info.end) == expect("20240105T100000Z", "20240110T100000Z")


def test_an_override_moved_before_the_series_extends_the_start() -> None:
    data = calendar(
        *component("VEVENT", "DTSTART:20240110T100000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=2"),
        *component("VEVENT", "RECURRENCE-ID:20240111T100000Z", "DTSTART:20240101T100000Z",
                   "DURATION:PT1H"))
    info = inspect_calendar(data)
    assert (info.start, info.end, info.recurring) == (*expect("20240101T100000Z", "20240111T110000Z"), True)


def test_exdate_keeps_the_object_valid() -> None:
    info = inspect_calendar(event("DTSTART:20240101T100000Z", "RRULE:FREQ=DAILY;COUNT=3",
                                  "EXDATE:20240102T100000Z"))
    assert info.recurring


# -- VTODO, VJOURNAL, VFREEBUSY bounds (RFC 4791 §9.9 rows) -----------------------------------

@pytest.mark.parametrize(("props", "start", "end"), [
    (("DTSTART:20240101T100000Z", "DUE:20240101T120000Z"), "20240101T100000Z", "20240101T120000Z"),
    (("DTSTART:20240101T100000Z", "DURATION:PT2H"), "20240101T100000Z", "20240101T120000Z"),
    (("DTSTART:20240101T100000Z",), "20240101T100000Z", "20240101T100000Z"),
    (("DUE:20240101T120000Z",), "20240101T120000Z", "20240101T120000Z"),
    (("COMPLETED:20240105T120000Z", "CREATED:20240101T080000Z"), "20240101T080000Z", "20240105T120000Z"),
    (("COMPLETED:20240105T120000Z",), "20240105T120000Z", "20240105T120000Z"),
    (("CREATED:20240101T080000Z",), "20240101T080000Z", None),
    ((), None, None),
])
def test_todo_bounds(props: tuple[str, ...], start: str | None, end: str | None) -> None:
    info = inspect_calendar(todo(*props))
    assert (info.component, info.start, info.end) == ("VTODO", *expect(start, end))


def test_journal_without_dtstart_has_no_bounds() -> None:
    info = inspect_calendar(calendar(*component("VJOURNAL", "SUMMARY:note")))
    assert (info.component, info.start, info.end) == ("VJOURNAL", None, None)


def test_freebusy_with_dtstart_and_dtend() -> None:
    info = inspect_calendar(calendar(*component(
        "VFREEBUSY", "DTSTART:20240101T000000Z", "DTEND:20240108T000000Z",
        "FREEBUSY:20240102T100000Z/PT1H")))
    assert (info.start, info.end) == expect("20240101T000000Z", "20240108T000000Z")


# -- refusals that need no corpus file --------------------------------------------------------

@pytest.mark.parametrize(("data", "precondition"), [
    (calendar(*component("VEVENT", "DTSTART:20240101T100000Z"), top=("CALSCALE:JULIAN",)),
     "valid-calendar-data"),
    (calendar(*component("VEVENT", "DTSTART:20240101T100000Z", "RECURRENCE-ID:20240101T100000Z"),
              *component("VEVENT", "DTSTART:20240101T100000Z", uid="other")),
     "valid-calendar-object-resource"),
    (calendar(*component("VEVENT", "DTSTART:20240101T100000Z", uid="")), "valid-calendar-object-resource"),
    (event("DTSTART:20240101T100000Z", "DURATION:soon"), "valid-calendar-data"),
    (event("DTSTART:20240101T100000Z", "EXDATE:yesterday"), "valid-calendar-data"),
    (event("DTSTART:20240101T100000Z", "RRULE:FREQ=DAILY;BYSETPOS=400"), "valid-calendar-data"),
    (event("DTSTART:20240101T100000Z", "SEQUENCE:two"), "valid-calendar-data"),
    (event("DTSTART:20240101T100000Z", "RRULE;VALUE=TEXT:FREQ=DAILY;COUNT=2"), "valid-calendar-data"),
    (event("DTSTART:20240101T100000Z", "RRULE:FREQ=DAILY;COUNT=3", "EXRULE;VALUE=TEXT:FREQ=DAILY"),
     "valid-calendar-data"),
    (todo("DTSTART:20240101T100000Z", "RRULE;VALUE=TEXT:"), "valid-calendar-data"),
    (event("DTSTART:20240101T100000Z").replace(b"END:VEVENT", b"END:VEVENT\r\nBEGIN:VTODO"),
     "valid-calendar-data"),
])
def test_refused(data: bytes, precondition: str) -> None:
    with pytest.raises(InvalidCalendarData) as caught:
        inspect_calendar(data)
    assert caught.value.precondition == precondition


# Rules dateutil would search for until year 9999 (7-12 s of CPU each on the old tree):
# out of range, or matching no date of a 400-year cycle (ical_rules).
NEVER = ["FREQ=DAILY;BYMONTH=13;COUNT=2", "FREQ=MONTHLY;BYMONTHDAY=32", "FREQ=WEEKLY;BYSETPOS=0;BYDAY=MO",
         "FREQ=DAILY;BYHOUR=24", "FREQ=YEARLY;BYWEEKNO=-54", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30;COUNT=2",
         "FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31", "FREQ=YEARLY;BYYEARDAY=100;BYMONTH=1;COUNT=3",
         "FREQ=DAILY;INTERVAL=7;BYDAY=TU;COUNT=3", "FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30;COUNT=2",
         "FREQ=MONTHLY;INTERVAL=12;BYMONTH=2;UNTIL=20300101T000000Z", "FREQ=HOURLY;BYSECOND=60;COUNT=2",
         # Found by helper h6 (the first two never ended, the next two were 500s, the rest took seconds):
         "FREQ=DAILY;INTERVAL=0;BYHOUR=3;COUNT=2", "FREQ=WEEKLY;COUNT=3;INTERVAL=0;BYYEARDAY=-1",
         "FREQ=MONTHLY;BYDAY=8MO;COUNT=3", "FREQ=YEARLY;BYMONTH=3;BYDAY=47MO;COUNT=3",
         "FREQ=SECONDLY;UNTIL=20291230T235959Z;BYSETPOS=10", "FREQ=SECONDLY;BYSETPOS=2;BYSECOND=1,2",
         "FREQ=SECONDLY;BYSETPOS=1;BYMONTH=2;BYMONTHDAY=30", "FREQ=SECONDLY;COUNT=-1;INTERVAL=1",
         "FREQ=YEARLY;BYDAY=54MO;COUNT=3", "FREQ=MINUTELY;BYSECOND=1,1;BYSETPOS=2"]


@pytest.mark.parametrize("rule", NEVER)
def test_a_rule_that_never_occurs_or_is_out_of_range_is_refused(rule: str) -> None:
    for name in ("RRULE", "EXRULE"):
        extra = () if name == "RRULE" else ("RRULE:FREQ=DAILY;COUNT=3",)
        with pytest.raises(InvalidCalendarData) as caught:  # 2024-01-01 is a Monday
            inspect_calendar(event("DTSTART:20240101T100000Z", *extra, f"{name}:{rule}"))
        assert caught.value.precondition == "valid-calendar-data"
        assert f"VEVENT {name}:" in str(caught.value) and "§3.3.10" in str(caught.value)


@pytest.mark.parametrize("rule", [
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;COUNT=3", "FREQ=YEARLY;BYWEEKNO=53;COUNT=2",
    "FREQ=MONTHLY;BYDAY=5FR;COUNT=4", "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=10", "FREQ=MONTHLY;BYMONTHDAY=-31",
    "FREQ=YEARLY;BYYEARDAY=366;COUNT=2", "FREQ=DAILY;INTERVAL=7;BYDAY=MO;COUNT=3",
    "FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=29;BYHOUR=0;BYMINUTE=0;COUNT=2", "FREQ=MONTHLY;BYDAY=8MO,1TU;COUNT=3",
    "FREQ=MONTHLY;BYDAY=MO,TU;BYSETPOS=-1;COUNT=3", "FREQ=DAILY;BYHOUR=9,10;BYSETPOS=2;COUNT=3",
    "FREQ=YEARLY;BYDAY=53MO;COUNT=3", "FREQ=HOURLY;BYMINUTE=0,30;BYSETPOS=-1;COUNT=4", "FREQ=SECONDLY;BYSETPOS=1"])
def test_rare_rules_that_do_occur_are_accepted(rule: str) -> None:
    assert inspect_calendar(event("DTSTART:20240101T100000Z", f"RRULE:{rule}")).recurring


def test_a_rule_sparser_than_the_cycle_is_not_taken_for_one_that_never_occurs() -> None:
    data = event("DTSTART:20240301T100000Z", "RRULE:FREQ=YEARLY;INTERVAL=1000;BYMONTH=1")
    assert inspect_calendar(data).recurring  # January 3024


@pytest.mark.parametrize("data, precondition", [
    (event("DTSTART:202409", "RRULE:FREQ=DAILY;BYHOUR=3"), "valid-calendar-data"),
    (event("DTSTART;VALUE=PERIOD:20240101T100000Z/PT1H", "RRULE:FREQ=DAILY;BYHOUR=3"),
     "valid-calendar-data"),
    (todo("EXRULE:FREQ=DAILY;BYHOUR=3"), None),
])
def test_a_rule_beside_a_bad_or_missing_dtstart_is_answered_as_before(
        data: bytes, precondition: str | None) -> None:
    if precondition is None:
        inspect_calendar(data)
        return
    with pytest.raises(InvalidCalendarData) as caught:
        inspect_calendar(data)
    assert caught.value.precondition == precondition


def test_a_stored_rule_that_never_occurs_is_still_indexed() -> None:
    """Bytes accepted before the check (a restore, an undelete) are never stranded."""
    data = event("DTSTART:20240101T100000Z", "RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30;COUNT=2")
    assert inspect_calendar(data, stored=True).recurring


def test_x_components_and_properties_are_kept_out_of_the_way() -> None:
    data = calendar(*component("VEVENT", "DTSTART:20240101T100000Z", "X-FOO;X-BAR=1:baz", "GEO:not-a-geo"),
                    "BEGIN:X-VENDOR-THING", "X-A:1", "END:X-VENDOR-THING")
    assert inspect_calendar(data).component == "VEVENT"


def test_invalid_calendar_data_is_a_value_error_with_a_message() -> None:
    exc = InvalidCalendarData("valid-calendar-data", "broken")
    assert isinstance(exc, ValueError)
    assert (exc.precondition, str(exc)) == ("valid-calendar-data", "broken")


# -- the parse for the index leaves out free text ---------------------------------------------

def _full_parse(text: str, **kwargs: bool) -> object:
    return ical_parse.parse_text(text, slim=kwargs.get("slim", False))


def _outcome(data: bytes) -> CalendarInfo | str:
    try:
        return inspect_calendar(data)
    except InvalidCalendarData as exc:
        return exc.precondition


@pytest.mark.parametrize("path", VALID + INVALID, ids=lambda p: p.name)
def test_leaving_out_free_text_changes_no_outcome(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = path.read_bytes()
    monkeypatch.setattr(ical_simple, "simple_event", lambda text: None)  # the parse decides
    lean = _outcome(data)
    monkeypatch.setattr(ical, "parse_text", _full_parse)
    assert _outcome(data) == lean


def test_free_text_is_left_out_only_without_parameters() -> None:
    text = ical_parse.decode(event("DTSTART:20240101T100000Z", "SUMMARY:a\\, b", "DESCRIPTION;LANGUAGE=en:c",
                                   "LOCATION:d"))
    lines = ical_parse.content_lines(text, for_index=True)
    assert "DESCRIPTION;LANGUAGE=en:c" in lines
    left_out = [line for line in ical_parse.content_lines(text) if line not in lines]
    assert left_out == ["VERSION:2.0", "PRODID:-//safehold tests//EN", "DTSTAMP:20240101T000000Z",
                        "SUMMARY:a\\, b", "LOCATION:d"]


@pytest.mark.parametrize("line", ['SUMMARY;LANGUAGE="en:Title', "SUMMARY;:x", "DESCRIPTION;A:x"])
@pytest.mark.parametrize("builder", [event, todo])
def test_broken_free_text_lines_are_still_refused(line: str, builder: Callable[..., bytes]) -> None:
    with pytest.raises(InvalidCalendarData) as caught:
        inspect_calendar(builder("DTSTART:20240101T100000Z", line))
    assert caught.value.precondition == "valid-calendar-data"


@pytest.mark.parametrize("line", ["LAST-MODIFIED:garbage", "PRIORITY:high", "STATUS:", "DTSTAMP:x",
                                  "X-MOZ-GENERATION:two", "X-FOO;X-BAR=1:baz"])
def test_vevent_only_lines_left_out_change_no_outcome(line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A VEVENT keeps an unreadable non-critical value as an error it ignores; a VTODO refuses
    # it, but for X- properties.
    cases = [event("DTSTART:20240101T100000Z", line), todo("DTSTART:20240101T100000Z", line)]
    monkeypatch.setattr(ical_simple, "simple_event", lambda text: None)  # the parse decides
    lean = [_outcome(data) for data in cases]
    monkeypatch.setattr(ical, "parse_text", _full_parse)
    assert [_outcome(data) for data in cases] == lean
    assert isinstance(lean[0], CalendarInfo)


def test_x_wr_timezone_is_kept_for_the_index() -> None:
    data = calendar(*component("VEVENT", "DTSTART:20240705T200000", "DTEND:20240705T220000"),
                    top=("X-WR-TIMEZONE:Europe/Lisbon",))
    assert "X-WR-TIMEZONE:Europe/Lisbon" in ical_parse.content_lines(ical_parse.decode(data), for_index=True)
    assert inspect_calendar(data).start == at("20240705T190000Z") - SECOND


def test_a_repeated_dtstart_in_a_lone_event_is_indexed_by_the_first() -> None:
    """RFC 5545 allows DTSTART once; a lone event that repeats it was accepted before the
    check for recurring sets (corpus: valid-calendar-data__recurring-dtstart-twice.ics)
    came, and still is, with its first value indexed."""
    info = inspect_calendar(event("DTSTART:20240101T100000Z", "DTSTART:20240102T100000Z",
                                  "DTEND:20240101T110000Z"))
    assert (info.start, info.end) == expect("20240101T100000Z", "20240101T110000Z")


def test_tzid_with_an_unquoted_comma_is_an_unknown_zone_not_a_crash() -> None:
    """icalendar splits "TZID=Europe/B,erlin" into a list (a list parameter needs
    quoting, RFC 5545 §3.2); the zone lookup then failed with TypeError (a 500 on PUT).
    The value is read back as written: an unknown zone, so the times are floating."""
    data = event("DTSTART;TZID=Europe/B,erlin:20240920T190000", "DTEND;TZID=Europe/B,erlin:20240920T210000")
    info = inspect_calendar(data)
    assert info.start is not None and info.end is not None and info.start < info.end
    assert ical.matches(data, CompFilter("VCALENDAR", comp_filters=(CompFilter("VEVENT"),)))


@pytest.mark.parametrize("rule", ["FREQ=YEARLY;INTERVAL=0;BYMONTH=3;BYDAY=2SU",
                                  "FREQ=SECONDLY", "FREQ=DAILY;INTERVAL=-1"])
def test_a_vtimezone_rule_that_cannot_be_walked_is_an_unknown_zone(rule: str) -> None:
    """dateutil walks an observance's rule from its DTSTART: INTERVAL=0 never ended (a
    PUT held its worker for good) and FREQ=SECONDLY took minutes. Such a definition is
    not read; its TZID is then unknown and the times floating (stored, indexed widely)."""
    zone = ["BEGIN:VTIMEZONE", "TZID:Nowhere",
            "BEGIN:DAYLIGHT", "DTSTART:20070311T020000", f"RRULE:{rule}",
            "TZOFFSETFROM:-0500", "TZOFFSETTO:-0400", "END:DAYLIGHT",
            "BEGIN:STANDARD", "DTSTART:20071104T020000", "TZOFFSETFROM:-0400",
            "TZOFFSETTO:-0500", "END:STANDARD", "END:VTIMEZONE"]
    data = calendar(*zone, *component("VEVENT", "DTSTART;TZID=Nowhere:20261031T220000",
                                      "DURATION:PT1H"))
    began = time.monotonic()
    info = inspect_calendar(data)
    assert time.monotonic() - began < 5
    floating = inspect_calendar(calendar(*component("VEVENT", "DTSTART:20261031T220000",
                                                    "DURATION:PT1H")))
    assert (info.start, info.end) == (floating.start, floating.end)


def test_a_vtimezone_whose_rule_dateutil_cannot_evaluate_is_an_unknown_zone() -> None:
    """dateutil reads a VTIMEZONE's RRULE only at the first conversion; BYMONTH=0 then
    raised ValueError in the middle of indexing (a 500 on PUT). Such a definition is
    unusable: the TZID is resolved as if there were none (here: by its Windows name)."""
    zone = ["BEGIN:VTIMEZONE", "TZID:W. Europe Standard Time",
            "BEGIN:STANDARD", "DTSTART:16011028T030000", "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10",
            "TZOFFSETFROM:+0200", "TZOFFSETTO:+0100", "END:STANDARD",
            "BEGIN:DAYLIGHT", "DTSTART:16010325T020000", "RRULE:FREQ=YEARLY;BYDAY=-2SU;BYMONTH=0",
            "TZOFFSETFROM:+0100", "TZOFFSETTO:+0200", "END:DAYLIGHT", "END:VTIMEZONE"]
    data = calendar(*zone, *component("VEVENT", 'DTSTART;TZID="W. Europe Standard Time":20240618T100000',
                                      'DTEND;TZID="W. Europe Standard Time":20240618T110000'))
    info = inspect_calendar(data)
    # Europe/Berlin in summer (+02:00), with the index's second to spare.
    assert (info.start, info.end) == expect("20240618T080000Z", "20240618T090000Z")


def test_a_zone_named_in_x_wr_timezone_cannot_move_a_time_past_year_9999() -> None:
    # Found by tests/unit/test_ical_lean.py: the move into the zone overflowed (a 500 on PUT).
    data = calendar(*component("VEVENT", "DTSTART:99991231T235959Z"), top=("X-WR-TIMEZONE:Europe/Berlin",))
    with pytest.raises(InvalidCalendarData) as refused:
        inspect_calendar(data)
    assert refused.value.precondition == "valid-calendar-data"


def test_a_rule_running_past_year_9999_is_refused() -> None:
    # Found by helper h6: dateutil's "year 10000 is out of range" was a 500.
    data = event("DTSTART:99991231T235959Z", "RRULE:FREQ=WEEKLY;COUNT=1000;BYMONTHDAY=1,15")
    with pytest.raises(InvalidCalendarData) as refused:
        inspect_calendar(data)
    assert refused.value.precondition == "valid-calendar-data"
