"""The lighter uses of icalendar in core.formats (a PUT's validation and index) come to the same
as the plain ones: every corpus file, valid or invalid, and hand-made edge cases give the same
parse tree, the same index fields and the same precondition with and without each shortcut."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar.parser.content_line import Contentline
from icalendar.parser.ical.component import ComponentIcalParser

from safehold.core.formats import ical, ical_instances, ical_parse, ical_simple, ical_spans
from safehold.core.formats.ical import CalendarInfo, InvalidCalendarData, inspect_calendar
from tests.unit.test_ical import INVALID, VALID, calendar, component, event, todo

# Lines a client may send that are not in the corpus: escapes, colons and quotes in values,
# empty values, odd names, and lines with parameters (which keep icalendar's own split).
EDGE_LINES = [
    "UID:a\\,b\\;c\\\\d\\ne", "URL:http://example.org/a%3Ab?c=d:e", 'X-QUOTE:"a;b:c"', "SUMMARY:\\",
    "DTSTART:", "RRULE:FREQ=WEEKLY;COUNT=3;BYDAY=MO,TU", "X-A-B-C:1", "x-lower:v", "Dtend:20240101T110000Z",
    "DESCRIPTION;LANGUAGE=en:a:b", 'ATTENDEE;CN="Doe, J: x":mailto:j@example.org', "SUMMARY;:x",
    "GEO:1.5;2.5", "CATEGORIES:a,b\\,c", "RDATE:20240102T100000Z,20240103T100000Z",
    "EXDATE:20240108T100000Z", "DURATION:PT1H", "SEQUENCE:two", "TRIGGER:-PT15M", "NAME WITH SPACE:x",
    "DTEND;tzid=Europe/Berlin:20240101T120000", "EXDATE;Tzid=America/New_York:20240108T100000",
    "RDATE;VALUE=PERIOD;TZID=Europe/Paris:20240105T100000/PT1H", "X-TZID:Europe/Berlin",
    "DUE;VALUE=DATE:20240102", "X-NUM;VALUE=INTEGER:5", "ATTACH;VALUE=BINARY;ENCODING=BASE64:AAAA",
    "DTEND;VALUE=DATE,TEXT:20240102", "X-A;VALUE=x-unknown:1", "UID:", "RECURRENCE-ID:20240101T100000Z",
]
# Calendar-level lines, in a VCALENDAR around a plain event.
TOP_LINES = ["CALSCALE:", "CALSCALE:gregorian", "CALSCALE:JULIAN", "calscale:GREGORIAN", "METHOD:PUBLISH",
             "X-WR-TIMEZONE:Europe/Berlin", "x-wr-timezone:Nowhere/Else"]
EDGE_EVENTS = [event("DTSTART:20240101T100000Z", line) for line in EDGE_LINES] + [
    todo("DTSTART:20240101T100000Z", line) for line in EDGE_LINES] + [
    calendar(*component("VEVENT", "DTSTART:20240101T100000"), top=(line,)) for line in TOP_LINES]


def _lines() -> list[str]:
    found = list(EDGE_LINES)
    for path in VALID + INVALID:
        found += ical_parse.logical_lines(ical_parse.decode(path.read_bytes()))
    return found


def _parts(line: Contentline, raw: bool) -> tuple[Any, ...]:
    try:
        name, params, value = line.raw_parts() if raw else line.parts()
    except ValueError as exc:
        return ("error", str(exc))
    return name, type(name), type(params), dict(params), value, type(value)


@pytest.mark.parametrize("raw", [False, True])
def test_a_line_without_parameters_splits_as_icalendar_splits_it(raw: bool) -> None:
    plain = [line for line in _lines() if ical_parse._PLAIN.match(line)]
    assert len(plain) > 300  # most corpus lines take the shortcut
    for line in plain:
        assert _parts(ical_parse._plain_line(line), raw) == _parts(ical_parse._content_line(line), raw), line


@pytest.mark.parametrize("raw", [False, True])
def test_a_begin_or_end_line_splits_as_icalendar_splits_it(raw: bool) -> None:
    lines = [line for line in _lines() if type(ical_parse._line(line)) is ical_parse._BoundaryLine]
    assert len(lines) > 100
    assert {line for line in _lines() if line.startswith(("BEGIN:V", "END:V"))} <= set(lines)
    for line in lines:
        assert _parts(ical_parse._boundary_line(line), raw) == _parts(ical_parse._content_line(line), raw), line


def _tree(data: bytes, **kwargs: bool) -> Any:
    """Everything of a parse that a caller can see, or the precondition it raised."""
    try:
        cal = ical_parse.parse(data, **kwargs)
    except InvalidCalendarData as exc:
        return exc.precondition, str(exc)
    return [(comp.name, comp.errors, [(name, type(prop).__name__, prop.to_ical(), dict(prop.params))
                                      for name, values in comp.items()
                                      for prop in ical_parse.as_list(values)])
            for comp in cal.walk()]


def _outcome(data: bytes) -> CalendarInfo | str:
    try:
        return inspect_calendar(data)
    except InvalidCalendarData as exc:
        return exc.precondition


CASES = [path.read_bytes() for path in VALID + INVALID] + EDGE_EVENTS
IDS = [path.name for path in VALID + INVALID] + [f"event {line}" for line in EDGE_LINES] + [
    f"todo {line}" for line in EDGE_LINES] + [f"calendar {line}" for line in TOP_LINES]


def _folded_get(comp: Any, name: str) -> Any:
    return comp.get(name)


def _folded_has(comp: Any, name: str) -> bool:
    return name in comp


# Each shortcut, and how to go without it: (module or class, attribute, the plain use).
PLAIN_USES: dict[str, list[tuple[Any, str, Any]]] = {
    "split at the first colon": [(ical_parse, "_plain_line", Contentline)],
    "BEGIN and END lines read as they are": [(ical_parse, "_boundary_line", Contentline)],
    "zones only when a line may name one": [(ical_parse, "_may_name_zones", lambda lines: True)],
    "value types looked up once": [(ical_parse._LocalParser, "get_factory_for_property",
                                    ComponentIcalParser.get_factory_for_property)],
    "date and time values without parameters of their own": [
        (ical_parse._LocalParser, "parse_and_add_property", ComponentIcalParser.parse_and_add_property)],
    "plain dict lookups of properties": [
        (module, name, plain) for module in (ical, ical_instances, ical_parse, ical_spans)
        for name, plain in (("prop", _folded_get), ("has", _folded_has)) if hasattr(module, name)],
}


@pytest.mark.parametrize("shortcut", PLAIN_USES)
@pytest.mark.parametrize("data", CASES, ids=IDS)
def test_a_shortcut_changes_no_parse_and_no_outcome(data: bytes, shortcut: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    lean = [_tree(data), _tree(data, slim=True, for_index=True), _outcome(data)]
    for use in PLAIN_USES[shortcut]:
        monkeypatch.setattr(*use)
    assert [_tree(data), _tree(data, slim=True, for_index=True), _outcome(data)] == lean


@pytest.mark.parametrize("data", CASES, ids=IDS)
def test_all_shortcuts_together_change_no_parse_and_no_outcome(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    lean = [_tree(data), _tree(data, slim=True, for_index=True), _outcome(data)]
    for uses in PLAIN_USES.values():
        for use in uses:
            monkeypatch.setattr(*use)
    assert [_tree(data), _tree(data, slim=True, for_index=True), _outcome(data)] == lean


def test_the_edge_cases_reach_both_outcomes() -> None:
    outcomes = [_outcome(data) for data in EDGE_EVENTS]
    assert any(isinstance(o, CalendarInfo) for o in outcomes)
    assert "valid-calendar-data" in outcomes


@pytest.mark.parametrize(("line", "expected"), [
    ("CALSCALE:", "valid-calendar-data"), ("CALSCALE:gregorian", "VEVENT"), ("CALSCALE:JULIAN", "valid-calendar-data"),
    ("calscale:GREGORIAN", "VEVENT"), ("METHOD:PUBLISH", "valid-calendar-object-resource")])
def test_calendar_level_lines_keep_their_outcome(line: str, expected: str) -> None:
    # The shortcuts are compared with the plain uses above; these pin the outcome itself.
    found = _outcome(calendar(*component("VEVENT", "DTSTART:20240101T100000Z"), top=(line,)))
    assert (found.component if isinstance(found, CalendarInfo) else found) == expected


# Recurring objects of every kind, for the plain-series shortcut (ical._plain_series): each is
# indexed with and without it, and must come out the same, down to the precondition's message.
def _stamp(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%SZ")


_EDGE_START = ical_instances.HORIZON_START + ical_spans.NEAR_HORIZON  # event_spans' first start
_EDGE_END = ical_instances.HORIZON_END - ical_spans.NEAR_HORIZON  # and its last end
RECURRING_STARTS = [
    "DTSTART:20260105T100000Z", "DTSTART;TZID=UTC:20260105T100000", "DTSTART:20260105T100000",
    "DTSTART;TZID=Europe/Berlin:20260105T100000", "DTSTART;TZID=Custom:20260105T100000",
    "DTSTART;VALUE=DATE:20260105", "DTSTART:18000105T100000Z", "DTSTART:21980105T100000Z",
    *(f"DTSTART:{_stamp(_EDGE_START + timedelta(seconds=s))}" for s in (-1, 0, 1)),
]
RECURRING_ENDS = ["DTEND:20260105T110000Z", "DTEND:20260105T100000Z", "DTEND:20260105T090000Z",
                  "DURATION:PT1H", "DURATION:-PT1H", "DURATION:P1D", "", "DTEND;VALUE=DATE:20260106",
                  "DTEND;TZID=Europe/Berlin:20260105T120000", "DTEND:20260105T110000"]
RULES = [
    "FREQ=WEEKLY;COUNT=10", "FREQ=DAILY;COUNT=1", "FREQ=DAILY;INTERVAL=3;COUNT=1000",
    "FREQ=DAILY;COUNT=1001", "FREQ=WEEKLY;COUNT=10000", "FREQ=WEEKLY;COUNT=10001", "freq=weekly;count=4",
    "FREQ=WEEKLY;UNTIL=20260301T000000Z", "FREQ=WEEKLY;UNTIL=20260302T100000Z", "FREQ=WEEKLY;BYDAY=TU;UNTIL=20260105T100000Z",
    "FREQ=WEEKLY;UNTIL=20260301",
    "FREQ=WEEKLY;UNTIL=20260301T000000", "FREQ=WEEKLY;UNTIL=20250101T000000Z", "FREQ=WEEKLY",
    "FREQ=DAILY;UNTIL=20290101T000000Z", "FREQ=DAILY;UNTIL=20281001T100000Z", "FREQ=WEEKLY;UNTIL=22100101T000000Z",
    "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=9", "FREQ=WEEKLY;BYDAY=TU;COUNT=3", "FREQ=WEEKLY;BYDAY=TU;UNTIL=20260120T100000Z",
    "FREQ=WEEKLY;INTERVAL=2;WKST=SU;BYDAY=MO,SU;COUNT=8", "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;UNTIL=20300101T000000Z",
    "FREQ=MONTHLY;BYMONTHDAY=31;COUNT=12", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;COUNT=3",
    "FREQ=MONTHLY;BYDAY=-1FR;UNTIL=20270101T000000Z", "FREQ=YEARLY;COUNT=300", "FREQ=HOURLY;COUNT=5",
    "FREQ=WEEKLY;BYSETPOS=1;BYDAY=MO,TU;COUNT=4", "FREQ=WEEKLY;INTERVAL=0;COUNT=3", "FREQ=WEEKLY;COUNT=-1",
    "FREQ=WEEKLY;COUNT=0", "FREQ=WEEKLY;COUNT=3;WKST=XX", "FREQ=FORTNIGHTLY;COUNT=2",
    "FREQ=WEEKLY;COUNT=2;COUNT=3", "FREQ=DAILY;INTERVAL=2;INTERVAL=3;COUNT=4", "FREQ=WEEKLY;COUNT=5;UNTIL=20260301T000000Z",
    "FREQ=WEEKLY;COUNT=x", "FREQ=WEEKLY;X-NAME=1;COUNT=2", "COUNT=3", "FREQ=;COUNT=3", "FREQ=DAILY,WEEKLY;COUNT=3",
    "FREQ=WEEKLY;COUNT=3;", "FREQ=WEEKLY;INTERVAL=;COUNT=3", "FREQ=DAILY;INTERVAL=0;BYHOUR=3;COUNT=2",
    "FREQ=MONTHLY;BYDAY=8MO;COUNT=3", "FREQ=WEEKLY;BYDAY=MO;UNTIL=22100101T000000Z",
]
# Beside each rule, in a VEVENT starting and ending as the first of the lists above.
RECURRING_EXTRAS = [
    ("EXDATE:20260112T100000Z",), ("RDATE:20260120T100000Z",), ("RRULE:FREQ=DAILY;COUNT=2",),
    ("EXRULE:FREQ=WEEKLY;COUNT=2",), ("RECURRENCE-ID:20260112T100000Z",), ("SEQUENCE:2",),
    ("DTEND:20260105T120000Z",), ("DURATION:PT2H",), ("DTSTART:20260106T100000Z",),
]
OVERRIDE = component("VEVENT", "RECURRENCE-ID:20260112T100000Z", "DTSTART:20260112T150000Z",
                     "DTEND:20260112T160000Z")


def _recurring_cases(rule: str) -> list[bytes]:
    cases = [event(start, *([end] if end else []), f"RRULE:{rule}")
             for start in RECURRING_STARTS for end in RECURRING_ENDS]
    cases += [event(RECURRING_STARTS[0], RECURRING_ENDS[0], f"RRULE:{rule}", *extra) for extra in RECURRING_EXTRAS]
    cases.append(calendar(*component("VEVENT", RECURRING_STARTS[0], RECURRING_ENDS[0], f"RRULE:{rule}"), *OVERRIDE))
    cases.append(todo(RECURRING_STARTS[0], "DUE:20260105T110000Z", f"RRULE:{rule}"))
    # Ends at event_spans' last end, a second either side (a single instance: COUNT=1).
    if rule == "FREQ=DAILY;COUNT=1":
        cases += [event(f"DTSTART:{_stamp(_EDGE_END - timedelta(hours=1))}",
                        f"DTEND:{_stamp(_EDGE_END + timedelta(seconds=s))}", f"RRULE:{rule}") for s in (-2, -1, 0)]
    return cases


def _full_outcome(data: bytes) -> str:
    try:
        return repr(inspect_calendar(data))
    except InvalidCalendarData as exc:
        return repr((exc.precondition, str(exc)))


@pytest.mark.parametrize("rule", RULES)
def test_a_plain_series_is_indexed_as_the_general_path_indexes_it(rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = _recurring_cases(rule)
    lean = [_full_outcome(data) for data in cases]
    monkeypatch.setattr(ical, "_plain_series", lambda components: None)
    assert [_full_outcome(data) for data in cases] == lean


def test_the_plain_series_cases_reach_the_shortcut() -> None:
    # Not vacuous: the comparison above met the shortcut, with spans and without.
    for rule in ("FREQ=WEEKLY;COUNT=10", "FREQ=WEEKLY;UNTIL=20260301T000000Z", "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=9",
                 "FREQ=MONTHLY;BYMONTHDAY=31;COUNT=12", "FREQ=DAILY;COUNT=1"):
        cases = _recurring_cases(rule)
        found = [ical._plain_series(ical._object_components(ical_parse.parse(data, slim=True, for_index=True)))
                 for data in cases if not isinstance(_outcome(data), str)]
        assert sum(f is not None and f[2] is not None for f in found) >= 10, rule
    found = [ical._plain_series(ical._object_components(ical_parse.parse(data, slim=True, for_index=True)))
             for data in _recurring_cases("FREQ=DAILY;COUNT=1001")]
    assert any(f is not None and f[2] is None for f in found)


# A simple event read without icalendar (ical_simple): every case is indexed with and without
# the shortcut and must come out the same, down to the precondition's message.
SIMPLE_STARTS = [
    "DTSTART:20260105T100000Z", "DTSTART:20260105T100000", "DTSTART:20260105", "DTSTART:20261305T100000Z",
    "DTSTART:20260105T250000Z", "DTSTART:2026010", "DTSTART:20260105T100000z", "DTSTART:２０２６０１０５",
    "DTSTART:00010101T000000Z", "DTSTART:99991231T235959Z", "DTSTART:00010101", "DTSTART:99991231",
    "dtstart:20260105T100000Z", "DTSTART;VALUE=DATE:20260105", "DTSTART;TZID=Europe/Berlin:20260105T100000",
    "DTSTART:20260105T100000Z ", "DTSTART:P1D", "",
]
SIMPLE_ENDS = ["DTEND:20260105T110000Z", "DTEND:20260105T090000Z", "DTEND:20260105", "DTEND:20260106",
               "DTEND:20260105T110000", "DTEND:99991231T235959Z", "DTEND:", "DURATION:PT1H", "Dtend:20260105T110000Z", ""]
SIMPLE_EXTRAS = [
    (), ("DTSTART:20260106T100000Z",), ("DTEND:20260105T120000Z", "DTEND:20260105T130000Z"), ("UID:second",),
    ("CREATED:20250101T000000Z",), ("CREATED:20250101",), ("CREATED:20250101T000000",), ("CREATED:20251301T000000Z",),
    ("CREATED:x",), ("SEQUENCE:0",), ("SEQUENCE:12",), ("SEQUENCE:+1",), ("SEQUENCE: 1",), ("SEQUENCE:x",),
    ("SEQUENCE:²",), ("SEQUENCE:",), ("SEQUENCE:2147483647",), ("SEQUENCE:2147483648",), ("SEQUENCE:" + "0" * 11,),
    ("SEQUENCE:" + "9" * 4301,), ("SUMMARY:a\\,b",), ("STATUS:CONFIRMED",), ("X-APPLE-TRAVEL:1",),
    ("X-WR-TIMEZONE:Europe/Berlin",), ("RRULE:FREQ=DAILY;COUNT=2",), ("RDATE:20260107T100000Z",),
    ("EXDATE:20260107T100000Z",), ("RECURRENCE-ID:20260105T100000Z",), ("URL:http://example.org/",), ("GEO:1;2",),
    ("ATTENDEE:mailto:a@example.org",), ("ORGANIZER;CN=x:mailto:a@example.org",), ("DUE:20260105T110000Z",),
    ("TRIGGER:-PT15M",), ("PRIORITY:x",), ("DTSTAMP:x",), ("LAST-MODIFIED:20250101T000000Z",),
]
SIMPLE_UIDS = ["test-uid@example.org", "a,b;c:d", " spaced ", "a\\,b", "", "ü-uid", "UID"]
SIMPLE_TOPS = [(), ("CALSCALE:GREGORIAN",), ("CALSCALE:gregorian",), ("CALSCALE:GREGORIAN", "CALSCALE:GREGORIAN"),
               ("CALSCALE:JULIAN",), ("CALSCALE:",), ("METHOD:PUBLISH",), ("X-WR-TIMEZONE:Europe/Berlin",),
               ("X-WR-CALNAME:Work",), ("DTSTAMP:20240101T000000Z",), ("UID:x",), ("SUMMARY:x",)]
_PLAIN_EVENT = component("VEVENT", "DTSTART:20260105T100000Z", "DTEND:20260105T110000Z")
_PLAIN_BYTES = calendar(*_PLAIN_EVENT)
SIMPLE_SHAPES = [
    calendar(*_PLAIN_EVENT, *_PLAIN_EVENT), calendar(*_PLAIN_EVENT, *component("VTODO")),
    calendar(*component("VTIMEZONE", "TZID:X"), *_PLAIN_EVENT),
    calendar(*component("VEVENT", "DTSTART:20260105T100000Z", subs=("BEGIN:VALARM", "TRIGGER:-PT5M", "END:VALARM"))),
    calendar(*component("VTODO", "DTSTART:20260105T100000Z")), calendar(*component("VJOURNAL", "DTSTART:20260105")),
    calendar(*component("X-THING", "DTSTART:20260105"), *_PLAIN_EVENT), calendar(),
    _PLAIN_BYTES.replace(b"BEGIN:VEVENT", b"begin:VEVENT"), _PLAIN_BYTES.replace(b"END:VEVENT", b"END:vevent"),
    _PLAIN_BYTES.replace(b"BEGIN:VEVENT", b"BEGIN:VEVENT "), _PLAIN_BYTES.replace(b"END:VCALENDAR", b"end:VCALENDAR"),
    _PLAIN_BYTES.replace(b"BEGIN:VCALENDAR", b"BEGIN:vcalendar"), _PLAIN_BYTES.replace(b"\r\n", b"\n"),
    _PLAIN_BYTES.replace(b"\r\n", b"\r"), _PLAIN_BYTES.replace(b"UID:test", b"UID:te\r\n st"),
    _PLAIN_BYTES.replace(b"DTSTART:2026", b"DTSTART:20\r\n\t26"), b"\xef\xbb\xbf" + _PLAIN_BYTES,
    _PLAIN_BYTES.replace(b"UID:test", b"UID:\xfftest"), _PLAIN_BYTES.replace(b"DTSTAMP", b"SUMMARY:\x00\r\nDTSTAMP"),
    _PLAIN_BYTES.replace(b"END:VEVENT\r\n", b"END:VEVENT\r\n\r\n  \r\n"), _PLAIN_BYTES + b"X-AFTER:1\r\n",
    _PLAIN_BYTES + _PLAIN_BYTES, b"X-BEFORE:1\r\n" + _PLAIN_BYTES, _PLAIN_BYTES.replace(b"END:VEVENT\r\n", b""),
    _PLAIN_BYTES.replace(b"END:VCALENDAR\r\n", b""), _PLAIN_BYTES.replace(b"\r\nEND:VCALENDAR\r\n", b"\r\nEND:VCALENDAR"),
    _PLAIN_BYTES.replace(b"END:VEVENT", b"END:VEVENT\r\nEND:VEVENT"), _PLAIN_BYTES.replace(b"UID:", b"UID;X=1:"),
    _PLAIN_BYTES.replace(b"DTSTAMP:", b"NAME WITH SPACE:x\r\nDTSTAMP:"), _PLAIN_BYTES.replace(b"DTSTAMP:", b":x\r\nDTSTAMP:"),
]


def _simple_event(data: bytes) -> ical_simple.SimpleEvent | None:
    return ical_simple.simple_event(ical_parse.decode(data))


def _simple_cases() -> list[bytes]:
    cases = [event(*[line for line in (start, end) if line]) for start in SIMPLE_STARTS for end in SIMPLE_ENDS]
    cases += [event(SIMPLE_STARTS[0], SIMPLE_ENDS[0], *extra) for extra in SIMPLE_EXTRAS]
    cases += [event(SIMPLE_STARTS[0], SIMPLE_ENDS[0], uid=uid) for uid in SIMPLE_UIDS]
    cases += [calendar(*_PLAIN_EVENT, top=top) for top in SIMPLE_TOPS]
    return cases + SIMPLE_SHAPES + CASES


def _simple_series_cases(rule: str) -> list[bytes]:
    """Recurring events of each shape the simple path reads (and some it leaves)."""
    cases = [event(*[line for line in (start, end) if line], f"RRULE:{rule}")
             for start in SIMPLE_STARTS[:4] + RECURRING_STARTS[8:] for end in SIMPLE_ENDS[:5] + [""]]
    return cases + [event(SIMPLE_STARTS[0], SIMPLE_ENDS[0], f"RRULE:{rule}", *extra) for extra in SIMPLE_EXTRAS[:12]]


def test_a_simple_event_is_indexed_as_the_full_parse_indexes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = _simple_cases()
    lean = [_full_outcome(data) for data in cases]
    monkeypatch.setattr(ical_simple, "simple_event", lambda data: None)
    full = [_full_outcome(data) for data in cases]
    assert [(data, found) for data, found, want in zip(cases, lean, full, strict=True) if found != want] == []


@pytest.mark.parametrize("rule", RULES)
def test_a_simple_series_is_indexed_as_the_full_parse_indexes_it(rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = _simple_series_cases(rule)
    lean = [_full_outcome(data) for data in cases]
    monkeypatch.setattr(ical_simple, "simple_event", lambda data: None)
    full = [_full_outcome(data) for data in cases]
    assert [(data, found) for data, found, want in zip(cases, lean, full, strict=True) if found != want] == []


def test_the_simple_series_cases_reach_the_shortcut() -> None:
    # Not vacuous: recurring events took the simple path, with spans and without.
    found = [_simple_outcome(event) for rule in RULES for data in _simple_series_cases(rule)
             if (event := _simple_event(data)) is not None and event.rule is not None]
    assert sum(isinstance(f, CalendarInfo) and f.spans is not None for f in found) >= 100
    assert any(isinstance(f, CalendarInfo) and f.recurring and f.spans is None for f in found)
    assert "walked" in found and "refused" in found  # declined after the walk; refused at once


def _simple_outcome(event: ical_simple.SimpleEvent) -> CalendarInfo | str | None:
    try:
        info, walked = ical._simple(event, False)
    except InvalidCalendarData:
        return "refused"
    return "walked" if walked else info


def test_the_simple_cases_reach_the_shortcut() -> None:
    # Not vacuous: the comparison above met the shortcut often, and with each kind of time.
    taken = [data for data in _simple_cases() if _simple_event(data) is not None]
    assert len(taken) >= 40
    kinds = {tuple(type(t).__name__ + ("Z" if getattr(t, "tzinfo", None) else "") for t in found[1:3])
             for data in taken if (found := _simple_event(data)) is not None}
    assert {("datetimeZ", "datetimeZ"), ("datetime", "datetime"), ("date", "date"), ("datetimeZ", "date")} <= kinds
    assert _simple_event(_PLAIN_BYTES) == (
        "test-uid@example.org", datetime(2026, 1, 5, 10, tzinfo=UTC), datetime(2026, 1, 5, 11, tzinfo=UTC), None)
    # What the benchmark and UTC-only clients write: free text with escapes, a DTSTAMP.
    assert _simple_event(event("DTSTART:20261030T161500Z", "DTEND:20261030T171500Z", "SUMMARY:Meeting",
                                          "LOCATION:Room 4", "DESCRIPTION:Agenda: plans\\, numbers")) is not None


_EVENT_POOL = [line for line in SIMPLE_STARTS + SIMPLE_ENDS if line] + [
    line for extra in SIMPLE_EXTRAS for line in extra] + [f"UID:{uid}" for uid in SIMPLE_UIDS] + EDGE_LINES + [
    f"RRULE:{rule}" for rule in RULES]
_TOP_POOL = [line for top in SIMPLE_TOPS for line in top] + TOP_LINES


@settings(max_examples=400, deadline=None, database=None)
@given(lines=st.lists(st.sampled_from(_EVENT_POOL), max_size=6),
       top=st.lists(st.sampled_from(_TOP_POOL), max_size=2),
       ending=st.sampled_from(["\r\n", "\n", "\r"]))
def test_mixed_lines_are_indexed_as_the_full_parse_indexes_them(lines: list[str], top: list[str],
                                                                 ending: str) -> None:
    data = event(*lines).replace(b"\r\n", ending.encode())
    data = data.replace(b"PRODID", "".join(f"{line}{ending}" for line in top).encode() + b"PRODID")
    lean = _full_outcome(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ical_simple, "simple_event", lambda data: None)
        assert _full_outcome(data) == lean
