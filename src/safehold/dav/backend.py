"""What the DAV layer needs from storage: small Protocols, implemented by
http/davbackend.py on top of core (STYLE 1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple, Protocol, overload

from safehold.dav.types import SpooledBody


class Node(NamedTuple):
    """A resource as the DAV layer sees it. A NamedTuple rather than a frozen
    dataclass: a listing builds one per member, and a frozen dataclass's __init__
    (one object.__setattr__ per field) cost 4 µs of a PROPFIND's ~14 µs per member."""

    href: str  # URL path; collections end with "/"
    is_collection: bool
    etag: str
    size: int
    content_type: str | None
    created_at: float
    modified_at: float
    dead_props: dict[str, str]  # Clark name -> serialized XML element
    virtual: bool = False  # a namespace node (/dav/, /dav/files/) that cannot be changed
    kind: str = ""  # "collection", "calendar", "addressbook", "principal", "item", ...


class Members(Sequence[Node]):
    """A page of a listing held by field: ``fields`` has one tuple per Node field, in
    Node's order (what zip(*nodes) gives), and the Nodes are made only when a member is
    asked for. A page rendered from its fields alone (propfind.page_responses) makes
    none: 10,000 Nodes cost ~10 ms of a cold listing, 40 % of it the garbage
    collector's (a Node holds a dict, so it stays tracked and gets promoted).
    ``dead_props`` makes that field's values from what ``fields`` holds there (the
    stored text, say), when the Nodes are made."""

    __slots__ = ("fields", "_dead_props", "_nodes")

    def __init__(self, fields: list[tuple[Any, ...]],
                 dead_props: Callable[[tuple[Any, ...]], Sequence[dict[str, str]]] | None = None
                 ) -> None:
        self.fields = fields
        self._dead_props = dead_props
        self._nodes: list[Node] | None = None

    @property
    def nodes(self) -> list[Node]:
        if self._nodes is None:
            fields = list(self.fields)
            if self._dead_props is not None:
                fields[DEAD_PROPS] = tuple(self._dead_props(fields[DEAD_PROPS]))
            # tuple.__new__ rather than Node(...), whose generated __new__ is a Python
            # call per member; the loop over the members runs in C.
            self._nodes = list(map(tuple.__new__, repeat(Node), zip(*fields, strict=True)))
        return self._nodes

    def __len__(self) -> int:
        return len(self.fields[0]) if self.fields else 0

    @overload
    def __getitem__(self, i: int) -> Node: ...
    @overload
    def __getitem__(self, i: slice) -> list[Node]: ...
    def __getitem__(self, i: int | slice) -> Node | list[Node]:
        return self.nodes[i]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)


DEAD_PROPS = Node._fields.index("dead_props")


@dataclass(frozen=True)
class LockInfo:
    token: str
    root: str  # href of the locked resource
    depth: str
    scope: str
    owner_xml: str | None
    mine: bool  # held by the requesting principal
    timeout: int


class IndexEntry(NamedTuple):
    """What the store's index knows of a calendar object without parsing it or reading
    its head: its href and ETag (which find an earlier answer in the caches), an
    envelope (UTC epoch seconds, None: unbounded) that contains every instance with at
    least a second to spare, and whether the object is a recurrence set. A NamedTuple:
    a calendar-query makes one per candidate (a frozen dataclass's ``__init__`` cost as
    much as the rest of building the candidate)."""

    href: str
    etag: str
    start: float | None
    end: float | None
    recurring: bool
    # A recurrence set's instances as (start, end) UTC epoch seconds (end == start: no
    # length), when they decide a plain time-range query exactly; None: parse to decide.
    spans: tuple[tuple[int, int], ...] | None = None


