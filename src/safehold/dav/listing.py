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
not every page after it; members added after the last page join it while it has room.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from itertools import islice
from typing import NamedTuple

from safehold.dav import multistatus
from safehold.dav.backend import Listing, Node
from safehold.dav.types import Pieces

BUDGET = 16 << 20  # bytes of rendered pages kept (PageCache)

Render = Callable[[Sequence[Node]], list[str]]
PageKey = tuple[str, tuple[str, ...], str]  # collection href, property names, position


class Page(NamedTuple):
    last: str  # position of the page's last member
    stamp: str
    token: str  # the collection's sync token when the stamp was last checked
    body: bytes
    size: int  # members in it


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
                 listing: Listing, whole: bool = False) -> None:
        self._head = head
        self._rest = rest
        self._listing = listing
        self._whole = whole  # the head is the whole body (the listing is closed)

    def __iter__(self) -> Body:
        return self

    def __next__(self) -> bytes:
        if self._head:
            return self._head.pop(0)
        return next(self._rest)

    def ready(self) -> tuple[list[bytes], bool]:
        """Takes the chunks already read and rendered (the head), and whether they are
        the whole body: sending them, and closing a whole one, needs no worker thread."""
        head, self._head = self._head, []
        return head, self._whole

    def close(self) -> None:
        self._rest.close()
        self._listing.close()


def _chunks(listing: Listing, render: Render, key: tuple[str, tuple[str, ...]] | None,
            end: bytes) -> Generator[bytes, None, None]:
    after = ""
    ahead: tuple[Sequence[Node], str, str] | None = None  # a page read before its slot
    try:
        while True:
            slot = None if key is None else (*key, after)
            hit = None if slot is None or ahead is not None else pages.get(slot)
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
                    if (hit.size >= listing.size or key is None
                            or pages.get((*key, hit.last)) is not None):
                        yield hit.body
                        after = hit.last
                        continue
                    # A short page that ends the cached ones was the last page (or the one
                    # after it was evicted). Members added after it since go into it while
                    # they fit (it is rendered again, over the new range), not into a page
                    # of their own: else every write at the end of the collection left a
                    # page of one more member, and the listing became a chunk, a cache
                    # entry and a probe per such write (18 ms instead of 1.2 ms after 400).
                    ahead = listing.page(hit.last)
                    if not ahead[0]:
                        yield hit.body
                        break
                    if hit.size + len(ahead[0]) > listing.size:
                        yield hit.body
                        after = hit.last
                        continue
                    ahead = None
                else:
                    # Only this page's members changed: render the same range again, so
                    # that the pages after it keep their positions and stay cached (a new
                    # member would otherwise shift every later page by one).
                    through = hit.last
            if ahead is not None:
                (members, last, stamp), ahead = ahead, None
            else:
                members, last, stamp = listing.page(after, through)
            if not members and through is None:
                break
            body = "".join(render(members)).encode("utf-8")
            if slot is not None:
                pages.put(slot, Page(last, stamp, listing.token, body, len(members)))
            del members
            if body:
                yield body
            after = last
    finally:
        listing.close()
    yield end


def body(first: str, listing: Listing, render: Render,
         key: tuple[str, tuple[str, ...]] | None, tail: str = "") -> Pieces | Body:
    """The multistatus: ``first`` (the collection's own response, or ""), the responses
    ``render`` makes of the listing's members page by page, then ``tail`` (a
    DAV:sync-token). ``key``: (collection href, property names) when the responses
    depend on nothing but the members' versions and the names (propfind.cacheable),
    else None. Pieces when the members fit in one page, else a Body to stream; either
    way the listing is closed once its last page is read."""
    end = tail.encode("utf-8") + multistatus.TAIL
    rest = _chunks(listing, render, key, end)
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
                # Two pages and the end (``end`` itself): the listing is read and closed.
                return Body(head, rest, listing, more is end and next(rest, None) is None)
    except BaseException:
        rest.close()
        listing.close()
        raise
    return Pieces(head)
