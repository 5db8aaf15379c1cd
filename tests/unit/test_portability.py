"""Export/import building blocks: content lines, merging calendar objects into one
.ics and splitting one back, concatenating and splitting vCards, names, the manifest
and the import report. Run against the corpus of real client payloads."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from icalendar import Calendar

from safehold.cli.progress import Progress
from safehold.core import portability as port
from safehold.core.formats import contentlines
from safehold.core.formats.ical import inspect_calendar
from safehold.core.formats.ical_splice import parse_calendars
from safehold.core.formats.vcard import inspect_card
from safehold.errors import ArchiveError

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
ICS = sorted((CORPUS / "ical" / "valid").glob("*.ics"))
VCF = sorted((CORPUS / "vcard" / "valid").glob("*.vcf"))
PRODID = "-//safehold tests//EN"


def ics_name(uid: str) -> str:
    return port.object_name(uid, ".ics")


def vcf_name(uid: str) -> str:
    return port.object_name(uid, ".vcf")


def merge(objects: list[bytes], name: str | None = None, color: str | None = None) -> tuple[bytes, port.CalendarMerger]:
    body = io.BytesIO()
    merger = port.CalendarMerger(body.write)
    for data in objects:
        assert merger.add(data) is None
    return merger.header(PRODID, name, color) + merger.timezones() + body.getvalue() + port.FOOTER, merger


def crlf_lines(data: bytes) -> list[bytes]:
    """Physical lines without their endings and without a BOM: what merging keeps."""
    return [line.removesuffix(b"\r") for line in data.removeprefix(contentlines.BOM).split(b"\n") if line.strip()]


# -- content lines ------------------------------------------------------------------------


def test_lines_keep_folds_and_line_endings() -> None:
    data = contentlines.BOM + b"BEGIN:VCALENDAR\r\nSUMMARY:a long\r\n  line\r\n\r\nX-A;P=\"x:y\":v\nEND:VCALENDAR"
    lines = contentlines.lines(data)
    assert [line.name for line in lines] == ["BEGIN", "SUMMARY", "X-A", "END"]
    assert lines[1].raw == b"SUMMARY:a long\r\n  line\r\n" and lines[1].text == "SUMMARY:a long line"
    assert lines[1].number == 2 and lines[2].number == 5
    assert lines[2].value == "v" and lines[2].raw == b'X-A;P="x:y":v\n'
    assert lines[2].crlf() == b'X-A;P="x:y":v\r\n'
    assert lines[3].raw == b"END:VCALENDAR" and lines[3].crlf() == b"END:VCALENDAR\r\n"
    assert b"".join(data[line.start:line.end] for line in lines) == data[3:].replace(b"\r\n\r\n", b"\r\n")


def test_parse_splits_name_parameters_and_value() -> None:
    name, params, value = contentlines.parse('item1.EMAIL;type=INTERNET;X-Q="a;b:c",d:me@example.org')
    assert name == "EMAIL" and value == "me@example.org"
    assert [(p.name, p.raw) for p in params] == [("TYPE", "type=INTERNET"), ("X-Q", 'X-Q="a;b:c",d')]
    assert contentlines.parse('DTSTART;TZID="Customized Time Zone":20240805T093000')[1][0].value == \
        "Customized Time Zone"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=400))
def test_fold_never_exceeds_75_octets_nor_splits_a_character(text: str) -> None:
    folded = contentlines.fold("SUMMARY:" + text)
    assert all(len(line) <= 75 for line in folded.split(b"\r\n"))
    assert folded.decode("utf-8")  # no UTF-8 sequence was cut
    assert contentlines.lines(folded)[0].text == "SUMMARY:" + text


# -- merging calendars ----------------------------------------------------------------------


def test_merging_the_corpus_keeps_every_component_line_and_one_vtimezone_per_tzid() -> None:
    objects = [p.read_bytes() for p in ICS]
    merged, merger = merge(objects, "Work; and more", "#FF8800")
    assert merger.objects == len(objects) and merger.renamed == []
    calendars = parse_calendars(merged)
    assert len(calendars) == 1
    comps = calendars[0].components
    tzids = [c.first("TZID") for c in comps if c.name == "VTIMEZONE"]
    assert len(tzids) == len(set(tzids)) == 6
    assert sum(1 for c in comps if c.name != "VTIMEZONE") == sum(
        len([c for c in parse_calendars(o)[0].components if c.name != "VTIMEZONE"]) for o in objects)
    out = set(crlf_lines(merged))
    for data in objects:
        for comp in parse_calendars(data)[0].components:
            for line in comp.lines:
                kept = crlf_lines(line.raw)
                assert set(kept) <= out or line.name in ("DTSTART", "DTEND"), (line.raw, data[:60])
    assert b"\nNAME:Work\\; and more\r\n" in merged and b"X-WR-CALNAME:Work\\; and more\r\n" in merged
    assert b"X-APPLE-CALENDAR-COLOR:#FF8800\r\n" in merged
    assert b"METHOD" not in merged.split(b"BEGIN:V", 2)[1]  # no per-object file properties
    assert all(line.endswith(b"\r") for line in merged.split(b"\n")[:-1])  # CRLF throughout
    assert Calendar.from_ical(merged)  # other software can read it


def test_merge_then_split_gives_back_objects_with_the_same_meaning() -> None:
    originals = {inspect_calendar(p.read_bytes()).uid: p.read_bytes() for p in ICS}
    merged, _ = merge(list(originals.values()))
    split = port.split_calendar(merged, ics_name)
    assert [o.error for o in split if o.error] == []
    assert sorted(o.uid or "" for o in split) == sorted(originals)
    for obj in split:
        assert obj.data is not None and obj.uid is not None
        before, after = inspect_calendar(originals[obj.uid]), inspect_calendar(obj.data)
        assert (after.component, after.uid, after.start, after.end, after.recurring) == \
            (before.component, before.uid, before.start, before.end, before.recurring), obj.uid


def test_x_wr_timezone_becomes_tzid_parameters_on_floating_times() -> None:
    google = (CORPUS / "ical" / "valid" / "x-wr-timezone-floating.ics").read_bytes()
    floating = (CORPUS / "ical" / "valid" / "floating-event.ics").read_bytes()
    merged, _ = merge([google, floating])
    assert b"X-WR-TIMEZONE" not in merged
    assert b"DTSTART;TZID=Europe/Lisbon:20240705T200000\r\n" in merged
    assert b"DTSTAMP:20240701T000000Z\r\n" in merged  # UTC values are left alone
    floating_start = [line for line in floating.split(b"\n") if line.startswith(b"DTSTART")][0]
    assert floating_start.rstrip(b"\r") + b"\r\n" in merged  # a floating event without X-WR stays floating


def test_different_definitions_of_a_private_tzid_are_kept_apart() -> None:
    india = (CORPUS / "ical" / "valid" / "outlook-customized-time-zone.ics").read_bytes()
    lagos = (india.replace(b"+0530", b"+0100").replace(b"Bengaluru", b"Lagos")
             .replace(b"12345678ABCDEF", b"87654321FEDCBA"))
    merged, merger = merge([india, lagos, india.replace(b"12345678ABCDEF", b"11111111111111")])
    assert merger.renamed == ["Customized Time Zone (2)"]
    assert merged.count(b"BEGIN:VTIMEZONE") == 2
    assert b"TZID:Customized Time Zone (2)\r\n" in merged
    assert b'DTSTART;TZID="Customized Time Zone (2)":20240805T093000\r\n' in merged
    split = {o.uid: o.data for o in port.split_calendar(merged, ics_name)}
    for data in (india, lagos):
        info = inspect_calendar(data)
        copy = split[info.uid]
        assert copy is not None and inspect_calendar(copy).start == info.start


def test_an_iana_tzid_keeps_its_first_definition() -> None:
    berlin = (CORPUS / "ical" / "valid" / "ios-event-berlin.ics").read_bytes()
    other = (CORPUS / "ical" / "valid" / "recurring-overrides-exdate-berlin.ics").read_bytes()
    merged, merger = merge([berlin, other])
    assert merger.renamed == [] and merged.count(b"TZID:Europe/Berlin\r\n") == 1


def test_calendar_properties_are_kept_only_when_every_object_has_them() -> None:
    def obj(uid: str, extra: str) -> bytes:
        return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n{extra}BEGIN:VTODO\r\nUID:{uid}\r\n"
                "DTSTAMP:20240101T000000Z\r\nEND:VTODO\r\nEND:VCALENDAR\r\n").encode()
    merged, _ = merge([obj("a", "X-SHARED:1\r\nX-ONLY-A:1\r\n"), obj("b", "X-SHARED:1\r\n")])
    assert b"X-SHARED:1\r\n" in merged and b"X-ONLY-A" not in merged
    assert merged.count(b"PRODID") == 1 and merged.count(b"VERSION") == 1


def test_a_broken_object_is_reported_and_not_merged() -> None:
    body = io.BytesIO()
    merger = port.CalendarMerger(body.write)
    assert "never closed" in (merger.add(b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n") or "")
    assert body.getvalue() == b"" and merger.objects == 0


# -- splitting calendars --------------------------------------------------------------------

FEED = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//Feed//EN\r
METHOD:PUBLISH\r
X-WR-CALNAME:Team\r
BEGIN:VTIMEZONE\r
TZID:Europe/Berlin\r
BEGIN:STANDARD\r
DTSTART:19701025T030000\r
TZOFFSETFROM:+0200\r
TZOFFSETTO:+0100\r
END:STANDARD\r
END:VTIMEZONE\r
BEGIN:VTIMEZONE\r
TZID:America/New_York\r
BEGIN:STANDARD\r
DTSTART:19701101T020000\r
TZOFFSETFROM:-0400\r
TZOFFSETTO:-0500\r
END:STANDARD\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
UID:weekly@example.org\r
DTSTAMP:20240101T000000Z\r
DTSTART;TZID=Europe/Berlin:20240108T090000\r
RRULE:FREQ=WEEKLY;COUNT=5\r
SUMMARY:Weekly\r
BEGIN:VALARM\r
UID:alarm-1\r
ACTION:DISPLAY\r
TRIGGER:-PT10M\r
END:VALARM\r
END:VEVENT\r
BEGIN:VTODO\r
UID:todo@example.org\r
DTSTAMP:20240101T000000Z\r
SUMMARY:No zone\r
END:VTODO\r
BEGIN:VEVENT\r
UID:weekly@example.org\r
DTSTAMP:20240101T000000Z\r
RECURRENCE-ID;TZID=Europe/Berlin:20240115T090000\r
DTSTART;TZID=Europe/Berlin:20240115T110000\r
SUMMARY:Weekly (moved)\r
END:VEVENT\r
BEGIN:VEVENT\r
DTSTAMP:20240101T000000Z\r
DTSTART:20240101T000000Z\r
SUMMARY:No UID\r
END:VEVENT\r
END:VCALENDAR\r
"""


