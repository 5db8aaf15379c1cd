"""Content lines (RFC 5545 §3.1, RFC 6350 §3.2) as byte ranges of the original text.

Export and import cut calendars and vCards apart and splice them together; doing that on
the original lines, rather than through a library that parses and re-serializes, is what
keeps every property, parameter, fold and odd byte as the client wrote it (promise 3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BOM = b"\xef\xbb\xbf"
CRLF = b"\r\n"
MAX_OCTETS = 75  # RFC 5545 §3.1: lines SHOULD NOT be longer than 75 octets
_FOLD = re.compile(rb"\r?\n[ \t]")
# [group "."] name, then ";" or ":" (RFC 6350 §3.3 allows the group; iCalendar never has one).
_NAME = re.compile(r"(?:[A-Za-z0-9_-]+\.)?([A-Za-z0-9_-]+)(?=[;:])")


def nul_byte(data: bytes) -> str | None:
    """Where ``data`` holds a NUL byte ("line 3"); None when it holds none.

    RFC 5545 §3.1 and RFC 6350 §3.3 allow no control character in a content line but
    (H)TAB. Of them only NUL is refused: it is text in no encoding (a UID with one ends
    early in every client that keeps it in a C string). The others are what phones hold
    (a vertical tab comes with text pasted from a word processor into a note), and a
    refused PUT leaves that contact off the server and out of every backup; they are
    stored as sent, GET returns them, and a REPORT leaves them out of its XML, which
    cannot carry them (dav.reportutil.clean_text)."""
    pos = data.find(b"\0")
    if pos < 0:
        return None
    line = data.count(b"\n", 0, pos) + 1
    return f"line {line}"


@dataclass(frozen=True)
class SplitObject:
    """One calendar object or vCard cut out of a bigger file, ready to be stored as
    ``name``; or, with ``error`` set, a part that cannot become one."""

    label: str  # for reports, e.g. "VEVENT 'abc@example.org' (line 12)"
    name: str = ""
    uid: str | None = None
    data: bytes | None = None
    error: str | None = None


@dataclass(frozen=True)
class Param:
    name: str  # upper case
    raw: str  # "NAME=value" exactly as written
    value: str  # the value, without quotes


@dataclass(frozen=True)
class Line:
    """One logical content line: ``raw`` is its physical lines as they were (folds and
    line endings included), ``start``/``end`` where they were in the source."""

    number: int  # first physical line, 1-based, for messages
    start: int
    end: int
    raw: bytes

    @property
    def text(self) -> str:
        """Unfolded, without its line ending. Unfolding happens on bytes, before decoding,
        because simple writers fold inside a multi-octet UTF-8 character (RFC 5545 §3.1);
        surrogateescape keeps bytes that are not UTF-8 round-trippable."""
        unfolded = _FOLD.sub(b"", self.raw).removesuffix(b"\n").removesuffix(b"\r")
        return unfolded.decode("utf-8", errors="surrogateescape")

    @property
    def name(self) -> str:
        match = _NAME.match(self.text)
        return match.group(1).upper() if match else ""

    @property
    def value(self) -> str:
        return parse(self.text)[2]

    def crlf(self) -> bytes:
        """The same physical lines, each ended by CRLF as RFC 5545 §3.1 wants."""
        parts = self.raw.split(b"\n")
        if parts[-1] == b"":
            parts.pop()
        return b"".join(p.removesuffix(b"\r") + CRLF for p in parts)


def lines(data: bytes) -> list[Line]:
    """The logical lines of ``data``. A physical line that starts with a space or tab
    continues the one before; blank lines are skipped; a leading BOM is not content."""
    out: list[Line] = []
    pos = len(BOM) if data.startswith(BOM) else 0
    size = len(data)
    number = 0
    current: tuple[int, int, int] | None = None  # number, start, end
    while pos < size:
        newline = data.find(b"\n", pos)
        end = size if newline < 0 else newline + 1
        number += 1
        first = data[pos:pos + 1]
        if first in (b" ", b"\t") and current is not None:
            current = (current[0], current[1], end)
        elif data[pos:end].strip(b"\r\n") == b"":
            pass  # a blank line
        else:
            if current is not None:
                out.append(Line(current[0], current[1], current[2], data[current[1]:current[2]]))
            current = (number, pos, end)
        pos = end
    if current is not None:
        out.append(Line(current[0], current[1], current[2], data[current[1]:current[2]]))
    return out


def parse(text: str) -> tuple[str, list[Param], str]:
    """Split an unfolded line into (name, parameters, value). Quoted parameter values may
    hold ";", ":" and "," (RFC 5545 §3.1.1); the value starts after the first colon
    outside quotes."""
    match = _NAME.match(text)
    if match is None:
        return "", [], text.partition(":")[2]
    params: list[Param] = []
    pos = match.end()
    while pos < len(text) and text[pos] == ";":
        start = pos + 1
        pos = start
        quoted = False
        while pos < len(text):
            char = text[pos]
            if char == '"':
                quoted = not quoted
            elif not quoted and char in ";:":
                break
            pos += 1
        raw = text[start:pos]
        pname, _, pvalue = raw.partition("=")
        params.append(Param(pname.upper(), raw, pvalue.strip('"') if pvalue.startswith('"') else pvalue))
    value = text[pos + 1:] if pos < len(text) else ""
    return match.group(1).upper(), params, value


def fold(text: str, ending: bytes = CRLF) -> bytes:
    """``text`` as physical lines of at most 75 octets, never splitting a UTF-8 sequence
    (RFC 5545 §3.1). Used only for lines we write or had to change."""
    data = text.encode("utf-8", errors="surrogateescape")
    out: list[bytes] = []
    limit = MAX_OCTETS
    while len(data) > limit:
        cut = limit
        while cut > 1 and (data[cut] & 0xC0) == 0x80:  # a continuation byte: back off
            cut -= 1
        out.append(data[:cut])
        data = data[cut:]
        limit = MAX_OCTETS - 1  # the leading space of a continuation counts
    out.append(data)
    return (ending + b" ").join(out) + ending


def escape_text(value: str) -> str:
    """A TEXT value (RFC 5545 §3.3.11)."""
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n"))


def quote_param(value: str) -> str:
    """A parameter value, quoted when it holds a character that needs it (§3.1.1)."""
    return f'"{value}"' if any(c in value for c in ';:,') else value
