"""Multistatus bodies of whole collections (PROPFIND Depth 1, an initial
sync-collection), produced a page of members at a time.

Built whole, a listing of 100,000 members held every member, every response and the
document in memory at once, and the garbage collector walked the live members again
and again as they piled up (a third of a PROPFIND at 10,000 members). Here the store
reads a page (dav.backend.Listing, one snapshot for the whole listing), the page is
rendered and sent, and the next one is read: memory is bounded by a page. A listing
of at most one page is still sent whole, with a Content-Length.

Everything that can fail with a 4xx (parsing, preconditions, an unknown token) is
decided before the first page is read; a failure after the status line was sent can
only cut the connection, and a client never takes a cut-off body for a listing.

Rendered pages are cached by (collection, properties, position) with the range's
stamp (dav.backend.Listing.stamp) and the collection's sync token: clients repeat the
same PROPFIND and initial sync, and a page costs a dictionary lookup while the token is
unchanged, a lookup in the members changed since its token (what an incremental sync
from it would report: one query for the whole listing) when other members changed,
and a thousand members rendered only when its own members did. A changed page is
rendered again over the same range of positions, so that a write re-renders one page,
not every page after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from itertools import islice
from typing import NamedTuple

from safehold.dav import multistatus
from safehold.dav.backend import Listing, Node

BUDGET = 16 << 20  # bytes of rendered pages kept (PageCache)

Render = Callable[[Sequence[Node]], list[str]]
PageKey = tuple[str, tuple[str, ...], str]  # collection href, property names, position


class Page(NamedTuple):
    last: str  # position of the page's last member
    stamp: str
    token: str  # the collection's sync token when the stamp was last checked
    body: bytes


class PageCache:
    """Rendered pages, bounded by bytes; when full, the oldest quarter goes."""

    def __init__(self, budget: int = BUDGET) -> None:
        self.budget = budget
        self.size = 0
        self._items: dict[PageKey, Page] = {}
        self._lock = threading.Lock()

    def get(self, key: PageKey) -> Page | None:
        return self._items.get(key)

    def put(self, key: PageKey, page: Page) -> None:
        if len(page.body) * 8 > self.budget:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.size -= len(old.body)
            if self.size + len(page.body) > self.budget:
                for k in list(islice(self._items, max(1, len(self._items) // 4))):
                    self.size -= len(self._items.pop(k).body)
            self._items[key] = page
            self.size += len(page.body)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.size = 0


pages = PageCache()


class Body:
    """The rest of a streamed body: an iterator of chunks whose ``close`` ends the
    listing's snapshot, whether or not the chunks were all read (the HTTP layer
    closes it when the client goes away)."""

    def __init__(self, head: list[bytes], rest: Generator[bytes, None, None],
                 listing: Listing) -> None:
        self._head = head
        self._rest = rest
        self._listing = listing

    def __iter__(self) -> Body:
        return self

    def __next__(self) -> bytes:
        if self._head:
            return self._head.pop(0)
        return next(self._rest)

    def close(self) -> None:
        self._rest.close()
        self._listing.close()


def _chunks(listing: Listing, render: Render, key: tuple[str, tuple[str, ...]] | None,
            tail: bytes) -> Generator[bytes, None, None]:
    after = ""
    try:
        while True:
            slot = None if key is None else (*key, after)
            hit = None if slot is None else pages.get(slot)
            # The same sync token is the same collection (no member changed since the
            # page was rendered): no query at all. Else the members changed since the
            # page's token (one query for the pages cached together), or, when there
            # were too many, the range's stamp decide.
            through = None
            if hit is not None:
                same = hit.token == listing.token or listing.unchanged(hit.token, after, hit.last)
                if same is None:
                    same = listing.stamp(after, hit.last) == hit.stamp
                if same:
                    if slot is not None and hit.token != listing.token:
                        pages.put(slot, hit._replace(token=listing.token))
                    yield hit.body
                    after = hit.last
                    continue
                # Only this page's members changed: render the same range again, so
                # that the pages after it keep their positions and stay cached (a new
                # member would otherwise shift every later page by one).
                through = hit.last
            members, last, stamp = listing.page(after, through)
            if not members and through is None:
                break
            body = "".join(render(members)).encode("utf-8")
            if slot is not None:
                pages.put(slot, Page(last, stamp, listing.token, body))
            del members
            if body:
                yield body
            after = last
    finally:
        listing.close()
    yield tail + multistatus.TAIL


def body(first: str, listing: Listing, render: Render,
         key: tuple[str, tuple[str, ...]] | None, tail: str = "") -> bytes | Body:
    """The multistatus: ``first`` (the collection's own response, or ""), the responses
    ``render`` makes of the listing's members page by page, then ``tail`` (a
    DAV:sync-token). ``key``: (collection href, property names) when the responses
    depend on nothing but the members' versions and the names (propfind.cacheable),
    else None. Bytes when the members fit in one page, else a Body to stream; either
    way the listing is closed once its last page is read."""
    rest = _chunks(listing, render, key, tail.encode("utf-8"))
    head = [multistatus.HEAD + first.encode("utf-8")]
    try:
        # Chunks: the head, a chunk per page, the tail. At most one page: one piece.
        for chunk in rest:
            head.append(chunk)
            if len(head) == 3:
                more = next(rest, None)
                if more is None:
                    break
                head.append(more)
                return Body(head, rest, listing)
    except BaseException:
        rest.close()
        listing.close()
        raise
    return b"".join(head)
