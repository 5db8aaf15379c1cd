"""vCard for CardDAV: validation and UID extraction (RFC 6352 §5.1, §6.3.2.1), the
addressbook-query filter (RFC 6352 §10.5) and partial address-data (RFC 6352 §10.4.2).

The stored bytes are the client's bytes (promise 3); nothing here re-serializes a card.

We read vCards with a small line parser of our own rather than vobject: vobject
re-serializes (select_properties must keep lines byte-identical), it loses the original
lines and their folding, it cannot tell us which physical lines make up a property, and
its strictness is in the wrong places (it fails on quoted-printable soft line breaks and
on a UTF-8 BOM, yet accepts several cards, or an iCalendar, in one body). The grammar we
need is one page of RFC 6350 §3.3.

Errors::

    ValueError
     └── InvalidAddressData       the body is not one acceptable vCard
                                  (CARDDAV:valid-address-data, RFC 6352 §6.3.2.1)
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from safehold.core.formats.contentlines import nul_byte
from safehold.core.formats.textmatch import TextMatch, check_collation, text_match

VERSIONS = ("3.0", "4.0")
# Kept by select_properties whatever was asked, so that the result is still a vCard
# (RFC 6350 §6.1.1, §6.1.2, §6.7.9) and still names its UID (RFC 6352 §5.1).
_ALWAYS_KEPT = frozenset({"BEGIN", "END", "VERSION", "UID"})
_BOM = "\ufeff"  # Windows tools often start UTF-8 files with one

# RFC 6350 §3.3: [group "."] name. Underscores are not in the grammar, but X- names with
# them occur in the wild and cost nothing to accept.
_NAME = re.compile(r"(?:([A-Za-z0-9_-]+)\.)?([A-Za-z0-9_-]+)")
# param = param-name ["=" param-value *("," param-value)]; a value is a quoted string or
# runs up to the next , ; or :. A bare name (vCard 2.1 "TEL;CELL:") means TYPE=CELL.
_PARAM = re.compile(r'([A-Za-z0-9_-]+)(?:=((?:"[^"]*"|[^";:,]*)(?:,(?:"[^"]*"|[^";:,]*))*))?')
_PARAM_VALUE_ITEM = re.compile(r'(?:^|,)(?:"([^"]*)"|([^",]*))')
# RFC 6350 §3.4 escapes, plus "\:" and '\"' which Gmail and Apple write in 3.0 cards.
_TEXT_ESCAPE = re.compile(r'\\([\\,;:"nN])')
_CARET = re.compile(r"\^([n'^])")  # RFC 6868 parameter value encoding
_CARET_CHARS = {"n": "\n", "'": '"', "^": "^"}


class InvalidAddressData(ValueError):
    """The body is not a single vCard we accept; maps to a 403/409 with the
    CARDDAV:valid-address-data precondition (RFC 6352 §6.3.2.1)."""

    precondition: str = "valid-address-data"

    def __init__(self, message: str) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class CardInfo:
    uid: str
    version: str  # "3.0" or "4.0"
    fn: str | None


@dataclass(frozen=True)
class ParamFilter:
    name: str
    is_not_defined: bool = False
    text_match: TextMatch | None = None


@dataclass(frozen=True)
class PropFilter:
    name: str
    test: str = "anyof"  # "anyof" | "allof" (RFC 6352 §10.5.1)
    is_not_defined: bool = False
    text_matches: tuple[TextMatch, ...] = ()
    param_filters: tuple[ParamFilter, ...] = ()


@dataclass(frozen=True)
class AddressbookFilter:
    test: str = "anyof"
    prop_filters: tuple[PropFilter, ...] = ()


# --- lines -----------------------------------------------------------------------------


# _Line and _Property are NamedTuples, not frozen dataclasses: a PUT makes two per content
# line, and a frozen dataclass costs three times as much to create.
class _Line(NamedTuple):
    number: int  # first physical line, 1-based, for error messages
    raw: bytes  # exactly as sent: folds and line endings included
    content: bytes  # unfolded, without the line ending


class _Property(NamedTuple):
    group: str
    name: str  # upper case
    params: Mapping[str, tuple[str, ...]]  # upper-case names; all values of all occurrences
    value: str  # as written, still escaped/encoded

    def qualified(self) -> str:
        return f"{self.group}.{self.name}".upper() if self.group else self.name


def _physical_lines(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, content) of each physical line; CRLF and bare LF both end a line."""
    pos, size = 0, len(data)
    while pos < size:
        newline = data.find(b"\n", pos)
        end = size if newline < 0 else newline + 1
        content = data[pos:end].removesuffix(b"\n").removesuffix(b"\r")
        yield pos, end, content
        pos = end