class Listing(Protocol):
    """A collection's members from one snapshot of the store, read a page at a time
    (so that a listing of 100,000 members never sits in memory whole), with the sync
    token of that snapshot. Positions are opaque ("" before the first member)."""

    token: str  # the collection's sync token in this snapshot
    size: int  # the most members ``page`` gives without ``through``

    def page(self, after: str, through: str | None = None) -> tuple[Sequence[Node], str, str]:
        """The next members after position ``after`` (none: the end), the position of
        the last one, and the stamp of the members in between (see ``stamp``). With
        ``through`` (the last position of a page read before): the members in
        (after, through] and the position ``through``, even when there are none; or,
        when more than two pages' worth came in between, the first two pages' worth
        and the position of their last."""
        ...

    def stamp(self, after: str, last: str) -> str:
        """A value that changes whenever any member in (after, last] changes, appears
        or goes: a page of responses rendered before is still right if it is equal."""
        ...

    def unchanged(self, token: str, after: str, last: str) -> bool | None:
        """Whether no member in (after, last] changed, appeared or went between the
        snapshot whose sync token is ``token`` and this one; None: not known cheaply
        (ask ``stamp``)."""
        ...

    def close(self) -> None: ...


class DavBackend(Protocol):
    def get(self, href: str) -> Node | None: ...
    def children(self, node: Node) -> list[Node]: ...
    # A real (not virtual) collection's members; the caller closes the listing.
    def listing(self, node: Node) -> Listing: ...
    def subtree(self, node: Node) -> list[Node]: ...
    def body(self, node: Node) -> Iterator[bytes]: ...
    def put(self, href: str, body: SpooledBody, content_type: str | None,
            if_match: str | None, if_none_match: bool) -> tuple[Node, bool]: ...
    def delete(self, href: str, if_match: str | None) -> None: ...
    def mkcol(self, href: str) -> Node: ...
    def copy_move(self, op: str, src: str, dst: str, deep: bool, overwrite: bool) -> bool: ...
    def proppatch(self, href: str, set_props: dict[str, str], remove: list[str]) -> Node: ...
    def locks(self, href: str, ancestors: bool = True, descendants: bool = False) -> list[LockInfo]: ...
    def add_lock(self, href: str, depth: str, scope: str, owner_xml: str | None,
                 timeout: int) -> LockInfo: ...
    def refresh_lock(self, token: str, timeout: int) -> LockInfo | None: ...
    def remove_lock(self, token: str) -> bool: ...
    def allowed(self, href: str) -> bool: ...
    def mkcol_kind(self, href: str, kind: str, props: dict[str, str]) -> Node: ...
    def principal_href(self) -> str: ...
    def principal_name(self) -> str: ...
    def home_hrefs(self) -> dict[str, str]: ...  # kind -> home href (calendar, addressbook)
    def sync_token(self, node: Node) -> str: ...
    # (href, member as of the new token or None if deleted), new token, truncated.
    # The members come from the same snapshot as the token (RFC 6578 exactly once).
    def changes(self, node: Node, token: str | None,
                limit: int | None) -> tuple[list[tuple[str, Node | None]], str, bool]: ...
    # Whether at most ``count`` changes follow ``token`` (403 valid-sync-token if unknown).
    def changes_within(self, node: Node, token: str, count: int) -> bool: ...
    # The found ones of ``hrefs`` by href; hrefs this user may not see are left out.
    def get_many(self, hrefs: list[str]) -> dict[str, Node]: ...
    def read_bytes(self, node: Node) -> bytes: ...
    def read_many(self, nodes: list[Node]) -> dict[str, bytes]: ...
    def query_candidates(self, node: Node, component: str | None, start: float | None,
                         end: float | None) -> list[Node]: ...
    # At most ``limit`` entries (the first by href) if given. Heads are not read: a
    # member's Node comes from get_many when its index entry and the caches do not do.
    def query_index(self, node: Node, component: str | None, start: float | None,
                    end: float | None, limit: int | None = None) -> list[IndexEntry]: ...
    # Whether a ``query_index`` of (component, end) reads at most ``count`` index
    # entries (all the collection's without a component).
    def index_within(self, node: Node, count: int, component: str | None = None,
                     end: float | None = None) -> bool: ...
