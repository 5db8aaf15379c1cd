"""The field diff shown on an item's history page (web.diff): pure, bytes in."""

from __future__ import annotations

from safehold.web.diff import FieldChange, diff, fields
from safehold.web.site import ago, short

OLD = (b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:1\r\nFN:Ada\r\nTEL;TYPE=cell:+1\r\n"
       b"NOTE:first line\\nsecond\\, with a comma that is \r\n folded\r\nREV:2026-01-01\r\nEND:VCARD\r\n")


def test_folded_escaped_fields_are_readable() -> None:
    got = fields(OLD.decode())
    assert got["note"] == ["first line\nsecond, with a comma that is folded"]
    assert got["phone"] == ["+1 (TYPE=cell)"]
    assert "rev" not in got and "REV" not in got  # rewritten by every client: noise


def test_only_changed_fields_are_listed() -> None:
    new = OLD.replace(b"+1", b"+2").replace(b"REV:2026-01-01", b"REV:2026-02-02")
    assert diff(OLD, new) == [FieldChange("phone", ["+1 (TYPE=cell)"], ["+2 (TYPE=cell)"])]
    assert diff(OLD, OLD) == []
    assert diff(None, OLD)[0].before == [] and diff(OLD, None)[0].after == []


def test_event_alarm_fields_name_their_component() -> None:
    ev = (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Lunch\r\nDTSTART:20260101T120000Z\r\n"
          b"BEGIN:VALARM\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    moved = ev.replace(b"-PT15M", b"-PT30M").replace(b"Lunch", b"Long lunch")
    labels = {c.field for c in diff(ev, moved)}
    assert labels == {"title", "VEVENT VALARM trigger"}


def test_huge_bodies_are_summarised() -> None:
    big = b"BEGIN:VCARD\r\nNOTE:" + b"x" * 600_000 + b"\r\nEND:VCARD\r\n"
    assert diff(OLD, big)[0].field == "content"


def test_filters() -> None:
    assert ago(1000.0, now=1000.0 + 3 * 3600) == "3 h ago"
    assert ago(None) == "never"
    assert short("x" * 300).endswith(" …") and short("ok") == "ok"