def _logical_lines(data: bytes) -> list[_Line]:
    """Group physical lines into content lines. Works on bytes and decodes only after
    unfolding, because naive clients fold inside a multi-octet UTF-8 character, which
    RFC 6350 §3.2 discourages but does not forbid."""
    lines: list[_Line] = []
    parts: list[bytes] = []
    start = end = number = 0
    quoted_printable: bool | None = None  # decided once per line, or every "=" would cost O(n)
    for index, (line_start, line_end, content) in enumerate(_physical_lines(data), 1):
        if parts and parts[-1].endswith(b"=") and quoted_printable is None:
            quoted_printable = _quoted_printable_header(b"".join(parts))
        if parts and parts[-1].endswith(b"=") and quoted_printable:
            # A quoted-printable soft line break ("=" at the end, RFC 2045 §6.7) continues
            # the value on the next line, which is not indented. vCard 2.1 writers do this,
            # and some of them label the result VERSION:3.0.
            parts[-1] = parts[-1][:-1]
            parts.append(content)
        elif parts and content[:1] in (b" ", b"\t"):
            parts.append(content[1:])  # RFC 6350 §3.2: CRLF + one white space is a fold
        else:
            if parts:
                lines.append(_Line(number, data[start:end], b"".join(parts)))
            start, number, parts, quoted_printable = line_start, index, [content], None
        end = line_end
    if parts:
        lines.append(_Line(number, data[start:end], b"".join(parts)))
    return lines


def _quoted_printable_header(prefix: bytes) -> bool | None:
    """Whether the line being unfolded is quoted-printable; None while its name and
    parameters are still incomplete (they end at the first unquoted colon)."""
    prop = _parse(prefix.decode("utf-8", "replace"))
    return None if prop is None else _is_quoted_printable(prop)


def _is_quoted_printable(prop: _Property) -> bool:
    encodings = prop.params.get("ENCODING", ()) + prop.params.get("TYPE", ())
    return any(e.upper() == "QUOTED-PRINTABLE" for e in encodings)


def _text(line: _Line, errors: str = "strict") -> str:
    text = line.content.decode("utf-8", errors)
    return text.removeprefix(_BOM) if line.number == 1 else text


def _parse(text: str) -> _Property | None:
    """Split one unfolded content line (RFC 6350 §3.3); None when it is not one."""
    name = _NAME.match(text)
    if name is None:
        return None
    pos = name.end()
    params: dict[str, tuple[str, ...]] = {}
    while text.startswith(";", pos):
        param = _PARAM.match(text, pos + 1)
        if param is None:
            return None
        values: tuple[str, ...]
        if param.group(2) is None:
            key, values = "TYPE", (param.group(1),)
        else:
            key, values = param.group(1).upper(), _split_param_values(param.group(2))
        # TYPE=work;TYPE=home means the same as TYPE=work,home (RFC 6350 §5.6).
        params[key] = params.get(key, ()) + values
        pos = param.end()
    if not text.startswith(":", pos):
        return None
    return _Property(name.group(1) or "", name.group(2).upper(), params, text[pos + 1 :])


def _split_param_values(raw: str) -> tuple[str, ...]:
    # _PARAM already checked the shape, so each item is a quoted or a plain value.
    values = raw.split(",") if '"' not in raw else [q or p for q, p in _PARAM_VALUE_ITEM.findall(raw)]
    return tuple(_CARET.sub(_uncaret, v) if "^" in v else v for v in values)


