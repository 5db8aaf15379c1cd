"""A readable diff of two versions of a vCard (RFC 6350) or iCalendar object
(RFC 5545): which fields changed, with their old and new values. Pure: bytes in,
field changes out. The stored bytes are never rewritten; this only reads them."""

from __future__ import annotations

from dataclasses import dataclass

MAX_BYTES = 512 * 1024  # larger objects are summarised by size only
LABELS = {
    "FN": "name", "N": "name parts", "TEL": "phone", "EMAIL": "email", "ADR": "address",
    "ORG": "organisation", "TITLE": "job title", "NOTE": "note", "BDAY": "birthday",
    "URL": "web page", "NICKNAME": "nickname", "PHOTO": "photo", "CATEGORIES": "categories",
    "SUMMARY": "title", "DTSTART": "start", "DTEND": "end", "DUE": "due", "LOCATION": "location",
    "DESCRIPTION": "description", "RRULE": "repeats", "STATUS": "status", "ATTENDEE": "attendee",
    "ORGANIZER": "organiser", "EXDATE": "skipped dates", "DURATION": "duration",
    "PRIORITY": "priority", "COMPLETED": "completed", "PERCENT-COMPLETE": "percent done",
}
# Fields every client rewrites on every save: listing them would hide the real change.
NOISE = {"VERSION", "DTSTAMP", "LAST-MODIFIED", "REV", "PRODID", "SEQUENCE", "X-MOZ-GENERATION",
         "X-MOZ-LASTACK"}


@dataclass(frozen=True)
class FieldChange:
    field: str  # e.g. "phone" or "VEVENT title"
    before: list[str]
    after: list[str]


def unfold(text: str) -> list[str]:
    """Content lines with folding undone (RFC 5545 3.1, RFC 6350 3.2)."""
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw:
            lines.append(raw)
    return lines


def _split(line: str) -> tuple[str, str, str]:
    """NAME, parameters, value of a content line (a colon inside a quoted parameter
    value does not end the name part)."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            head, value = line[:i], line[i + 1:]
            name, _, params = head.partition(";")
            return name.split(".")[-1].upper(), params, value
    return line.upper(), "", ""


def _readable(value: str, params: str) -> str:
    text = (value.replace("\\n", "\n").replace("\\N", "\n").replace("\\,", ",")
            .replace("\\;", ";").replace("\\\\", "\\"))
    if len(text) > 200:
        text = text[:200] + "…"
    return f"{text} ({params})" if params and not params.upper().startswith("VALUE=") else text


def fields(text: str) -> dict[str, list[str]]:
    """Field label -> values, in order; iCalendar fields are prefixed with their
    component when it is not the first one's type (e.g. "VALARM trigger")."""
    out: dict[str, list[str]] = {}
    stack: list[str] = []
    for line in unfold(text):
        name, params, value = _split(line)
        if name == "BEGIN":
            stack.append(value.upper())
            continue
        if name == "END":
            if stack:
                stack.pop()
            continue
        if name in NOISE:
            continue
        label = LABELS.get(name, name.lower())
        inner = [c for c in stack if c not in ("VCALENDAR", "VCARD")]
        if len(inner) > 1 or (inner and inner[0] not in ("VEVENT", "VTODO", "VJOURNAL")):
            label = f"{' '.join(inner)} {label}"
        out.setdefault(label, []).append(_readable(value, params))
    return out


def diff(before: bytes | None, after: bytes | None) -> list[FieldChange]:
    """Changed fields between two bodies (None: the item did not exist / was deleted)."""
    if (before is not None and len(before) > MAX_BYTES) or (after is not None and len(after) > MAX_BYTES):
        return [FieldChange("content", [_size(before)], [_size(after)])]
    old = fields(before.decode("utf-8", "replace")) if before is not None else {}
    new = fields(after.decode("utf-8", "replace")) if after is not None else {}
    changes = []
    for label in list(dict.fromkeys([*old, *new])):
        a, b = old.get(label, []), new.get(label, [])
        if a != b:
            changes.append(FieldChange(label, [v for v in a if v not in b], [v for v in b if v not in a]))
    return changes


def _size(body: bytes | None) -> str:
    return "nothing" if body is None else f"{len(body)} bytes"


def is_text(content_type: str | None) -> bool:
    ct = (content_type or "").lower()
    return ct.startswith("text/vcard") or ct.startswith("text/calendar") or ct.startswith("text/x-vcard")
