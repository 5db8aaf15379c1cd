"""Merging calendar objects into one iCalendar file, and splitting one back into
calendar object resources, by splicing original lines (RFC 5545 §3.4, §3.6; RFC 4791 §4.1).

Nothing here parses values into objects and writes them out again: components keep their
lines as the client wrote them. Where merging cannot avoid a change, the change is the
smallest one that keeps the meaning:

- Export writes CRLF line endings (RFC 5545 §3.1) and drops a leading BOM.
- VTIMEZONEs are written once per TZID. Two different definitions of a TZID that is not
  an IANA name ("Customized Time Zone", Outlook's favourite) are different zones, so the
  later one is renamed ("Customized Time Zone (2)") in its VTIMEZONE and in the TZID
  parameters of the components that use it; only those lines are rewritten. For an IANA
  name the first definition is kept: safehold (like most software) resolves IANA names
  from its own database, so the definitions say the same thing.
- Calendar properties are kept when every object has them alike, except X-WR-TIMEZONE:
  it gives an object's floating times a zone (safehold applies it, as Google and most
  clients do), so an object that has it gets TZID parameters on its floating DTSTART,
  DTEND, DUE, RECURRENCE-ID, EXDATE and RDATE lines instead, and its times keep meaning
  the same instants whatever the other objects say.

Splitting a file creates new byte sequences by necessity: each object gets the file's
BEGIN:VCALENDAR and calendar property lines (METHOD removed: RFC 4791 §4.1 forbids it in a
stored object), the VTIMEZONEs its components refer to, its components, and END:VCALENDAR.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from safehold.core.formats.contentlines import (
    CRLF, Line, Param, SplitObject, escape_text, fold, lines, parse, quote_param,
)

FOOTER = b"END:VCALENDAR\r\n"
# Calendar properties that describe the file, not the objects in it.
_FILE_PROPERTIES = frozenset({"VERSION", "PRODID", "CALSCALE", "METHOD", "X-WR-TIMEZONE"})
# Date-time properties that a TZID parameter applies to (RFC 5545 §3.2.19).
_ZONED = frozenset({"DTSTART", "DTEND", "DUE", "RECURRENCE-ID", "EXDATE", "RDATE"})
# Written from the collection's own properties when it has them.
_NAME_PROPERTIES = frozenset({"NAME", "X-WR-CALNAME"})
_COLOR_PROPERTY = "X-APPLE-CALENDAR-COLOR"
_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"


class StructureError(ValueError):
    """The text is not a sequence of balanced VCALENDARs; says where."""


@dataclass
class Component:
    name: str
    lines: list[Line] = field(default_factory=list)

    @property
    def number(self) -> int:
        return self.lines[0].number

    def first(self, prop: str) -> str | None:
        """The value of the component's own first ``prop`` (not a nested one's)."""
        depth = 0
        for line in self.lines:
            name = line.name
            if name == "BEGIN":
                depth += 1
            elif name == "END":
                depth -= 1
            elif depth == 1 and name == prop:
                return line.value
        return None

    def tzids(self) -> list[str]:
        """TZID parameters used anywhere in the component, in order of appearance."""
        found: dict[str, None] = {}
        for line in self.lines:
            if "TZID" in line.text.upper():
                for param in parse(line.text)[1]:
                    if param.name == "TZID":
                        found[param.value] = None
        return list(found)


@dataclass
class VCalendar:
    begin: Line
    props: list[Line] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)
    end: Line | None = None


def parse_calendars(data: bytes) -> list[VCalendar]:
    """The VCALENDARs of ``data`` with their property lines and top-level components."""
    calendars: list[VCalendar] = []
    stack: list[str] = []
    current: VCalendar | None = None
    component: Component | None = None
    for line in lines(data):
        name = line.name
        value = line.value.strip().upper() if name in ("BEGIN", "END") else ""
        if not stack:
            if name != "BEGIN" or value != "VCALENDAR":
                raise StructureError(f"line {line.number}: expected BEGIN:VCALENDAR")
            current = VCalendar(line)
            calendars.append(current)
            stack.append(value)
            continue
        assert current is not None
        if name == "BEGIN":
            stack.append(value)
            if len(stack) == 2:
                component = Component(value)
                current.components.append(component)
        elif name == "END":
            if stack[-1] != value:
                raise StructureError(f"line {line.number}: END:{value} closes BEGIN:{stack[-1]}")
            stack.pop()
            if not stack:
                current.end = line
                continue
        if len(stack) == 1 and name != "END":
            if not name:
                raise StructureError(f"line {line.number} is not an iCalendar content line")
            current.props.append(line)
        elif component is not None:
            component.lines.append(line)
    if stack:
        raise StructureError(f"BEGIN:{stack[-1]} is never closed")
    if not calendars:
        raise StructureError("no BEGIN:VCALENDAR found")
    return calendars


@functools.cache
def _iana_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _definition(zone: Component) -> tuple[str, ...]:
    return tuple(line.text for line in zone.lines)


def _renamed_param(param: Param, value: str) -> str:
    quoted = param.raw.partition("=")[2].startswith('"')
    return f"{param.raw.partition('=')[0]}=" + (f'"{value}"' if quoted else quote_param(value))


def _renamed_line(line: Line, renames: dict[str, str], rename_value: bool = False) -> bytes:
    """``line`` with TZID parameters (and, for a VTIMEZONE's TZID property, the value)
    renamed; a line with nothing to rename keeps its bytes."""
    text = line.text
    name, params, value = parse(text)
    new_params = [_renamed_param(p, renames[p.value]) if p.name == "TZID" and p.value in renames
                  else p.raw for p in params]
    new_value = renames.get(value, value) if rename_value and name == "TZID" else value
    if new_params == [p.raw for p in params] and new_value == value:
        return line.crlf()
    spelled = text[:len(text) - len(text.lstrip(_NAME_CHARS))]  # the name as written
    return fold(";".join([spelled, *new_params]) + ":" + new_value)


def _pinned_line(line: Line, zone: str) -> bytes | None:
    """A floating date-time line with ``TZID=zone`` added (what X-WR-TIMEZONE meant), or
    None when the line is not floating (UTC, a DATE, or a TZID of its own)."""
    name, params, value = parse(line.text)
    if any(p.name == "TZID" or (p.name == "VALUE" and p.value.upper() == "DATE") for p in params):
        return None
    upper = value.upper()
    if not value or "Z" in upper or not all("T" in v for v in upper.split(",")):
        return None
    spelled = line.text[:len(line.text) - len(line.text.lstrip(_NAME_CHARS))]
    return fold(";".join([spelled, *(p.raw for p in params), f"TZID={quote_param(zone)}"]) + ":" + value)


class CalendarMerger:
    """Builds one VCALENDAR out of many calendar objects. Components are handed to
    ``write`` as they come (so a large calendar is never held in memory); time zones and
    the header, which depend on every object, are asked for at the end."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._zones: dict[str, list[tuple[tuple[str, ...], str]]] = {}  # tzid -> (definition, written as)
        self._zone_blocks: list[bytes] = []
        self._common: dict[str, bytes] | None = None  # calendar properties every object has
        self.objects = 0
        self.renamed: list[str] = []  # TZIDs written under a new name

    def add(self, data: bytes) -> str | None:
        """Add one calendar object; returns why it could not be merged, or None."""
        try:
            calendars = parse_calendars(data)
        except StructureError as exc:
            return str(exc)
        props: dict[str, bytes] = {}
        for cal in calendars:
            for line in cal.props:
                if line.name not in _FILE_PROPERTIES:
                    props.setdefault(line.text, line.crlf())
            renames = self._add_zones(cal.components)
            zone = next((line.value.strip() for line in cal.props if line.name == "X-WR-TIMEZONE"), "")
            for comp in cal.components:
                if comp.name != "VTIMEZONE":
                    self._write(b"".join(self._line(line, renames, zone) for line in comp.lines))
        self._common = props if self._common is None else {
            k: v for k, v in self._common.items() if k in props}
        self.objects += 1
        return None

    @staticmethod
    def _line(line: Line, renames: dict[str, str], zone: str) -> bytes:
        pinned = _pinned_line(line, zone) if zone in _iana_names() and line.name in _ZONED else None
        if pinned is not None:
            return pinned
        return _renamed_line(line, renames) if renames else line.crlf()

    def _add_zones(self, components: Iterable[Component]) -> dict[str, str]:
        renames: dict[str, str] = {}
        for zone in components:
            tzid = zone.first("TZID") if zone.name == "VTIMEZONE" else None
            if tzid is None:
                continue
            definition = _definition(zone)
            variants = self._zones.setdefault(tzid, [])
            written = next((as_ for d, as_ in variants if d == definition), None)
            if written is None and variants and tzid in _iana_names():
                written = variants[0][1]
            if written is None:
                written = tzid if not variants else self._new_name(tzid, len(variants) + 1)
                variants.append((definition, written))
                block = {tzid: written} if written != tzid else {}
                self._zone_blocks.append(b"".join(
                    _renamed_line(line, block, rename_value=True) if block else line.crlf()
                    for line in zone.lines))
                if written != tzid:
                    self.renamed.append(written)
            if written != tzid:
                renames[tzid] = written
        return renames

    def _new_name(self, tzid: str, n: int) -> str:
        taken = {as_ for variants in self._zones.values() for _, as_ in variants}
        while f"{tzid} ({n})" in taken:
            n += 1
        return f"{tzid} ({n})"

    def header(self, prodid: str, name: str | None = None, color: str | None = None) -> bytes:
        """BEGIN:VCALENDAR and the calendar properties: the collection's name and colour
        (RFC 7986 NAME and the de facto X-WR-CALNAME, X-APPLE-CALENDAR-COLOR) and the
        properties that every object had alike."""
        out = [b"BEGIN:VCALENDAR\r\n", b"VERSION:2.0\r\n", fold("PRODID:" + escape_text(prodid))]
        skip: set[str] = set()
        if name:
            out += [fold("NAME:" + escape_text(name)), fold("X-WR-CALNAME:" + escape_text(name))]
            skip |= _NAME_PROPERTIES
        if color:
            out.append(fold(f"{_COLOR_PROPERTY}:{escape_text(color)}"))
            skip.add(_COLOR_PROPERTY)
        for text, raw in (self._common or {}).items():
            if parse(text)[0] not in skip:
                out.append(raw)
        return b"".join(out)

    def timezones(self) -> bytes:
        return b"".join(self._zone_blocks)


def split_calendar(data: bytes, name_for: Callable[[str], str]) -> list[SplitObject]:
    """One calendar object resource per UID (a recurring event's master and overrides
    stay together), each with the VTIMEZONEs it uses. ``name_for`` turns a UID into a
    resource name. Raises StructureError when ``data`` is not iCalendar at all."""
    calendars = parse_calendars(data)
    zones: dict[str, Component] = {}
    for cal in calendars:
        for comp in cal.components:
            tzid = comp.first("TZID") if comp.name == "VTIMEZONE" else None
            if tzid is not None:
                zones.setdefault(tzid, comp)
    groups: dict[str, tuple[VCalendar, list[Component]]] = {}
    out: list[SplitObject] = []
    for cal in calendars:
        for comp in cal.components:
            if comp.name == "VTIMEZONE":
                continue
            uid = comp.first("UID")
            if not uid:
                out.append(SplitObject(f"{comp.name} (line {comp.number})",
                                       error=f"the {comp.name} has no UID"))
                continue
            groups.setdefault(uid, (cal, []))[1].append(comp)
    for uid, (cal, comps) in groups.items():
        used = {t: None for comp in comps for t in comp.tzids() if t in zones}
        parts = [cal.begin.raw]
        parts += [line.raw for line in cal.props if line.name != "METHOD"]
        parts += [line.raw for tzid in used for line in zones[tzid].lines]
        parts += [line.raw for comp in comps for line in comp.lines]
        parts.append(cal.end.raw if cal.end is not None else FOOTER)
        label = f"{comps[0].name} {uid!r} (line {comps[0].number})"
        out.append(SplitObject(label, name_for(uid), uid, _joined(parts)))
    return out


def _joined(parts: list[bytes]) -> bytes:
    """Concatenate lines; a last line that had no line ending (the end of a file) gets
    one when something follows it."""
    return b"".join(p if p.endswith(b"\n") or i == len(parts) - 1 else p + CRLF
                    for i, p in enumerate(parts))