def _uncaret(match: re.Match[str]) -> str:
    return _CARET_CHARS[match.group(1)]


def _value_text(prop: _Property) -> str:
    """The value as text to compare: quoted-printable decoded, RFC 6350 §3.4 escapes
    resolved. Structured values (N, ADR) stay one string with their ";" separators."""
    value = prop.value
    if _is_quoted_printable(prop):
        charset = (prop.params.get("CHARSET") or ("utf-8",))[0]
        octets = binascii.a2b_qp(value.encode("utf-8"))
        try:
            value = octets.decode(charset, "replace")
        except (LookupError, ValueError):  # an unknown charset, or a name with a NUL in it
            value = octets.decode("utf-8", "replace")
    return _TEXT_ESCAPE.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


# --- validation ------------------------------------------------------------------------


def inspect_card(data: bytes, *, stored: bool = False) -> CardInfo:
    """Validate one vCard object resource and extract what the server indexes.

    Lenient where clients differ (folding, CRLF or LF, quoted-printable, groups, X-
    properties, missing FN), strict where the server would otherwise misbehave: one card
    per resource, a UID, balanced BEGIN/END, a VERSION we can serve back, no NUL byte
    (contentlines.nul_byte; ``stored`` skips that check, for bytes accepted before it
    existed: items.index_for)."""
    simple = _inspect_simple(data)
    return simple if simple is not None else _inspect_full(data, stored)


def _inspect_full(data: bytes, stored: bool = False) -> CardInfo:
    """``inspect_card`` by the full parse: every body, every error message."""
    body = _card_properties(data)
    # After the structure, so that a body that is no vCard at all (an image) is named so.
    nul = None if stored else nul_byte(data)
    if nul is not None:
        raise InvalidAddressData(f"a NUL byte at {nul}: vCard text cannot hold one "
                                 "(RFC 6350 §3.3)")
    version = _single_value(body, "VERSION", "RFC 6350 §6.7.9")
    if version is None:
        raise InvalidAddressData("the vCard has no VERSION property (RFC 6350 §6.7.9)")
    if version == "2.1":
        raise InvalidAddressData(
            "vCard 2.1 is not accepted: CardDAV stores vCard 3.0 or 4.0 (RFC 6352 §5.1); "
            "export the contact as vCard 3.0 or 4.0")
    if version not in VERSIONS:
        raise InvalidAddressData(f"unsupported vCard VERSION {version!r}; accepted: 3.0, 4.0")
    uid = _single_value(body, "UID", "RFC 6350 §6.7.6")
    if not uid:
        raise InvalidAddressData("the vCard has no UID; CardDAV requires one (RFC 6352 §5.1)")
    # FN is required (RFC 6350 §6.2.1, and RFC 2426 for 3.0), but cards without one exist
    # (old exports, group cards) and refusing them would only strand them on the phone.
    fn = next((_value_text(p) for p in body if p.name == "FN"), None)
    return CardInfo(uid=uid, version=version, fn=fn)


# One content line without quotes (RFC 6350 §3.3): the language _parse accepts for
# such a line (the parameter values cannot hold ";", ":" or ","), in one match.
_SIMPLE_LINE = re.compile(r'(?:([A-Za-z0-9_-]+)\.)?([A-Za-z0-9_-]+)'
                          r'((?:;[A-Za-z0-9_-]+(?:=[^";:,]*(?:,[^";:,]*)*)?)*):(.*)', re.DOTALL)
_BLANK = " \t\r\x0b\x0c"  # what bytes.strip() strips from a line (blank lines are skipped)


