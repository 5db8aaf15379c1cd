"""Concatenating vCards into one file and cutting a file back into vCards, byte for byte
(RFC 6350 §3.1: a file is a sequence of vCards)."""

from __future__ import annotations

from collections.abc import Callable

from safehold.core.formats.contentlines import BOM, CRLF, SplitObject, lines


def for_concatenation(card: bytes) -> bytes:
    """The card as it goes into a multi-card file: its own bytes, less a leading BOM
    (a BOM in the middle of a file is not whitespace to a reader) and with a line ending
    after END:VCARD if it had none, so that the next BEGIN:VCARD starts a line."""
    card = card.removeprefix(BOM)
    return card if card.endswith(b"\n") else card + CRLF


def split_cards(data: bytes, name_for: Callable[[str], str]) -> list[SplitObject]:
    """Each BEGIN:VCARD ... END:VCARD of ``data`` exactly as it is in the file (from the
    B of BEGIN to the line ending after END). Text outside any card is reported."""
    out: list[SplitObject] = []
    depth = 0
    begin = 0
    begin_line = 0
    uid: str | None = None
    stray: list[int] = []
    for line in lines(data):
        name = line.name
        value = line.value.strip().upper() if name in ("BEGIN", "END") else ""
        if name == "BEGIN" and value == "VCARD":
            if depth == 0:
                begin, begin_line, uid = line.start, line.number, None
            depth += 1
        elif depth == 0:
            stray.append(line.number)
        elif name == "END" and value == "VCARD":
            depth -= 1
            if depth == 0:
                out.append(_card(data[begin:line.end], begin_line, uid, name_for))
        elif depth == 1 and name == "UID" and uid is None:
            uid = line.value
    if depth:
        out.append(SplitObject(f"vCard (line {begin_line})", error="BEGIN:VCARD is never closed"))
    if stray:
        out.append(SplitObject(f"line {stray[0]}", error=f"{len(stray)} line(s) outside any "
                               f"BEGIN:VCARD ... END:VCARD (first: line {stray[0]})"))
    return out


def _card(data: bytes, number: int, uid: str | None,
          name_for: Callable[[str], str]) -> SplitObject:
    if not uid:
        return SplitObject(f"vCard (line {number})", data=data,
                           error="the vCard has no UID (RFC 6352 §5.1 requires one)")
    return SplitObject(f"vCard {uid!r} (line {number})", name_for(uid), uid, data)
