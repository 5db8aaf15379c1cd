"""A listing page rendered a column at a time (propfind.page_responses, props.column) is
the same text as each member rendered on its own (propfind.response_for), for members
whose hrefs, ETags and media types need escaping or not, that lack properties, that are
collections, and in pages that mix them."""

from __future__ import annotations

from itertools import combinations
from typing import cast

import pytest

from safehold.dav import multistatus
from safehold.dav.backend import DavBackend, Node
from safehold.dav.methods import propfind
from safehold.dav.xml import dav

# page_responses and response_for ask the backend nothing for these properties.
NO_BACKEND = cast(DavBackend, None)
NAMES = [dav("resourcetype"), dav("getetag"), dav("getcontenttype"), dav("getcontentlength"),
         dav("getlastmodified"), dav("supportedlock"), "{http://example.com/ns}color"]


def _item(name: str, etag: str = '"1-ab"', content_type: str | None = "text/calendar") -> Node:
    return Node(f"/dav/calendars/u/c/{name}", False, etag, 12, content_type, 1.7e9, 1.7e9 + 1,
                {}, False, "item")


PLAIN = [_item(f"e{i}.ics") for i in range(5)]
ODD = [
    _item("a b&c<d>.ics"),  # percent-encoded and escaped
    _item("ünïcode.ics"),
    _item("x.ics", etag='"1-a&b<c>\r"'),
    _item("y.ics", content_type=None),  # application/octet-stream
    _item("z.ics", content_type="text/x-a&b"),
    Node("/dav/calendars/u/c/sub/", True, '"c-1"', 0, None, 1.7e9, 1.7e9, {}, False, "calendar"),
    Node("/dav/calendars/u/c/box/", True, '"c-2"', 0, None, 1.7e9, 1.7e9, {}, False, "collection"),
    _item("w.ics", etag='"1-\x01"'),  # a character XML cannot carry
]
VIRTUAL = Node("/dav/", True, "", 0, None, 1.7e9, 1.7e9, {}, True, "collection")  # no getetag


@pytest.mark.parametrize("nodes", [PLAIN, ODD, PLAIN[:2] + ODD + PLAIN[2:], [*PLAIN, VIRTUAL], []],
                         ids=["plain", "odd", "mixed", "virtual", "empty"])
def test_a_page_is_its_members_rendered_one_by_one(nodes: list[Node]) -> None:
    for n in range(len(NAMES) + 1):
        for names in combinations(NAMES, n):
            page = propfind.page_responses(nodes, NO_BACKEND, "prop", list(names))
            one_by_one = [propfind.response_for(node, NO_BACKEND, "prop", list(names))
                          for node in nodes]
            assert page == one_by_one, names


def test_plain_is_what_escape_leaves_alone() -> None:
    for text in ['"1-ab"', "text/calendar; charset=utf-8", "a&b", "a<b", "a>b", "a\rb",
                 "a\x01b", "\ufffe", "ünïcode", ""]:
        assert multistatus.plain(text) == (multistatus.escape(text) == text), text