def _inspect_simple(data: bytes) -> CardInfo | None:
    """``inspect_card`` of a card as nearly every client writes one: UTF-8, no folds, no
    quotes, no line ending in "=" (quoted-printable), no BOM; None for every other body
    and for every body the full parse would reject, which then decides (and words the
    error). The same answer as the full parse in a sixth of the time (a vCard PUT
    validated in ~100 µs, most of the CPU of its validation, py-spy):
    tests/unit/test_vcard.py compares the two on the corpus and on generated cards."""
    if b'"' in data or b"\n " in data or b"\n\t" in data or data.startswith(b"\xef\xbb\xbf") \
            or b"\0" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    state = 0  # 0: before BEGIN:VCARD, 1: inside, 2: after END:VCARD
    version: list[str] = []
    uid: list[str] = []
    fn: str | None = None
    match = _SIMPLE_LINE.fullmatch
    for line in text.split("\n"):
        if line.endswith("\r"):
            line = line[:-1]
        if line.endswith("="):
            return None
        if not line.strip(_BLANK):
            continue
        found = match(line)
        if found is None or state == 2:
            return None
        group, name, params, value = found.groups()
        name = name.upper()
        if state == 0:
            if name != "BEGIN" or value.strip().upper() != "VCARD":
                return None
            state = 1
        elif name == "BEGIN":
            return None
        elif name == "END":
            if value.strip().upper() != "VCARD":
                return None
            state = 2
        elif name == "VERSION":
            version.append(value.strip())
        elif name == "UID":
            uid.append(value.strip())
        elif name == "FN" and fn is None:
            if params:
                return None  # ENCODING=QUOTED-PRINTABLE would change its text
            fn = _value_text(_Property(group or "", name, {}, value))
    if state != 2 or len(version) != 1 or version[0] not in VERSIONS or len(uid) != 1 \
            or not uid[0]:
        return None
    return CardInfo(uid=uid[0], version=version[0], fn=fn)


def _single_value(body: Sequence[_Property], name: str, rfc: str) -> str | None:
    values = [p.value.strip() for p in body if p.name == name]
    if len(values) > 1:
        raise InvalidAddressData(
            f"the vCard has {len(values)} {name} properties; at most one is allowed ({rfc})")
    return values[0] if values else None


def _card_properties(data: bytes) -> list[_Property]:
    """The properties between BEGIN:VCARD and END:VCARD; raises unless ``data`` is
    exactly one well-formed vCard (RFC 6352 §5.1: one vCard per resource)."""
    state = "before"
    body: list[_Property] = []
    for line in _logical_lines(data):
        if not line.content.strip():
            continue  # blank lines: vCard 2.1 base64 ends with one, many files end with one
        if state == "before":
            _expect_begin(line)
            state = "inside"
            continue
        text = _decoded(line)
        prop = _parse(text)
        if prop is None:
            raise InvalidAddressData(
                f"line {line.number} is not a vCard content line (name;params:value): {text[:60]!r} "
                "(an unescaped line break in a value, or an unclosed quote?)")
        kind = prop.value.strip().upper()
        if state == "after":
            if prop.name == "BEGIN" and kind == "VCARD":
                raise InvalidAddressData(
                    "the body holds more than one vCard; CardDAV stores exactly one per resource "
                    "(RFC 6352 §5.1)")
            raise InvalidAddressData(f"unexpected content after END:VCARD at line {line.number}")
        if prop.name == "BEGIN":
            raise InvalidAddressData(
                f"unbalanced BEGIN/END: BEGIN:{kind} at line {line.number} inside the vCard "
                "(a missing END:VCARD, or a nested vCard, which CardDAV does not accept)")
        if prop.name == "END":
            if kind != "VCARD":
                raise InvalidAddressData(f"unbalanced BEGIN/END: END:{kind} at line {line.number}")
            state = "after"
            continue
        body.append(prop)
    if state == "before":
        raise InvalidAddressData("not a vCard: the body is empty")
    if state == "inside":
        raise InvalidAddressData("unbalanced BEGIN/END: END:VCARD is missing")
    return body


def _expect_begin(line: _Line) -> None:
    text = _text(line, "replace")
    prop = _parse(text)
    if prop is not None and prop.name == "BEGIN" and prop.value.strip().upper() == "VCARD":
        return
    if prop is not None and prop.name == "END":
        raise InvalidAddressData(f"unbalanced BEGIN/END: {text[:60]!r} before any BEGIN:VCARD")
    raise InvalidAddressData(f"not a vCard: expected BEGIN:VCARD, found {text[:60]!r}")


