"""Streamed listings (dav/listing.py) against an in-memory Listing: the body is the
same document as one built whole, small listings come whole, cached pages are reused
only while their stamp or the token says the members are the same, and the listing is
closed on every path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from safehold.dav import listing, multistatus
from safehold.dav.backend import Node
from safehold.dav.types import Pieces


def _node(name: str, etag: str) -> Node:
    return Node(f"/dav/c/{name}", False, etag, 1, "text/plain", 0.0, 0.0, {})


class Members:
    """A Listing over a dict name -> etag; counts what it was asked."""

    def __init__(self, members: dict[str, str], size: int, token: str = "t1") -> None:
        self.members = dict(sorted(members.items()))
        self.size = size
        self.token = token
        self.pages_read = 0
        self.closed = False

    def page(self, after: str, through: str | None = None) -> tuple[list[Node], str, str]:
        assert not self.closed
        self.pages_read += 1
        names = [n for n in self.members if n > after and (through is None or n <= through)]
        names = names[:self.size if through is None else 2 * self.size]
        last = names[-1] if names else after
        if through is not None and len(names) < 2 * self.size:
            last = through
        return [_node(n, self.members[n]) for n in names], last, self.stamp(after, last)

    def stamp(self, after: str, last: str) -> str:
        return repr([(n, e) for n, e in self.members.items() if after < n <= last])

    def unchanged(self, token: str, after: str, last: str) -> bool | None:
        return None  # not known: the stamp decides

    def close(self) -> None:
        self.closed = True


def render(page: list[Node]) -> list[str]:
    return [multistatus.response(n.href, [multistatus.text_element("{DAV:}getetag", n.etag)])
            for n in page]


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    listing.pages.clear()
    yield
    listing.pages.clear()


def whole(lst: Members) -> bytes:
    return multistatus.document(["<first/>"] + render(lst.page("")[0]), "<tail/>")


def _read(body: Pieces | listing.Body) -> bytes:
    if isinstance(body, Pieces):
        return b"".join(body)
    try:
        return b"".join(body)
    finally:
        body.close()


def test_streamed_body_equals_the_whole_document() -> None:
    members = {f"m{i:03d}": f'"{i}"' for i in range(25)}
    expected = whole(Members(members, 1000))
    lst = Members(members, 4)
    body = listing.body("<first/>", lst, render, None, "<tail/>")
    assert isinstance(body, listing.Body)  # more than one page: streamed
    assert _read(body) == expected
    assert lst.closed


def test_one_page_comes_whole_and_closed() -> None:
    lst = Members({"a": '"1"', "b": '"2"'}, 4)
    body = listing.body("<first/>", lst, render, None, "<tail/>")
    assert isinstance(body, Pieces) and _read(body) == whole(Members({"a": '"1"', "b": '"2"'}, 9))
    assert lst.closed
    empty = Members({}, 4)
    assert _read(listing.body("", empty, render, None)) == multistatus.HEAD + multistatus.TAIL
    assert empty.closed


def test_cached_pages_are_reused_only_while_valid() -> None:
    members = {f"m{i:03d}": f'"{i}"' for i in range(12)}
    key = ("/dav/c/", ("{DAV:}getetag",))
    first = _read(listing.body("", Members(members, 4), render, key))
    same = Members(members, 4)
    assert _read(listing.body("", same, render, key)) == first
    assert same.pages_read == 1  # the same token: every page from the cache, one probe for the end
    # Another token (a member changed): only the page holding it is rendered again.
    members["m005"] = '"changed"'
    changed = Members(members, 4, token="t2")
    body = _read(listing.body("", changed, render, key))
    assert body == multistatus.document(render(Members(members, 1000).page("")[0]))
    assert changed.pages_read == 2  # the changed page, and the probe for the end
    # A member added at the end is listed although every cached page is still valid.
    members["m999"] = '"new"'
    grown = Members(members, 4, token="t3")
    assert b"/dav/c/m999" in _read(listing.body("", grown, render, key))


def test_a_write_renders_only_its_own_page_again() -> None:
    members = {f"m{i:03d}": f'"{i}"' for i in range(12)}
    key = ("/dav/c/", ("{DAV:}getetag",))
    _read(listing.body("", Members(members, 4), render, key))
    # A new member inside the first page: that page keeps its range and grows by one;
    # the later pages keep their positions and come from the cache.
    members["m001a"] = '"new"'
    grown = Members(members, 4, token="t2")
    assert _read(listing.body("", grown, render, key)) == whole_of(members)
    assert grown.pages_read == 2  # the grown page, and the probe for the end
    # Every member of the middle page gone: an empty range, still no shifted pages.
    for name in ("m004", "m005", "m006", "m007"):
        del members[name]
    emptied = Members(members, 4, token="t3")
    assert _read(listing.body("", emptied, render, key)) == whole_of(members)
    assert emptied.pages_read == 2
    # A range that grew past two pages is cut there; the rest follows as new pages.
    members.update({f"m009{i:02d}": '"burst"' for i in range(10)})
    burst = Members(members, 4, token="t4")
    assert _read(listing.body("", burst, render, key)) == whole_of(members)
    again = Members(members, 4, token="t4")
    assert _read(listing.body("", again, render, key)) == whole_of(members)
    assert again.pages_read == 1  # all cached: only the probe for the end


def whole_of(members: dict[str, str]) -> bytes:
    return multistatus.document(render(Members(members, 10_000).page("")[0]))


def test_a_failing_page_closes_the_listing() -> None:
    members = {f"m{i:03d}": f'"{i}"' for i in range(20)}
    lst = Members(members, 4)
    calls = []

    def failing(page: list[Node]) -> list[str]:
        calls.append(1)
        if len(calls) == 4:  # after the first chunks went out
            raise RuntimeError("boom")
        return render(page)

    body = listing.body("", lst, failing, None)
    assert isinstance(body, listing.Body)
    with pytest.raises(RuntimeError):
        b"".join(body)
    assert lst.closed
    early = Members(members, 4)
    with pytest.raises(IndexError):  # before the first byte: the caller answers 500
        listing.body("", early, lambda page: [][0], None)
    assert early.closed


def test_closing_a_stream_early_closes_the_listing() -> None:
    lst = Members({f"m{i:03d}": '"x"' for i in range(20)}, 4)
    body = listing.body("", lst, render, None)
    assert isinstance(body, listing.Body)
    next(body)
    body.close()
    assert lst.closed


def _pages(body: Pieces | listing.Body) -> int:
    """The page chunks of a streamed body (without the head and the end)."""
    assert isinstance(body, listing.Body)
    try:
        return len(list(body)) - 2
    finally:
        body.close()


def test_members_added_at_the_end_join_the_last_page() -> None:
    members = {f"m{i:03d}": f'"{i}"' for i in range(10)}
    key = ("/dav/c/", ("{DAV:}getetag",))
    assert _pages(listing.body("", Members(members, 4), render, key)) == 3  # 4, 4, 2
    # Each write after the last member: the short last page takes it (read ahead, the
    # page again, the probe for the end), not a page of one member per write.
    for i, name in enumerate(("m100", "m101")):
        members[name] = '"new"'
        grown = Members(members, 4, token=f"t{i + 2}")
        assert _read(listing.body("", grown, render, key)) == whole_of(members)
        assert grown.pages_read == 3
    again = Members(members, 4, token="t3")
    assert _pages(listing.body("", again, render, key)) == 3  # 4, 4, 4
    assert again.pages_read == 1
    # A full last page: what comes after it is a page of its own, as before.
    members.update({"m102": '"new"', "m103": '"new"'})
    fuller = Members(members, 4, token="t4")
    assert _read(listing.body("", fuller, render, key)) == whole_of(members)
    assert _pages(listing.body("", Members(members, 4, token="t4"), render, key)) == 4


def test_a_body_read_whole_says_so() -> None:
    members = {f"m{i:03d}": f'"{i}"' for i in range(6)}
    lst = Members(members, 4)
    body = listing.body("<first/>", lst, render, None, "<tail/>")
    assert isinstance(body, listing.Body)
    chunks, whole_body = body.ready()  # two pages and the end: all read, closed
    assert whole_body and lst.closed
    assert b"".join(chunks) == whole(Members(members, 1000))
    assert list(body) == []
    body.close()
    longer = Members({f"m{i:03d}": '"x"' for i in range(20)}, 4)
    streamed = listing.body("", longer, render, None)
    assert isinstance(streamed, listing.Body)
    assert not streamed.ready()[1] and not longer.closed
    streamed.close()
    assert longer.closed
