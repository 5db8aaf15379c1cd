"""vCard validation (inspect_card) and partial address-data (select_properties), against
the corpus in tests/corpus/vcard and hand-made edge cases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safehold.core.formats.vcard import CardInfo, InvalidAddressData, inspect_card, select_properties

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "vcard"
VALID = sorted((CORPUS / "valid").glob("*.vcf"))
INVALID = sorted((CORPUS / "invalid").glob("*.vcf"))

# What each valid file must yield; a new corpus file must be added here.
EXPECTED = {
    "android-3.0-quoted-printable.vcf": ("3c1d5e7f-android-0042", "3.0", "François Éléonore"),
    "davx5-3.0-nonascii.vcf": ("d7c6b1e0-3f4a-4c55-8a1e-5f0e2c9b7a11", "3.0", "Zoë Ångström-Müller"),
    "davx5-4.0-datauri-photo.vcf": ("urn:uuid:2b8f4d0e-9a3c-4f61-b7d2-0c1e5a6f7b89", "4.0", "山田 太郎"),
    "davx5-4.0-group.vcf": ("7e0c2a5d-group-4b1f-9d3e-aa55cc77ee99", "4.0", "Hiking club"),
    "evolution-4.0-long-folded-utf8-split.vcf": ("urn:uuid:e1e2e3e4-evolution-4-0", "4.0", "Ärger Überall"),
    "google-carddav-3.0.vcf": ("3a5b7c9d0e1f", "3.0", "Ada Lovelace"),
    "ios-17-contact.vcf": ("6A2F9E4B-7C1D-4E3A-9B8F-1234567890AB", "3.0", "Dr. Johnny Q. Appleseed Jr."),
    "ios-17-photo.vcf": ("0B5E3C6A-1F2D-4A8B-9C7E-PHOTO0000001", "3.0", "Polly Photo"),
    "ios-group.vcf": ("F1A2B3C4-GROUP-0001", "3.0", "Family"),
    "minimal-3.0-no-fn-lowercase.vcf": ("minimal-0001", "3.0", None),
    "outlook-caldavsynchronizer-bom.vcf": ("AAAAAHk0ZkFlSnhFQi1PdXRsb29rLUNvbnRhY3Q", "3.0",
                                           "William Henry Gates III"),
    "thunderbird-115-4.0.vcf": ("6b4a1e1c-4e8f-4d0a-8c61-5f7d9a0b2c3e", "4.0", "Marie Curie"),
}

# Why each invalid file is rejected: the message must say so.
REASONS = {
    "android-2.1-export.vcf": "vCard 2.1 is not accepted",
    "content-after-end.vcf": "after END:VCARD",
    "empty-uid.vcf": "no UID",
    "empty.vcf": "not a vCard",
    "end-before-begin.vcf": "before any BEGIN:VCARD",
    "end-vevent-inside.vcf": "END:VEVENT",
    "google-export-no-uid.vcf": "no UID",
    "html-error-page.vcf": "not a vCard",
    "icalendar.vcf": "not a vCard",
    "latin1-bytes.vcf": "not UTF-8",
    "missing-begin.vcf": "expected BEGIN:VCARD",
    "missing-end.vcf": "END:VCARD is missing",
    "missing-version.vcf": "no VERSION",
    "nested-begin-missing-end.vcf": "BEGIN:VCARD at line 5",
    "nul-in-charset-param.vcf": "a NUL byte at line 4",
    "nul-in-uid.vcf": "a NUL byte at line 3",
    "only-blank-lines.vcf": "empty",
    "two-uids.vcf": "2 UID properties",
    "two-vcards.vcf": "more than one vCard",
    "unescaped-newline-in-note.vcf": "line 6 is not a vCard content line",
    "unknown-version.vcf": "unsupported vCard VERSION '5.0'",
    "unterminated-quoted-param.vcf": "line 5 is not a vCard content line",
}


def _card(*lines: str, eol: str = "\r\n") -> bytes:
    return eol.join(["BEGIN:VCARD", *lines, "END:VCARD", ""]).encode()


def _names(data: bytes) -> set[str]:
    """Property names found by a regex, independent of the parser under test."""
    text = data.decode("utf-8", "replace")
    return {m.upper() for m in re.findall(r"^\ufeff?(?:[\w-]+\.)?([A-Za-z][\w-]*)[;:]", text, re.M)}


def _without_trailing_blank_lines(data: bytes) -> bytes:
    return re.sub(rb"(\r?\n)(?:\r?\n)+\Z", rb"\1", data)


# --- corpus ----------------------------------------------------------------------------


def test_corpus_is_fully_described() -> None:
    assert {p.name for p in VALID} == set(EXPECTED)
    assert {p.name for p in INVALID} == set(REASONS)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_corpus_inspects(path: Path) -> None:
    uid, version, fn = EXPECTED[path.name]
    assert inspect_card(path.read_bytes()) == CardInfo(uid=uid, version=version, fn=fn)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_corpus_is_rejected_with_reason(path: Path) -> None:
    with pytest.raises(InvalidAddressData) as info:
        inspect_card(path.read_bytes())
    assert REASONS[path.name] in str(info.value)
    assert info.value.precondition == "valid-address-data"


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_selecting_every_property_returns_the_original_bytes(path: Path) -> None:
    data = path.read_bytes()
    assert select_properties(data, sorted(_names(data))) == _without_trailing_blank_lines(data)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_selecting_nothing_keeps_a_valid_card(path: Path) -> None:
    data = path.read_bytes()
    info = inspect_card(data)
    reduced = select_properties(data, [])
    assert inspect_card(reduced) == CardInfo(uid=info.uid, version=info.version, fn=None)
    assert _names(reduced) == {"BEGIN", "VERSION", "UID", "END"}


# --- inspect_card edge cases -----------------------------------------------------------


def test_exception_shape() -> None:
    err = InvalidAddressData("boom")
    assert isinstance(err, ValueError)
    assert str(err) == "boom"
    assert err.precondition == InvalidAddressData.precondition == "valid-address-data"


@pytest.mark.parametrize("eol", ["\r\n", "\n"])
def test_line_endings(eol: str) -> None:
    data = _card("VERSION:3.0", "FN:Doe\\, John", "UID: u-1 ", eol=eol)
    assert inspect_card(data) == CardInfo(uid="u-1", version="3.0", fn="Doe, John")


def test_mixed_line_endings_and_trailing_blank_lines() -> None:
    data = b"BEGIN:VCARD\nVERSION:4.0\r\nFN:Mix\nUID:m\r\nEND:VCARD\r\n\r\n\n"
    assert inspect_card(data).uid == "m"


def test_fold_inside_a_utf8_character_and_tab_fold() -> None:
    fn = "Jürgen Ærøskøbing".encode()
    split = fn.index("ü".encode()) + 1  # between the two octets of ü
    data = (b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:" + fn[:split] + b"\r\n " + fn[split:]
            + b"\r\nUI\r\n\tD:folded-uid\r\nEND:VCARD\r\n")
    assert inspect_card(data) == CardInfo(uid="folded-uid", version="3.0", fn="Jürgen Ærøskøbing")


def test_quoted_printable_with_declared_charset() -> None:
    data = _card("VERSION:3.0", "FN;CHARSET=ISO-8859-1;ENCODING=QUOTED-PRINTABLE:Ren=E9 M=FCller", "UID:qp")
    assert inspect_card(data).fn == "René Müller"


def test_quoted_printable_with_unknown_charset_falls_back_to_utf8() -> None:
    data = _card("VERSION:3.0", "FN;CHARSET=X-NONSENSE;QUOTED-PRINTABLE:Ren=C3=A9", "UID:qp")
    assert inspect_card(data).fn == "René"


@pytest.mark.parametrize("charset", ["rot13", "idna"])
def test_quoted_printable_with_a_charset_python_cannot_decode_with_falls_back_to_utf8(charset: str) -> None:
    data = _card("VERSION:3.0", f"FN;CHARSET={charset};ENCODING=QUOTED-PRINTABLE:Ren=C3=A9", "UID:qp")
    assert inspect_card(data).fn == "René"


@pytest.mark.parametrize("name", ["nul-in-uid.vcf", "nul-in-charset-param.vcf"])
def test_a_nul_byte_is_refused_on_the_way_in_only(name: str) -> None:
    """Cards stored before the check must still restore and undelete (stored=True)."""
    from safehold.core.items import ADDRESSBOOK, InvalidItem, index_for

    data = (CORPUS / "invalid" / name).read_bytes()
    with pytest.raises(InvalidItem, match="a NUL byte"):
        index_for(ADDRESSBOOK, data)
    index = index_for(ADDRESSBOOK, data, stored=True)
    assert index is not None and index.uid == inspect_card(data, stored=True).uid


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1b", "\x7f", "\x01"])
def test_other_control_characters_are_stored_as_phones_hold_them(char: str) -> None:
    """RFC 6350 §3.3 allows none, but a vertical tab comes with text pasted from a word
    processor: refusing the PUT would leave that contact out of every backup."""
    data = _card("VERSION:3.0", "UID:vt-1", "FN:Ann", f"NOTE:first{char}second")
    assert inspect_card(data).uid == "vt-1"
    _same_answer(data)


def test_a_stored_card_with_a_nul_in_its_charset_is_still_read() -> None:
    """A NUL in the name made bytes.decode raise ValueError, not LookupError (a 500). Such
    cards are refused now (a NUL byte), but ones stored before may meet a filter."""
    from safehold.core.formats.vcard import _Property, _value_text

    prop = _Property("", "FN", {"CHARSET": ("U\x00TF-8",), "ENCODING": ("QUOTED-PRINTABLE",)}, "Ren=C3=A9")
    assert _value_text(prop) == "René"


def test_quoted_printable_soft_break_is_not_confused_with_base64_padding() -> None:
    data = _card("VERSION:3.0", "UID:pad", "PHOTO;ENCODING=b;TYPE=PNG:iVBORw0KGgo=", "FN:After")
    assert inspect_card(data).fn == "After"


def test_equals_sign_before_an_ordinary_fold() -> None:
    data = _card("VERSION:3.0", "UID:eq", "FN:a=\r\n b=\r\n\tc")
    assert inspect_card(data).fn == "a=b=c"


def test_quoted_printable_parameter_split_by_a_fold() -> None:
    data = _card("VERSION:3.0", "UID:qp", "FN;ENCODING=QUOTED-\r\n PRINTABLE:Jos=\r\n=C3=A9")
    assert inspect_card(data).fn == "José"


def test_first_fn_wins_when_4_0_has_alternatives() -> None:
    data = _card("VERSION:4.0", "UID:alt", "FN;ALTID=1;LANGUAGE=ja:山田", "FN;ALTID=1;LANGUAGE=en:Yamada")
    assert inspect_card(data).fn == "山田"


def test_version_may_appear_late_and_with_spaces() -> None:
    assert inspect_card(_card("UID:late", "FN:x", "VERSION: 4.0 ")).version == "4.0"


@pytest.mark.parametrize("data, reason", [
    (_card("VERSION:3.0", "VERSION:4.0", "UID:v"), "2 VERSION properties"),
    (b"garbage\r\n" + _card("VERSION:3.0", "UID:g"), "not a vCard"),
    (b" BEGIN:VCARD\r\nVERSION:3.0\r\nUID:x\r\nEND:VCARD\r\n", "not a vCard"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not a vCard"),
    (_card("VERSION:3.0", "UID:x", "FN :spaced name"), "line 4 is not a vCard content line"),
    (_card("VERSION:3.0", "UID:x", "a.b.EMAIL:two groups"), "not a vCard content line"),
    (_card("VERSION:3.0", "UID:x", "BEGIN:VEVENT", "END:VEVENT"), "BEGIN:VEVENT"),
    (_card("VERSION:3.0", "UID:x") + b"END:VCARD\r\n", "after END:VCARD"),
])
def test_rejections(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidAddressData, match=re.escape(reason)):
        inspect_card(data)


def test_not_utf8_error_chains_the_decode_error() -> None:
    with pytest.raises(InvalidAddressData) as info:
        inspect_card(_card("VERSION:3.0", "UID:x") .replace(b"UID:x", b"UID:\xff"))
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


# --- select_properties -----------------------------------------------------------------


def test_select_keeps_groups_folds_and_crlf_byte_identical() -> None:
    data = (CORPUS / "valid" / "ios-17-contact.vcf").read_bytes()
    out = select_properties(data, ["email", "Note"])
    assert out == (
        b"BEGIN:VCARD\r\nVERSION:3.0\r\n"
        b"item1.EMAIL;type=INTERNET;type=pref:johnny@example.com\r\n"
        b"item2.EMAIL;type=INTERNET:j.appleseed@work.example\r\n"
        + re.search(rb"NOTE:.*?\r\n(?! )", data, re.S).group(0)  # type: ignore[union-attr]
        + b"UID:6A2F9E4B-7C1D-4E3A-9B8F-1234567890AB\r\nEND:VCARD\r\n")
    assert b"\r\n " in out  # the NOTE stayed folded exactly as the phone folded it


def test_select_by_qualified_group_name() -> None:
    data = (CORPUS / "valid" / "ios-17-contact.vcf").read_bytes()
    out = select_properties(data, ["ITEM2.email", "item2.X-ABLabel"])
    assert b"item2.EMAIL;type=INTERNET:j.appleseed@work.example\r\nitem2.X-ABLabel:Conference\r\n" in out
    assert b"item1." not in out


def test_select_keeps_lf_and_missing_final_newline() -> None:
    data = (CORPUS / "valid" / "minimal-3.0-no-fn-lowercase.vcf").read_bytes()
    assert select_properties(data, []) == b"begin:vcard\nversion:3.0\nuid:minimal-0001\nend:vcard"


def test_select_keeps_quoted_printable_soft_breaks() -> None:
    data = (CORPUS / "valid" / "android-3.0-quoted-printable.vcf").read_bytes()
    out = select_properties(data, ["NOTE"])
    note = data[data.index(b"NOTE;"):data.index(b"X-ANDROID-CUSTOM")]
    assert note.count(b"=\r\n") == 2
    assert note in out
    assert b"FN;" not in out


def test_select_photo_is_kept_or_dropped_whole() -> None:
    data = (CORPUS / "valid" / "ios-17-photo.vcf").read_bytes()
    with_photo = select_properties(data, ["PHOTO"])
    photo = data[data.index(b"PHOTO;"):data.index(b"UID:")]
    assert len(photo) > 300_000
    assert photo in with_photo
    assert len(select_properties(data, ["FN"])) < 300


def test_select_keeps_the_bom_with_the_first_line() -> None:
    data = (CORPUS / "valid" / "outlook-caldavsynchronizer-bom.vcf").read_bytes()
    assert select_properties(data, ["FN"]).startswith(b"\xef\xbb\xbfBEGIN:VCARD\r\n")


LINES = ["FN:Ann", "EMAIL;TYPE=work:ann@example.com", "item1.TEL:+1 555", "item1.X-ABLabel:Boat",
         "NOTE:a\\nb", "X-FOO;X-P=\"q:r\":v", "CATEGORIES:a,b", "TEL;TYPE=cell:1"]


@settings(database=None, deadline=None)
@given(st.lists(st.sampled_from(LINES), max_size=8), st.sets(st.sampled_from(
    ["FN", "EMAIL", "TEL", "X-ABLABEL", "NOTE", "X-FOO", "CATEGORIES", "ITEM1.TEL", "item1.tel", "email"])),
    st.sampled_from(["\r\n", "\n"]), st.integers(min_value=2, max_value=40))
def test_select_is_a_byte_identical_subsequence(lines: list[str], names: set[str], eol: str,
                                                 width: int) -> None:
    folded = [eol.encode().join(_fold(line.encode(), width)) + eol.encode()
              for line in ["BEGIN:VCARD", "VERSION:3.0", *lines, "UID:sub", "END:VCARD"]]
    data = b"".join(folded)
    out = select_properties(data, sorted(names))
    kept = [line for line in folded if out.find(line) >= 0]
    assert b"".join(kept) == out  # only whole original lines, in their original order
    assert inspect_card(out).uid == "sub"
    wanted = {n.upper() for n in names}
    for source, line in zip(lines, folded[2:-2], strict=True):
        name = re.split("[;:]", source)[0].upper()
        assert (line in kept) == (name in wanted or name.split(".")[-1] in wanted)


def _fold(line: bytes, width: int) -> list[bytes]:
    return [line[:width]] + [b" " + line[i:i + width] for i in range(width, len(line), width)]


# --- the quick path (_inspect_simple) against the full parse ----------------------------

from safehold.core.formats import vcard as vcard_mod  # noqa: E402


def _full(data: bytes) -> CardInfo | str:
    try:
        return vcard_mod._inspect_full(data)
    except InvalidAddressData as exc:
        return f"rejected: {exc}"


def _same_answer(data: bytes) -> None:
    """The quick path answers only what the full parse accepts, and the same way."""
    quick = vcard_mod._inspect_simple(data)
    full = _full(data)
    if isinstance(full, CardInfo):
        assert quick in (None, full), data
        assert inspect_card(data) == full
    else:
        assert quick is None, data


@pytest.mark.parametrize("path", VALID + INVALID, ids=lambda p: p.name)
def test_quick_path_agrees_on_the_corpus(path: Path) -> None:
    _same_answer(path.read_bytes())


def test_quick_path_takes_a_plain_card() -> None:
    data = _card("VERSION:3.0", "UID:u-1", "FN:A\\, B", "EMAIL;TYPE=INTERNET,HOME:a@b.c",
                 "item1.TEL;type=cell:+1")
    assert vcard_mod._inspect_simple(data) == CardInfo("u-1", "3.0", "A, B") == _full(data)


_PIECES = ["BEGIN:VCARD", "END:VCARD", "begin:vcard", "END:VEVENT", "BEGIN:VEVENT", "VERSION:3.0",
           "VERSION:4.0", "version: 4.0 ", "VERSION:2.1", "VERSION:5.0", "UID:a", "UID:b", "UID:",
           "UID: ", "item1.UID:c", "FN:X", "FN;CHARSET=UTF-8:Y", "FN:a\\nb\\,c\\;d", "fn:lower",
           "FN;ENCODING=QUOTED-PRINTABLE:=C3=A9", "NOTE:x=", "NOTE:soft=", "EMAIL;TYPE=a,b:c@d",
           "TEL;CELL:1", "X-A;P=\"q:;\":v", "X-B;=x:y", "X-C;P=a\"b:c", "A.B.C:x", "NO COLON",
           ";X:y", ":v", "X-D;P=:v", "X-E;P=a,,b:v", "", " ", "\t", "\x0b", "\xa0", " folded",
           "\tfolded", "é:x", "X-F:é", "X-G:\u2028", "N:;;;;", "X-H\r:v", "X-I:a\rb"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=9), st.sampled_from(["\r\n", "\n"]),
       st.sampled_from(["none", "card", "valid card"]), st.booleans(),
       st.sampled_from([b"", b"", b"\xef\xbb\xbf", b"\xff"]))
def test_quick_path_agrees_on_generated_cards(body: list[str], eol: str, wrap: str,
                                              end_eol: bool, prefix: bytes) -> None:
    # "valid card": a card the full parse accepts unless a piece breaks it (about half).
    inner = ["VERSION:4.0", "UID:u", *[p for p in body if not p.startswith(("UID", "VERSION"))]] \
        if wrap == "valid card" else body
    lines = inner if wrap == "none" else ["BEGIN:VCARD", *inner, "END:VCARD"]
    _same_answer(prefix + (eol.join(lines) + (eol if end_eol else "")).encode())