def _decoded(line: _Line) -> str:
    try:
        return _text(line)
    except UnicodeDecodeError as err:
        raise InvalidAddressData(
            f"line {line.number} is not UTF-8 text (RFC 6350 §3.1); "
            "export the contact as UTF-8") from err


# --- addressbook-query filter (RFC 6352 §10.5) -----------------------------------------


def matches(data: bytes, flt: AddressbookFilter) -> bool:
    """Evaluate a CARDDAV:filter against a stored card.

    ``data`` was validated when it was written, so this is lenient: lines that do not
    parse are ignored rather than failing a whole REPORT. Raises
    textmatch.UnsupportedCollation for a collation we lack (whether or not the card
    has the property) and ValueError for a ``test`` other than anyof/allof."""
    _check_filter(flt)
    if not flt.prop_filters:
        return True  # an empty filter selects every card
    props = _lenient_properties(data)
    return _combine(flt.test, (_prop_filter_matches(props, pf) for pf in flt.prop_filters))


def _check_filter(flt: AddressbookFilter) -> None:
    _check_test(flt.test)
    for pf in flt.prop_filters:
        _check_test(pf.test)
        for tm in pf.text_matches:
            check_collation(tm.collation)
        for param in pf.param_filters:
            if param.text_match is not None:
                check_collation(param.text_match.collation)


def _check_test(test: str) -> None:
    if test not in ("anyof", "allof"):
        raise ValueError(f"filter test must be 'anyof' or 'allof', not {test!r}")


def _combine(test: str, results: Iterable[bool]) -> bool:
    return all(results) if test == "allof" else any(results)


def _lenient_properties(data: bytes) -> list[_Property]:
    props = (_parse(_text(line, "replace")) for line in _logical_lines(data))
    return [p for p in props if p is not None and p.name not in ("BEGIN", "END")]


def _prop_filter_matches(props: Sequence[_Property], pf: PropFilter) -> bool:
    """RFC 6352 §10.5.1. Each instance of a repeated property (several EMAILs) is tried
    on its own: the prop-filter matches when one instance satisfies all (allof) or any
    (anyof) of its text-matches and param-filters."""
    wanted = pf.name.upper()
    candidates = [p for p in props if wanted in (p.name, p.qualified())]
    if pf.is_not_defined:
        return not candidates
    if not pf.text_matches and not pf.param_filters:
        return bool(candidates)
    return any(_instance_matches(p, pf) for p in candidates)


def _instance_matches(prop: _Property, pf: PropFilter) -> bool:
    value = _value_text(prop)
    texts = (text_match(value, tm) for tm in pf.text_matches)
    params = (_param_filter_matches(prop, f) for f in pf.param_filters)
    return _combine(pf.test, (hit for results in (texts, params) for hit in results))


def _param_filter_matches(prop: _Property, flt: ParamFilter) -> bool:
    """RFC 6352 §10.5.2. A multi-valued parameter (TYPE=work,home) is one parameter:
    it matches when any value matches, and negate-condition inverts that whole answer,
    so "TYPE not work" rejects TYPE=work,voice."""
    values = prop.params.get(flt.name.upper())
    if flt.is_not_defined:
        return values is None
    if values is None:
        return False
    tm = flt.text_match
    if tm is None:
        return True
    hit = any(text_match(v, replace(tm, negate=False)) for v in values)
    return hit != tm.negate


# --- partial address-data (RFC 6352 §10.4.2) -------------------------------------------


def select_properties(data: bytes, names: Sequence[str]) -> bytes:
    """The card with only the named properties (names case-insensitive; "item1.EMAIL"
    selects one group's property), plus BEGIN, END, VERSION and UID. Kept lines are the
    original bytes, folds and line endings included; blank lines are dropped."""
    wanted = {n.upper() for n in names} | _ALWAYS_KEPT
    kept: list[bytes] = []
    for line in _logical_lines(data):
        prop = _parse(_text(line, "replace"))
        if prop is not None and (prop.name in wanted or prop.qualified() in wanted):
            kept.append(line.raw)
    return b"".join(kept)
