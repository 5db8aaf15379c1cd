"""The CardDAV addressbook-query filter (RFC 6352 §10.5) evaluated by vcard.matches."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safehold.core.formats.textmatch import TextMatch, UnsupportedCollation
from safehold.core.formats.vcard import (
    AddressbookFilter,
    ParamFilter,
    PropFilter,
    inspect_card,
    matches,
)

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "vcard" / "valid"

CARD = b"\r\n".join([
    b"BEGIN:VCARD",
    b"VERSION:3.0",
    b"UID:card-1",
    "FN:José Müller-Lüdenscheidt".encode(),
    b"N:M\xc3\xbcller-L\xc3\xbcdenscheidt;Jos\xc3\xa9;;Dr.;",
    b"NICKNAME:me",
    b"EMAIL;TYPE=work,internet:jose@work.example",
    b"EMAIL;TYPE=home;TYPE=pref:jose@home.example",
    b"item1.EMAIL:jm@club.example",
    b"item1.X-ABLabel:Club",
    b"TEL;CELL:+49 151 0000",
    b"TEL;TYPE=\"voice,fax\":+49 30 1234",
    b"ADR;TYPE=work:;Suite 5\\, Floor 2;Hauptstra\xc3\x9fe 1;Berlin;;10115;Germany",
    b"NOTE:line one\\nline two\\; and \\\\ a backslash",
    b"X-CUSTOM;X-LABEL=\"say ^'hi^'\";X-EMPTY=:value",
    b"END:VCARD",
    b"",
])


def tm(value: str, match_type: str = "contains", collation: str = "i;unicode-casemap",
       negate: bool = False) -> TextMatch:
    return TextMatch(value=value, collation=collation, negate=negate, match_type=match_type)


def prop(name: str, *text: TextMatch, params: tuple[ParamFilter, ...] = (), test: str = "anyof",
         missing: bool = False) -> PropFilter:
    return PropFilter(name=name, test=test, is_not_defined=missing, text_matches=text, param_filters=params)


def query(*props: PropFilter, test: str = "anyof", data: bytes = CARD) -> bool:
    return matches(data, AddressbookFilter(test=test, prop_filters=props))


def test_the_card_is_valid() -> None:
    assert inspect_card(CARD).uid == "card-1"


# --- existence -------------------------------------------------------------------------


def test_empty_filter_matches_every_card() -> None:
    assert matches(CARD, AddressbookFilter())
    assert matches(CARD, AddressbookFilter(test="allof"))


@pytest.mark.parametrize("name, present", [
    ("FN", True), ("fn", True), ("Email", True), ("X-ABLABEL", True), ("PHOTO", False),
    ("item1.EMAIL", True), ("ITEM1.x-ablabel", True), ("item2.EMAIL", False), ("item1.TEL", False),
])
def test_property_defined_or_not(name: str, present: bool) -> None:
    assert query(prop(name)) is present
    assert query(prop(name, missing=True)) is not present


def test_is_not_defined_wins_over_text_matches() -> None:
    assert not query(prop("FN", tm("nobody"), missing=True))


# --- text-match on values --------------------------------------------------------------


@pytest.mark.parametrize("match_type, value, hit", [
    ("equals", "josé müller-lüdenscheidt", True),
    ("equals", "José", False),
    ("contains", "MÜLLER", True),
    ("contains", "Schmidt", False),
    ("starts-with", "josef", False),
    ("starts-with", "jose", True),  # RFC 5051 compares NFKD forms: é is e + U+0301
    ("starts-with", "JOSÉ", True),
    ("ends-with", "LÜDENSCHEIDT", True),
    ("ends-with", "José", False),
])
def test_match_types(match_type: str, value: str, hit: bool) -> None:
    assert query(prop("FN", tm(value, match_type))) is hit


@pytest.mark.parametrize("collation, value, hit", [
    ("i;unicode-casemap", "MÜLLER", True),
    ("i;ascii-casemap", "MüLLER", True),
    ("i;ascii-casemap", "MÜLLER", False),  # ASCII case mapping leaves Ü alone (RFC 4790 §9.2)
    ("i;octet", "Müller", True),
    ("i;octet", "müller", False),
])
def test_collations(collation: str, value: str, hit: bool) -> None:
    assert query(prop("FN", tm(value, collation=collation))) is hit


def test_unicode_casemap_ignores_composition() -> None:
    decomposed = unicodedata.normalize("NFD", "JOSÉ")
    assert query(prop("FN", tm(decomposed, "starts-with")))


def test_unknown_collation_raises_even_when_the_property_is_absent() -> None:
    with pytest.raises(UnsupportedCollation):
        query(prop("PHOTO", tm("x", collation="i;klingon")))
    with pytest.raises(UnsupportedCollation):
        query(prop("TEL", params=(ParamFilter("TYPE", text_match=tm("x", collation="en;nope")),)))


@pytest.mark.parametrize("bad", ["oneof", "ALLOF", ""])
def test_unknown_test_value_is_an_error(bad: str) -> None:
    with pytest.raises(ValueError, match="anyof"):
        query(prop("FN"), test=bad)
    with pytest.raises(ValueError, match="anyof"):
        query(prop("FN", tm("x"), test=bad))


def test_negate_condition() -> None:
    assert not query(prop("FN", tm("müller", negate=True)))
    assert query(prop("FN", tm("schmidt", negate=True)))
    # There is no value to test, so a negated match cannot hold either.
    assert not query(prop("PHOTO", tm("x", negate=True)))


def test_structured_values_match_as_unescaped_text() -> None:
    assert query(prop("N", tm("lüdenscheidt;josé")))
    assert query(prop("N", tm("Müller-Lüdenscheidt;José;;Dr.;", "equals", "i;octet")))
    assert query(prop("ADR", tm("Suite 5, Floor 2", collation="i;octet")))
    assert query(prop("ADR", tm("Hauptstrasse")))  # unicode-casemap folds ß to ss
    assert not query(prop("ADR", tm("Suite 5\\,", collation="i;octet")))


def test_text_escapes_are_resolved() -> None:
    assert query(prop("NOTE", tm("line one\nline two; and \\ a backslash", "equals", "i;octet")))


def test_repeated_properties_each_get_a_chance() -> None:
    assert query(prop("EMAIL", tm("@home.example", "ends-with")))
    assert query(prop("EMAIL", tm("jm@", "starts-with")))
    assert not query(prop("EMAIL", tm("@nowhere.example")))
    # negate holds for a card when one of its EMAILs does not contain the text
    assert query(prop("EMAIL", tm("work", negate=True)))


def test_allof_within_a_prop_filter_needs_one_instance_to_satisfy_everything() -> None:
    work = ParamFilter("TYPE", text_match=tm("work", "equals"))
    assert query(prop("EMAIL", tm("work.example"), params=(work,), test="allof"))
    assert not query(prop("EMAIL", tm("home.example"), params=(work,), test="allof"))
    assert query(prop("EMAIL", tm("home.example"), params=(work,), test="anyof"))
    assert not query(prop("EMAIL", tm("zzz"), tm("home"), test="allof"))
    assert query(prop("EMAIL", tm("zzz"), tm("home"), test="anyof"))


def test_filter_level_anyof_allof() -> None:
    yes, no = prop("FN", tm("josé")), prop("FN", tm("schmidt"))
    assert query(yes, no, test="anyof")
    assert not query(yes, no, test="allof")
    assert query(yes, yes, test="allof")
    assert not query(no, no, test="anyof")


def test_rfc_6352_section_8_6_4_example() -> None:
    # NICKNAME equals "me" or EMAIL contains "example.com" (any of); ours has the nickname.
    nick = prop("NICKNAME", tm("me", "equals"))
    mail = prop("EMAIL", tm("example.com"))
    assert query(nick, mail)
    assert not query(prop("NICKNAME", tm("you", "equals")), mail)


# --- param-filter ----------------------------------------------------------------------


@pytest.mark.parametrize("value, hit", [
    ("work", True), ("INTERNET", True),  # TYPE=work,internet
    ("pref", True), ("home", True),  # TYPE=home;TYPE=pref
    ("cell", False),
])
def test_param_values_from_lists_and_repeats(value: str, hit: bool) -> None:
    assert query(prop("EMAIL", params=(ParamFilter("type", text_match=tm(value, "equals")),))) is hit


def test_bare_vcard_2_1_style_parameter_counts_as_type() -> None:
    assert query(prop("TEL", params=(ParamFilter("TYPE", text_match=tm("cell", "equals")),)))


def test_quoted_parameter_value_with_comma_is_one_value() -> None:
    voice_fax = ParamFilter("TYPE", text_match=tm("voice,fax", "equals"))
    assert query(prop("TEL", params=(voice_fax,)))
    assert not query(prop("TEL", params=(ParamFilter("TYPE", text_match=tm("fax", "equals")),)))


def test_rfc_6868_caret_encoding_is_decoded() -> None:
    label = ParamFilter("X-LABEL", text_match=tm('say "hi"', "equals", "i;octet"))
    assert query(prop("X-CUSTOM", params=(label,)))


def test_param_defined_or_not() -> None:
    assert query(prop("X-CUSTOM", params=(ParamFilter("x-empty"),)))
    assert query(prop("X-CUSTOM", params=(ParamFilter("X-EMPTY", text_match=tm("", "equals")),)))
    assert not query(prop("FN", params=(ParamFilter("TYPE"),)))
    assert query(prop("FN", params=(ParamFilter("TYPE", is_not_defined=True),)))
    assert query(prop("EMAIL", params=(ParamFilter("TYPE", is_not_defined=True),)))  # item1.EMAIL
    assert not query(prop("NOTE", params=(ParamFilter("LANGUAGE", text_match=tm("x", negate=True)),)))


def test_negated_param_match_applies_to_the_whole_value_list() -> None:
    not_work = ParamFilter("TYPE", text_match=tm("work", "equals", negate=True))
    both = b"BEGIN:VCARD\nVERSION:3.0\nUID:p\nEMAIL;TYPE=work,voice:a@b\nEND:VCARD\n"
    assert not query(prop("EMAIL", params=(not_work,)), data=both)
    assert query(prop("EMAIL", params=(not_work,)))  # the home;pref address


# --- real cards ------------------------------------------------------------------------


def _read(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_apple_group_card_query() -> None:
    kind = prop("X-ADDRESSBOOKSERVER-KIND", tm("group", "equals"))
    assert query(kind, data=_read("ios-group.vcf"))
    assert not query(kind, data=_read("ios-17-contact.vcf"))
    member = prop("X-ADDRESSBOOKSERVER-MEMBER", tm("6A2F9E4B-7C1D", collation="i;ascii-casemap"))
    assert query(member, data=_read("ios-group.vcf"))


def test_quoted_printable_values_are_decoded_before_matching() -> None:
    data = _read("android-3.0-quoted-printable.vcf")
    assert query(prop("FN", tm("françois éléonore", "equals")), data=data)
    assert query(prop("NOTE", tm("le gâteau d'anniversaire.", "ends-with")), data=data)


def test_folded_utf8_split_note_matches() -> None:
    data = _read("evolution-4.0-long-folded-utf8-split.vcf")
    assert query(prop("NOTE", tm("Emoji 🎉🚀👩‍👩‍👧 und Arabisch مرحبا", collation="i;octet")), data=data)
    assert query(prop("X-CUSTOM", params=(ParamFilter("X-LABEL", text_match=tm("a:b;c", "equals")),)),
                 data=data)


def test_escaped_colon_in_google_urls() -> None:
    url = prop("URL", tm("http://www.example.com/ada", "equals"))
    assert query(url, data=_read("google-carddav-3.0.vcf"))


def test_lenient_with_stored_lines_that_do_not_parse() -> None:
    data = b"BEGIN:VCARD\nVERSION:3.0\nUID:x\nthis is not a property\nFN:Still Here\nEND:VCARD\n"
    assert query(prop("FN", tm("still")), data=data)


# --- properties ------------------------------------------------------------------------

# Letters, digits, punctuation, symbols and spaces; no combining marks, whose canonical
# reordering under NFKD can make a substring's normal form differ from the substring of
# the whole's normal form (a property of RFC 5051 i;unicode-casemap, not of the parser).
FN_TEXT = st.text(st.characters(categories=("L", "N", "P", "S", "Zs"), exclude_characters="\r\n"),
                  min_size=1, max_size=40)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;")


def _folded_card(fn: str, cuts: list[int], eol: bytes, fold: bytes) -> bytes:
    line = b"FN:" + _escape(fn).encode()
    pieces, last = [], 0
    for cut in sorted({c % len(line) for c in cuts} - {0}):
        pieces.append(line[last:cut])
        last = cut
    pieces.append(line[last:])
    fn_lines = (eol + fold).join(pieces)  # may split a UTF-8 sequence: allowed, see RFC 6350 §3.2
    return eol.join([b"BEGIN:VCARD", b"VERSION:4.0", b"UID:h", fn_lines, b"END:VCARD", b""])


CARDS = st.builds(_folded_card, FN_TEXT, st.lists(st.integers(min_value=0, max_value=500), max_size=6),
                  st.sampled_from([b"\r\n", b"\n"]), st.sampled_from([b" ", b"\t"]))


@settings(database=None, deadline=None)
@given(FN_TEXT, st.data())
def test_a_card_matches_any_substring_of_its_fn(fn: str, data: st.DataObject) -> None:
    card = data.draw(st.builds(_folded_card, st.just(fn), st.lists(st.integers(0, 500), max_size=6),
                               st.sampled_from([b"\r\n", b"\n"]), st.sampled_from([b" ", b"\t"])))
    start = data.draw(st.integers(0, len(fn) - 1))
    end = data.draw(st.integers(start + 1, len(fn)))
    needle = fn[start:end]
    assert inspect_card(card).fn == fn
    assert query(prop("FN", tm(needle)), data=card)
    swapped = "".join(c.swapcase() if c.isascii() else c for c in needle)
    assert query(prop("FN", tm(swapped)), data=card)
    assert query(prop("FN", tm(swapped, collation="i;ascii-casemap")), data=card)
    assert query(prop("FN", tm(fn, "equals", "i;octet")), data=card)
    assert query(prop("FN", tm(fn[:end], "starts-with")), data=card)
    assert query(prop("FN", tm(fn[start:], "ends-with")), data=card)


TEXT_MATCHES = st.builds(tm, st.sampled_from(["", "a", "Ann", "ANN", "é", "x;y", "z"]),
                         st.sampled_from(["equals", "contains", "starts-with", "ends-with"]),
                         st.sampled_from(["i;unicode-casemap", "i;ascii-casemap", "i;octet"]))


@settings(database=None, deadline=None)
@given(CARDS, TEXT_MATCHES)
def test_negate_inverts_a_single_valued_property(card: bytes, match: TextMatch) -> None:
    negated = TextMatch(match.value, match.collation, not match.negate, match.match_type)
    assert query(prop("FN", negated), data=card) is not query(prop("FN", match), data=card)


PROP_FILTERS = st.builds(
    prop, st.sampled_from(["FN", "EMAIL", "TEL", "PHOTO", "item1.EMAIL"]), TEXT_MATCHES,
    params=st.sampled_from([(), (ParamFilter("TYPE"),), (ParamFilter("TYPE", is_not_defined=True),)]),
    test=st.sampled_from(["anyof", "allof"]), missing=st.booleans())


@settings(database=None, deadline=None)
@given(st.lists(PROP_FILTERS, min_size=1, max_size=4))
def test_filter_test_is_any_or_all_of_its_prop_filters(props: list[PropFilter]) -> None:
    each = [query(p) for p in props]
    assert query(*props, test="anyof") is any(each)
    assert query(*props, test="allof") is all(each)


@settings(database=None, deadline=None)
@given(st.lists(TEXT_MATCHES, min_size=1, max_size=3), st.lists(st.sampled_from(
    [ParamFilter("TYPE"), ParamFilter("TYPE", text_match=tm("work", "equals")),
     ParamFilter("TYPE", is_not_defined=True)]), max_size=2))
def test_prop_filter_test_combines_per_instance(texts: list[TextMatch], params: list[ParamFilter]) -> None:
    single = [prop("EMAIL", t) for t in texts] + [prop("EMAIL", params=(p,)) for p in params]
    anyof = query(prop("EMAIL", *texts, params=tuple(params)))
    allof = query(prop("EMAIL", *texts, params=tuple(params), test="allof"))
    assert anyof is any(query(s) for s in single)
    assert not allof or all(query(s) for s in single)  # per instance, so possibly stricter
