"""A listing page rendered a column at a time (propfind.page_responses, props.column) is
the same text as each member rendered on its own (propfind.response_for), for members
whose hrefs, ETags and media types need escaping or not, that lack properties, that are
collections, and in pages that mix them."""

from __future__ import annotations

from itertools import combinations
from typing import cast

import pytest

from safehold.dav import multistatus, props
from safehold.dav.backend import DavBackend, Members, Node
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
CALENDARS = [Node(f"/dav/calendars/u/c{i}/", True, f'"c-{i}"', 0, None, 1.7e9, 1.7e9, {}, False,
                  "calendar") for i in range(3)]


@pytest.mark.parametrize("nodes", [PLAIN, ODD, PLAIN[:2] + ODD + PLAIN[2:], [*PLAIN, VIRTUAL], [],
                                   CALENDARS, [*PLAIN, *CALENDARS]],
                         ids=["plain", "odd", "mixed", "virtual", "empty", "calendars",
                              "items and calendars"])
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


def test_a_plain_page_is_joined_from_its_texts() -> None:
    """What a client lists with, on a page that needs no escaping, takes the joined path
    (props.page_texts), not a text per member and property (props.column)."""
    fields = list(zip(*PLAIN, strict=True))
    for name in (dav("resourcetype"), dav("getetag"), dav("getcontenttype"),
                 dav("getcontentlength"), dav("supportedlock")):
        assert props.page_texts(name, PLAIN, fields, NO_BACKEND) is not None, name
    fields = list(zip(*ODD, strict=True))
    assert props.page_texts(dav("getetag"), ODD, fields, NO_BACKEND) is None  # escaping
    assert props.page_texts(dav("getlastmodified"), PLAIN, list(zip(*PLAIN, strict=True)),
                            NO_BACKEND) is None


@pytest.mark.parametrize("nodes", [PLAIN, ODD, [*PLAIN, *CALENDARS]], ids=["plain", "odd", "mixed"])
def test_a_members_page_renders_as_its_nodes(nodes: list[Node]) -> None:
    """A page held by field (backend.Members, what the store's listing gives) is the same
    page; one that needs no Node is rendered without making any."""
    fields = list(zip(*nodes, strict=True))
    stored = Members(fields[:7] + [tuple(repr(d) for d in fields[7])] + fields[8:],
                     lambda texts: [{} for _ in texts])
    assert list(stored) == nodes
    names = [dav("resourcetype"), dav("getetag"), dav("getcontenttype")]
    assert propfind.page_responses(Members(fields), NO_BACKEND, "prop", names) == \
        propfind.page_responses(nodes, NO_BACKEND, "prop", names)

    def no_nodes(_texts: tuple[object, ...]) -> list[dict[str, str]]:
        raise AssertionError("the Nodes were made")
    if nodes is PLAIN:
        propfind.page_responses(Members(fields, no_nodes), NO_BACKEND, "prop", names)