def test_split_groups_by_uid_with_the_zones_used_and_without_method() -> None:
    objects = port.split_calendar(FEED, ics_name)
    assert [o.uid for o in objects] == [None, "weekly@example.org", "todo@example.org"]
    assert objects[0].error == "the VEVENT has no UID" and "line 46" in objects[0].label
    weekly, todo = objects[1].data, objects[2].data
    assert weekly is not None and todo is not None
    assert objects[1].name == "weekly@example.org.ics"
    assert b"METHOD" not in weekly and b"X-WR-CALNAME:Team\r\n" in weekly
    assert weekly.count(b"BEGIN:VTIMEZONE") == 1 and b"America/New_York" not in weekly
    assert weekly.count(b"BEGIN:VEVENT") == 2 and b"UID:alarm-1" in weekly
    assert b"VTIMEZONE" not in todo
    source_lines = set(FEED.split(b"\r\n"))
    assert set(weekly.split(b"\r\n")) <= source_lines and set(todo.split(b"\r\n")) <= source_lines
    info = inspect_calendar(weekly)
    assert info.recurring and info.component == "VEVENT"
    assert inspect_calendar(todo).component == "VTODO"


def test_split_keeps_lf_line_endings_and_drops_the_bom() -> None:
    khal = (CORPUS / "ical" / "valid" / "khal-lf-line-endings.ics").read_bytes()
    [obj] = port.split_calendar(khal, ics_name)
    assert obj.data == khal  # one object, no METHOD: the very same bytes
    bom = (CORPUS / "ical" / "valid" / "bom-and-latin1-bytes.ics").read_bytes()
    [obj] = port.split_calendar(bom, ics_name)
    assert obj.data == bom.removeprefix(contentlines.BOM)


