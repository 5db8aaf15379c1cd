"""The one adapter between the DAV layer and core/store (STYLE 1). It maps URL
paths to store paths, enforces that a user only ever touches their own tree, and
translates domain errors into DAV errors."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from typing import NoReturn

from safehold.caldav.props import supported_components
from safehold.core.guard import DeletionRefused, Guard
from safehold.core.items import (
    CALDAV, CARDDAV, MAX_ITEM_BYTES, InvalidItem, index_for, require_component,
)
from safehold.core.model import (
    ADDRESSBOOK, CALENDAR, COLLECTION, ITEM, Actor, Body, ItemIndex, Lock, Principal, Resource,
    load_props, parent_of,
)
from safehold.dav.backend import IndexEntry, Listing, LockInfo, Members, Node
from safehold.dav.errors import DavError
from safehold.dav.types import BodyBytes, SpooledBody
from safehold.errors import DomainError, UidConflict
from safehold.store import blobs
from safehold.store import listing as listing_mod
from safehold.store.repo import Store

PREFIX = "/dav/"
NAMESPACES = ("files", "calendars", "addressbooks", "principals")  # top-level under /dav/
# Which collection kind may be created where (RFC 4791 §5.3.1, RFC 6352 §6.3.1).
HOME_OF = {CALENDAR: "calendars", ADDRESSBOOK: "addressbooks"}
MEDIA_TYPE = {CALENDAR: "text/calendar; charset=utf-8", ADDRESSBOOK: "text/vcard; charset=utf-8"}
SYNC_PREFIX = "urn:x-safehold:sync:"
LISTING_PAGE = 1000  # members read, rendered and sent at a time (settings.listing_page_size)

def store_path(href: str) -> str:
    return href[len(PREFIX):].strip("/")


def _raise(exc: DomainError) -> NoReturn:
    if isinstance(exc, InvalidItem):
        raise DavError(exc.status, str(exc), condition=exc.precondition,
                       namespace=exc.namespace) from exc
    raise DavError(exc.status, str(exc)) from exc


def _uid_conflict(exc: UidConflict, kind: str) -> NoReturn:
    # RFC 4791 §5.3.2.1, RFC 6352 §6.3.2.1: the element names the resource holding the
    # UID; so does the message, by the URL path the client knows (not the store path).
    where = PREFIX + exc.path
    raise DavError(409, f"UID {exc.uid!r} is already used by {where}", condition="no-uid-conflict",
                   namespace=CARDDAV if kind == ADDRESSBOOK else CALDAV, hrefs=[where]) from exc


class StoreDavBackend:
    def __init__(self, store: Store, principal: Principal, actor: Actor, lineage: str,
                 guard: Guard | None = None, page_size: int = LISTING_PAGE, *,
                 writing: bool = False) -> None:
        self.store = store
        # A write request checks locks (RFC 4918 §7): its first head read fetches them
        # in the same transaction.
        self.writing = writing
        self.page_size = page_size
        self.principal = principal
        self.actor = actor
        self.lineage = lineage
        self.guard = guard
        self._blobs: dict[str, str | None] = {}
        self._small: dict[str, bytes] = {}  # bodies read with their heads, by href
        # Locks of this user's trees, read once per request (a listing asks for
        # lockdiscovery of every member; a PUT checks the item and its parent).
        self._locks: list[Lock] | None = None
        self._lock_roots: dict[str, str] = {}  # lock path -> href of the locked resource
        # Heads read by this request, each with its parent (PUT asks for the item twice,
        # then for its parent's kind: one read instead of three). Every write forgets them.
        self._heads: dict[str, Resource | None] = {}
        self._token_checked: tuple[str | None, int] = (None, 0)  # a sync token and its seq

    # -- access ----------------------------------------------------------------

    def allowed(self, href: str) -> bool:
        if href == "/":
            return True
        if not href.startswith(PREFIX):
            return False
        if "//" in href:  # empty segments do not count
            parts = [p for p in store_path(href).split("/") if p]
            first, second = (parts + ["", ""])[:2]
        else:
            # Only the first two segments decide, and without "//" only the last one
            # can be empty: two partitions instead of a split of the whole path (a PUT
            # asks this six times).
            first, _, rest = href[len(PREFIX):].partition("/")
            second = rest.partition("/")[0]
        if not second:
            return not first or first in NAMESPACES
        return first in NAMESPACES and second == self.principal.name

    def _is_home(self, href: str) -> bool:
        return len([p for p in store_path(href).split("/") if p]) <= 2

    # -- nodes -----------------------------------------------------------------

    def _virtual(self, href: str, kind: str = COLLECTION) -> Node:
        return Node(href=href, is_collection=True, etag="", size=0, content_type=None,
                    created_at=self.principal.created_at, modified_at=self.principal.created_at,
                    dead_props={}, virtual=True, kind=kind)

    def _node(self, res: Resource) -> Node:
        collection = res.kind != ITEM  # Resource.is_collection, without a call per member
        href = PREFIX + res.path + ("/" if collection else "")
        # Bodies are read by the hash of the version this node describes, so the
        # bytes always belong to the ETag reported with them.
        self._blobs[href] = res.blob_hash
        # Positional: a listing makes one per member (keywords cost a third more).
        return Node(href, collection, res.etag, res.size, res.content_type, res.created_at,
                    res.modified_at, res.props, False, res.kind)

    def get(self, href: str) -> Node | None:
        if not self.allowed(href):
            return None
        if href == "/":
            return self._virtual("/")
        path = store_path(href)
        parts = path.split("/") if path else []
        if len(parts) <= 1 or parts[0] == "principals":
            if len(parts) <= 2:
                return self._virtual(PREFIX + (path + "/" if path else ""),
                                     "principal" if len(parts) == 2 else COLLECTION)
            return None
        res = self._head(path)
        if res is None:
            return None
        if href.endswith("/") and not res.is_collection:
            return None
        return self._node(res)

    def _head(self, path: str) -> Resource | None:
        if path not in self._heads:
            if not self.writing:
                # A read (GET, PROPFIND, REPORT) needs no parent, and a small body
                # comes in the same statement (read_bytes).
                self._heads[path], body = self.store.get_with_body(path)
                if body is not None:
                    self._small[PREFIX + path] = body
                return self._heads[path]
            if self._locks is None:
                self._heads[path], parent, self._locks = self.store.get_pair_and_locks(
                    path, self._lock_trees())
            else:
                self._heads[path], parent = self.store.get_pair(path)
            self._heads.setdefault(parent_of(path), parent)
        return self._heads[path]

    def _lock_trees(self) -> list[str]:
        return [f"{ns}/{self.principal.name}" for ns in NAMESPACES if ns != "principals"]

    def children(self, node: Node) -> list[Node]:
        if node.href == "/":
            return [self._virtual(PREFIX)]
        path = store_path(node.href)
        if not path:
            return [self._virtual(f"{PREFIX}{ns}/") for ns in NAMESPACES]
        if "/" not in path:
            child = f"{PREFIX}{path}/{self.principal.name}/"
            found = self.get(child)
            return [found] if found else []
        return [self._node(r) for r in self.store.children(path)]

    def listing(self, node: Node) -> Listing:
        return _StoreListing(self, listing_mod.Snapshot(self.store, store_path(node.href)))

    def subtree(self, node: Node) -> list[Node]:
        return [self._node(r) for r in self.store.subtree(store_path(node.href))]

    def body(self, node: Node) -> Iterator[bytes]:
        if node.href in self._blobs:
            h = self._blobs[node.href]
            return blobs.read(self.store.engine, h) if h else iter(())
        res = self.store.get(store_path(node.href))
        if res is None:
            return iter(())
        return self.store.read_body(res)

    # -- writes ----------------------------------------------------------------

    def _writable(self, href: str) -> str:
        if not self.allowed(href) or len(store_path(href).split("/")) < 2 \
                or store_path(href).startswith("principals"):
            raise DavError(403, "this location cannot be written")
        return store_path(href)

    def put(self, href: str, body: SpooledBody, content_type: str | None,
            if_match: str | None, if_none_match: bool) -> tuple[Node, bool]:
        path = self._writable(href)
        if self._is_home(href):
            raise DavError(405, "cannot PUT to a home collection")
        data: Body | bytes = body.data if isinstance(body, BodyBytes) else \
            b"" if body.size == 0 else Body(body.path, body.size, body.sha256)
        parent = self._head(parent_of(path))
        self._heads.clear()
        index: ItemIndex | None = None
        kind = parent.kind if parent is not None else COLLECTION
        if kind in (CALENDAR, ADDRESSBOOK):
            index = self._validate(kind, parent, body)
            content_type = content_type or MEDIA_TYPE[kind]
        elif path.split("/")[0] in HOME_OF.values() and parent is not None:
            raise DavError(403, "items belong in a calendar or an address book, not here")
        try:
            res, created = self.store.put(path, self.principal.id, data, content_type,
                                          self.actor, if_match=if_match,
                                          if_none_match=if_none_match, index=index)
        except UidConflict as exc:
            _uid_conflict(exc, kind)
        except DomainError as exc:
            _raise(exc)
        return self._node(res), created

    def _validate(self, kind: str, parent: Resource | None, body: SpooledBody) -> ItemIndex | None:
        try:
            if body.size > MAX_ITEM_BYTES:
                raise InvalidItem(f"items are limited to {MAX_ITEM_BYTES} bytes",
                                  "max-resource-size", CALDAV if kind == CALENDAR else CARDDAV)
            if isinstance(body, BodyBytes):
                data = body.data
            else:
                with open(body.path, "rb") if body.size else _Empty() as fh:
                    data = fh.read()
            if kind != CALENDAR:
                return index_for(kind, data)
            return index_for(kind, data, supported_components(self._node(parent)) if parent else ())
        except InvalidItem as exc:
            _raise(exc)

    def delete(self, href: str, if_match: str | None) -> None:
        path = self._writable(href)
        if self._is_home(href):
            raise DavError(403, "a home collection cannot be deleted")
        parent = path.rsplit("/", 1)[0]
        guarded = self.guard is not None and not href.endswith("/") and len(parent.split("/")) > 2
        self._forget_locks()  # a tombstone drops the locks below it
        self._heads.clear()
        try:
            if guarded:
                assert self.guard is not None
                self.guard.before_delete(parent, self.actor)
            self.store.delete(path, self.actor, if_match=if_match)
            if guarded:
                assert self.guard is not None
                self.guard.after_delete(self.principal.id, parent, self.actor)
        except DeletionRefused as exc:
            raise DavError(503, str(exc), headers=[("Retry-After", "3600")]) from exc
        except DomainError as exc:
            _raise(exc)

    def mkcol(self, href: str) -> Node:
        return self.mkcol_kind(href, COLLECTION, {})

    def mkcol_kind(self, href: str, kind: str, props: dict[str, str]) -> Node:
        path = self._writable(href)
        if self._is_home(href):
            raise DavError(405, "the home collection exists")
        self._location_ok(path, kind)
        self._heads.clear()
        try:
            return self._node(self.store.mkcol(path, self.principal.id, self.actor, props,
                                               kind=kind))
        except DomainError as exc:
            _raise(exc)

    def _location_ok(self, path: str, kind: str) -> None:
        """Refuse a collection of ``kind`` at store path ``path`` where it may not be:
        at MKCOL, and at COPY or MOVE (RFC 4791 §5.3.2.1, RFC 6352 §6.3.2.1)."""
        parts = path.split("/")
        namespace = parts[0]
        if kind in HOME_OF and (namespace != HOME_OF[kind] or len(parts) != 3):
            ns, what, noun = (CALDAV, "calendar", "a calendar") if kind == CALENDAR \
                else (CARDDAV, "addressbook", "an address book")
            raise DavError(403, f"{noun} can only be created, copied or moved directly into your "
                           f"home {PREFIX}{HOME_OF[kind]}/{self.principal.name}/",
                           condition=f"{what}-collection-location-ok", namespace=ns)
        if kind == COLLECTION and namespace in HOME_OF.values():
            raise DavError(403, "only calendars and address books can be created here")

    # -- discovery and sync ----------------------------------------------------

    def principal_href(self) -> str:
        return f"{PREFIX}principals/{self.principal.name}/"

    def principal_name(self) -> str:
        return self.principal.name

    def home_hrefs(self) -> dict[str, str]:
        return {"calendar": f"{PREFIX}calendars/{self.principal.name}/",
                "addressbook": f"{PREFIX}addressbooks/{self.principal.name}/"}

    def _token(self, seq: int) -> str:
        return f"{SYNC_PREFIX}{self.lineage}:{seq}"

    def sync_token(self, node: Node) -> str:
        return self._token(self.store.collection_seq(store_path(node.href)))

    def changes(self, node: Node, token: str | None,
                limit: int | None) -> tuple[list[tuple[str, Node | None]], str, bool]:
        path = store_path(node.href)
        if token is None:
            # Token and listing come from one snapshot: nothing listed is newer than
            # the token, so the next sync reports no member twice (RFC 6578 §3.2).
            seq, members = self.store.listing(path)
            return [(n.href, n) for n in map(self._node, members)], self._token(seq), False
        seq = self._parse_token(token)
        changes = self.store.changes_since(path, seq)
        truncated = False
        if limit is not None and len(changes) > limit:
            cut = limit
            # Never split one change (a restore touches many members at one seq).
            while cut < len(changes) and changes[cut][1] == changes[cut - 1][1]:
                cut += 1
            truncated = cut < len(changes)
            changes = changes[:cut]
        new_seq = max(seq, max((c[1] for c in changes), default=seq))
        out: list[tuple[str, Node | None]] = []
        # Nodes straight from the rows, not through _node: a sync reads no bodies, so
        # it keeps no blob hashes; tuple.__new__ as in _StoreListing.page (per member).
        new = tuple.__new__
        for p, _, kind, size, etag, ctype, props, created, modified in changes:
            if kind is None:
                out.append((PREFIX + p, None))  # deleted
                continue
            h = PREFIX + p if kind == ITEM else PREFIX + p + "/"
            out.append((h, new(Node, (h, kind != ITEM, etag, size, ctype, created, modified,
                                      props or {}, False, kind))))
        return out, self._token(new_seq), truncated

    def _token_seq(self, token: str) -> int:
        """The seq a token of this lineage names (not yet checked against the log)."""
        if token.startswith(SYNC_PREFIX):
            lineage, _, seq = token[len(SYNC_PREFIX):].rpartition(":")
            if lineage == self.lineage and seq.isdigit():
                return int(seq)
        raise DavError(403, "unknown sync token; sync again from scratch", condition="valid-sync-token")

    def _parse_token(self, token: str) -> int:
        if token == self._token_checked[0]:
            return self._token_checked[1]  # checked by changes_within, in this request
        seq = self._token_seq(token)
        if seq > self.store.last_seq():
            raise DavError(403, "unknown sync token; sync again from scratch",
                           condition="valid-sync-token")
        self._token_checked = (token, seq)
        return seq

    def get_many(self, hrefs: list[str]) -> dict[str, Node]:
        # Items below this user's homes (``allowed``, by prefix: a multiget names up
        # to thousands); anything else is left out, as if it did not exist.
        own = tuple(f"{PREFIX}{ns}/{self.principal.name}/" for ns in NAMESPACES)
        wanted: dict[str, str] = {}
        cut = len(PREFIX)
        for h in hrefs:
            if h.startswith(own):
                p = h[cut:].strip("/")
                if p.count("/") > 1:
                    wanted[p] = h
        out: dict[str, Node] = {}
        blob_of, new = self._blobs, tuple.__new__
        # Nodes straight from the rows (what _node does, without a Resource per member).
        for path, kind, blob, size, etag, ctype, props, created, modified in \
                self.store.heads(list(wanted)):
            h = PREFIX + path if kind == ITEM else PREFIX + path + "/"
            blob_of[h] = blob
            out[wanted[path]] = new(Node, (h, kind != ITEM, etag, size, ctype, created, modified,
                                           {} if props == "{}" else load_props(props), False,
                                           kind))
        return out

    def read_bytes(self, node: Node) -> bytes:
        if node.href in self._small:
            return self._small[node.href]  # read with the head this node came from
        h = self._blobs.get(node.href)
        if h:
            # In the request's read transaction (Store.reading), with the head it came
            # from: a GET is one transaction, not one for the head and one for the body.
            small = self.store.read_small([h])
            if h in small:
                return small[h]
        return b"".join(self.body(node))

    def read_many(self, nodes: list[Node]) -> dict[str, bytes]:
        if not nodes:
            return {}
        hashes = {n.href: self._blobs.get(n.href) for n in nodes}
        small = self.store.read_small(sorted({h for h in hashes.values() if h}))
        return {href: small[h] if h in small else self.read_bytes(n) if h else b""
                for n in nodes for href, h in [(n.href, hashes[n.href])]}

    def query_candidates(self, node: Node, component: str | None, start: float | None,
                         end: float | None) -> list[Node]:
        return [self._node(r) for r in self.store.index_candidates(
            store_path(node.href), component, start, end)]

    def query_index(self, node: Node, component: str | None, start: float | None,
                    end: float | None, limit: int | None = None) -> list[IndexEntry]:
        new = tuple.__new__
        return [new(IndexEntry, (PREFIX + path, etag, s, e, recurring, spans))
                for path, etag, s, e, recurring, spans in self.store.index_spans(
                    store_path(node.href), component, start, end, limit)]

    def index_within(self, node: Node, count: int, component: str | None = None,
                     end: float | None = None) -> bool:
        return not self.store.index_rows_more_than(store_path(node.href), count, component, end)

    def changes_within(self, node: Node, token: str, count: int) -> bool:
        # The token's check (``_parse_token``) and the bound in one statement.
        seq = self._token_seq(token)
        last, beyond = self.store.sync_bound(store_path(node.href), seq, count)
        if seq > last:
            raise DavError(403, "unknown sync token; sync again from scratch",
                           condition="valid-sync-token")
        self._token_checked = (token, seq)
        return not beyond

    def copy_move(self, op: str, src: str, dst: str, deep: bool, overwrite: bool) -> bool:
        s, d = self._writable(src), self._writable(dst)
        if self._is_home(dst) or (op == "move" and self._is_home(src)):
            raise DavError(403, "a home collection cannot be moved or replaced")
        self._forget_locks()
        self._heads.clear()
        kinds: list[str] = []  # of the collection the item lands in

        def check(source: Resource, _target: Resource | None) -> None:
            if source.is_collection:
                self._location_ok(d, source.kind)

        def accepts(parent: Resource, component: str) -> None:
            kinds.append(parent.kind)
            if parent.kind == CALENDAR:
                require_component(component, supported_components(self._node(parent)))
        try:
            return self.store.copy_or_move(op, s, d, self.actor, deep=deep, overwrite=overwrite,
                                           check=check, accepts=accepts)
        except UidConflict as exc:
            _uid_conflict(exc, kinds[0] if kinds else CALENDAR)
        except DomainError as exc:
            _raise(exc)

    def proppatch(self, href: str, set_props: dict[str, str], remove: list[str]) -> Node:
        self._heads.clear()
        try:
            return self._node(self.store.proppatch(self._writable(href), set_props, remove,
                                                   self.actor))
        except DomainError as exc:
            _raise(exc)

    # -- locks -----------------------------------------------------------------

    def _lockinfo(self, lk: Lock) -> LockInfo:
        res_href = self._lock_roots.get(lk.path)
        if res_href is None:
            res_href = PREFIX + lk.path
            node = self.store.get(lk.path)
            if node is not None and node.is_collection:
                res_href += "/"
            self._lock_roots[lk.path] = res_href
        return LockInfo(token=lk.token, root=res_href, depth=lk.depth, scope=lk.scope,
                        owner_xml=lk.owner_xml, mine=lk.principal_id == self.principal.id,
                        timeout=max(0, lk.timeout))

    def locks(self, href: str, ancestors: bool = True, descendants: bool = False) -> list[LockInfo]:
        if not self.allowed(href):
            return []
        if self._locks is None:
            self._locks = self.store.locks_under(self._lock_trees())
        path = store_path(href)
        # The same rules as Store.locks_for: the path's own locks, depth-infinity locks
        # of its ancestors, and (for DELETE, MOVE, LOCK) the locks below it.
        return [self._lockinfo(lk) for lk in self._locks
                if lk.path == path or (ancestors and lk.depth == "infinity"
                                       and path.startswith(lk.path + "/"))
                or (descendants and lk.path.startswith(path + "/"))]

    def _forget_locks(self) -> None:
        self._locks = None
        self._lock_roots.clear()

    def add_lock(self, href: str, depth: str, scope: str, owner_xml: str | None,
                 timeout: int) -> LockInfo:
        path = self._writable(href)
        self._forget_locks()
        return self._lockinfo(self.store.add_lock(path, depth, scope, owner_xml,
                                                  self.principal.id, timeout))

    def refresh_lock(self, token: str, timeout: int) -> LockInfo | None:
        self._forget_locks()
        lk = self.store.refresh_lock(token, timeout)
        return self._lockinfo(lk) if lk else None

    def remove_lock(self, token: str) -> bool:
        self._forget_locks()
        return self.store.remove_lock(token)


class _StoreListing:
    """dav.backend.Listing over a store snapshot; positions are store paths."""

    def __init__(self, backend: StoreDavBackend, snapshot: listing_mod.Snapshot) -> None:
        self._snapshot = snapshot
        self.size = backend.page_size  # members in a page read without ``through``
        self.token = backend._token(snapshot.seq)
        self._token_prefix = self.token.rpartition(":")[0]  # the same lineage
        self._changed: dict[str, list[str] | None] = {}  # changed_since by token seq

    def page(self, after: str, through: str | None = None) -> tuple[Sequence[Node], str, str]:
        if through is None:
            rows = self._snapshot.rows(after, self.size)
            last = rows[-1][0] if rows else after
        else:
            # A range that grew past two pages is cut: memory stays bounded by a page.
            rows = self._snapshot.rows(after, 2 * self.size, through)
            last = rows[-1][0] if len(rows) == 2 * self.size else through
        if not rows:
            return [], last, listing_mod.stamp_of_rows(rows)
        # Not StoreDavBackend._node: a listing never reads bodies, so it keeps no
        # blob hash per member (100,000 of them would outlive every page). The driver's
        # tuples (listing_mod.Row) a column at a time (zip(*rows)): a Members page, whose
        # Nodes are made only if the page is not rendered from its fields alone. The
        # loops over the members run in C but for the hrefs of a page with collections.
        paths, kinds, etags, sizes, ctypes, props, seqs, created, modified = zip(*rows, strict=True)
        n = len(paths)
        if kinds.count(ITEM) == n:
            hrefs, colls = tuple(map(PREFIX.__add__, paths)), (False,) * n
        else:
            hrefs = tuple(PREFIX + p if k == ITEM else PREFIX + p + "/" for p, k
                          in zip(paths, kinds, strict=True))
            colls = tuple(k != ITEM for k in kinds)
        # In Node's order; the dead properties as stored (JSON text) until Nodes are made.
        return Members([hrefs, colls, etags, sizes, ctypes, created, modified, props,
                        (False,) * n, kinds], _dead_props), last, f"{n}:{max(seqs)}"

    def stamp(self, after: str, last: str) -> str:
        return self._snapshot.stamp(after, last)

    def unchanged(self, token: str, after: str, last: str) -> bool | None:
        prefix, _, seq = token.rpartition(":")
        if prefix != self._token_prefix or not seq.isdigit() or int(seq) > self._snapshot.seq:
            return None
        if seq not in self._changed:  # the pages cached together share their token
            self._changed[seq] = self._snapshot.changed_since(int(seq), 2 * self.size)
        paths = self._changed[seq]
        if paths is None:
            return None
        i = bisect_right(paths, after)
        return i == len(paths) or paths[i] > last

    def close(self) -> None:
        self._snapshot.close()


def _dead_props(stored: tuple[str, ...]) -> list[dict[str, str]]:
    return [{} if p == "{}" else load_props(p) for p in stored]


class _Empty:
    def __enter__(self) -> _Empty:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self) -> bytes:
        return b""
