"""text-match (RFC 4791 §9.7.5, RFC 6352 §10.5.4) with the collations of RFC 4790."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

COLLATIONS = ("i;ascii-casemap", "i;unicode-casemap", "i;octet")
MATCH_TYPES = ("equals", "contains", "starts-with", "ends-with")


class UnsupportedCollation(ValueError):
    """Maps to the CALDAV:/CARDDAV: supported-collation precondition."""


@dataclass(frozen=True)
class TextMatch:
    value: str
    collation: str = "i;ascii-casemap"
    negate: bool = False
    match_type: str = "contains"  # RFC 4791 only has "contains"


def _fold(text: str, collation: str) -> str:
    if collation == "i;octet":
        return text
    if collation == "i;ascii-casemap":
        return "".join(c.upper() if "a" <= c <= "z" else c for c in text)
    if collation == "i;unicode-casemap":
        # RFC 5051: decompose, then case-fold.
        return unicodedata.normalize("NFKD", text).casefold()
    raise UnsupportedCollation(collation)


def check_collation(collation: str) -> None:
    if collation not in COLLATIONS:
        raise UnsupportedCollation(collation)


def text_match(candidate: str, tm: TextMatch) -> bool:
    """True when ``candidate`` matches (negate-condition already applied)."""
    needle = _fold(tm.value, tm.collation)
    hay = _fold(candidate, tm.collation)
    if tm.match_type == "equals":
        hit = hay == needle
    elif tm.match_type == "starts-with":
        hit = hay.startswith(needle)
    elif tm.match_type == "ends-with":
        hit = hay.endswith(needle)
    else:
        hit = needle in hay
    return hit != tm.negate