@pytest.mark.parametrize("data, message", [
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VCALENDAR\r\n", "END:VCALENDAR closes BEGIN:VEVENT"),
    (b"hello\r\n", "expected BEGIN:VCALENDAR"),
    (b"", "no BEGIN:VCALENDAR"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n", "never closed"),
])
def test_split_refuses_what_is_not_icalendar(data: bytes, message: str) -> None:
    with pytest.raises(port.StructureError, match=message):
        port.split_calendar(data, ics_name)


# -- vCards ---------------------------------------------------------------------------------


def test_cards_concatenate_and_split_back_byte_for_byte() -> None:
    cards = [p.read_bytes() for p in VCF]
    joined = b"".join(port.for_concatenation(card) for card in cards)
    split = port.split_cards(joined, vcf_name)
    assert [o.error for o in split] == [None] * len(cards)
    for card, obj in zip(cards, split, strict=True):
        assert obj.data is not None
        # Exactly the file's bytes from BEGIN:VCARD to the end of END:VCARD (blank lines
        # after a card are between cards, not in them).
        full = port.for_concatenation(card)
        assert full.startswith(obj.data) and full[len(obj.data):].strip() == b""
        assert obj.data.startswith(card.removeprefix(contentlines.BOM)[:len(obj.data) - 2])
        assert inspect_card(obj.data).uid == obj.uid


def test_split_cards_reports_what_is_not_a_card() -> None:
    data = (b"junk\r\nBEGIN:VCARD\r\nVERSION:4.0\r\nFN:No uid\r\nEND:VCARD\r\n"
            b"BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:1234\r\nFN:A\r\nEND:VCARD\r\n\r\n"
            b"BEGIN:VCARD\r\nUID:open\r\n")
    objects = port.split_cards(data, vcf_name)
    assert [o.error is None for o in objects] == [False, True, False, False]
    assert "no UID" in (objects[0].error or "") and objects[0].data is not None
    assert objects[1].name == "1234.vcf" and objects[1].data == \
        b"BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:1234\r\nFN:A\r\nEND:VCARD\r\n"
    assert "never closed" in (objects[2].error or "")
    assert "outside any BEGIN:VCARD" in (objects[3].error or "")


# -- names, paths, manifest, report -----------------------------------------------------------


def test_object_names_are_stable_distinct_and_safe() -> None:
    assert port.object_name("abc-123@example.org", ".ics") == "abc-123@example.org.ics"
    assert port.object_name("urn:uuid:0A1B", ".vcf") == "0A1B.vcf"
    odd = [port.object_name(uid, ".ics") for uid in ("a b/c", "a_b/c", "a b/c ", "ü", "/", ".hidden")]
    assert len(set(odd)) == len(odd)
    assert all("/" not in name and " " not in name and not name.startswith(".") for name in odd)
    assert port.object_name("a b/c", ".ics") == odd[0]


def test_retarget_maps_users_and_refuses_everything_else() -> None:
    assert port.retarget("/dav/calendars/alice/work/x.ics", "alice", "carol") == "calendars/carol/work/x.ics"
    assert port.retarget("/dav/files/alice/", "alice", "carol") == "files/carol"
    for bad in ("/dav/files/bob/x", "/dav/principals/alice/x", "/files/alice/x", "/dav/files/alice/../bob",
                "/dav/files/alice//x", "/dav/files", "/dav/files/alice/a\x00b"):
        with pytest.raises(ArchiveError):
            port.retarget(bad, "alice", "carol")


def _manifest() -> port.Manifest:
    return port.Manifest(
        user="alice", exported_at=1_700_000_000.0, safehold_version="9.9", last_seq=42,
        collections=[port.CollectionEntry("/dav/calendars/alice/work/", "calendar",
                                          {"{DAV:}displayname": "<displayname>Wörk</displayname>"},
                                          1.0, 2.0, "calendars/work.ics", ["/dav/x"], ["Z (2)"])],
        items=[port.ItemEntry("/dav/calendars/alice/work/a.ics", "items/calendars/alice/work/a.ics",
                              3, "ab" * 32, '"5-abab"', "text/calendar", {}, 1.0, 2.0)])


def test_manifest_round_trips_and_says_what_it_is() -> None:
    manifest = _manifest()
    raw = manifest.to_json()
    body = json.loads(raw)
    assert body["format"] == 1 and body["user"] == "alice" and body["last_seq"] == 42
    assert body["exported_at"] == "2023-11-14T22:13:20+00:00" and body["safehold_version"] == "9.9"
    assert body["counts"] == {"collections": 1, "items": 1, "bytes": 3}
    assert set(body["items"][0]) >= {"path", "member", "size", "sha256", "etag", "content_type", "properties"}
    assert set(body["collections"][0]) >= {"path", "kind", "properties", "merged"}
    assert port.Manifest.from_json(raw) == manifest


@pytest.mark.parametrize("change, message", [
    (lambda b: b.update(format=2), "format 2.*newer safehold"),
    (lambda b: b.pop("format"), "not a safehold export"),
    (lambda b: b.pop("items"), "incomplete or damaged"),
    (lambda b: b["items"][0].update(size="many"), "incomplete or damaged"),
    (lambda b: b["collections"][0].update(properties={"a": 1}), "incomplete or damaged"),
])
def test_manifest_refuses_what_it_cannot_read(change: object, message: str) -> None:
    body = json.loads(_manifest().to_json())
    change(body)  # type: ignore[operator]
    with pytest.raises(ArchiveError, match=message):
        port.Manifest.from_json(json.dumps(body).encode())
    with pytest.raises(ArchiveError, match="not valid JSON"):
        port.Manifest.from_json(b"{")


def test_report_counts_and_lists_problems() -> None:
    report = port.ImportReport("x.zip", "carol", dry_run=True)
    report.note("collection", "identical", "/dav/files/carol/")
    report.note("item", "created", "/dav/files/carol/a")
    report.note("item", "skipped-conflict", "/dav/files/carol/b", "an item with other bytes exists")
    assert not report.complete
    assert report.summary() == [
        "collections: 0 created, 0 updated, 1 identical, 0 skipped-conflict, 0 invalid",
        "items: 1 created, 0 identical, 1 skipped-conflict, 0 invalid",
        "skipped-conflict /dav/files/carol/b: an item with other bytes exists",
        "dry run: nothing was written"]
    assert report.as_json()["problems"][0]["what"] == "/dav/files/carol/b"


def test_progress_draws_in_place_on_a_terminal_and_every_n_lines_otherwise() -> None:
    log = io.StringIO()
    progress = Progress("export", stream=log, every=2)
    progress.start(5)
    for _ in range(5):
        progress.step()
    progress.finish()
    assert log.getvalue() == "export: 2/5 items\nexport: 4/5 items\nexport: 5/5 items\n"

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True
    tty, now = Tty(), [0.0]
    progress = Progress("import", stream=tty, clock=lambda: now[0])
    progress.start(3)
    for _ in range(3):
        now[0] += 1
        progress.step()
    progress.finish()
    assert tty.getvalue() == "\rimport: 1/3 items\rimport: 2/3 items\rimport: 3/3 items\rimport: 3/3 items\n"
