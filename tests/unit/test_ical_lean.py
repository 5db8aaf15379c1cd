"""The lighter uses of icalendar in core.formats (a PUT's validation and index) come to the same
as the plain ones: every corpus file, valid or invalid, and hand-made edge cases give the same
parse tree, the same index fields and the same precondition with and without each shortcut."""

from __future__ import annotations

from typing import Any

import pytest
from icalendar.parser.content_line import Contentline
from icalendar.parser.ical.component import ComponentIcalParser

from safehold.core.formats import ical, ical_instances, ical_parse, ical_spans
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
    "zones only when a line may name one": [(ical_parse, "_may_name_zones", lambda lines: True)],
    "value types looked up once": [(ical_parse._LocalParser, "get_factory_for_property",
                                    ComponentIcalParser.get_factory_for_property)],
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
