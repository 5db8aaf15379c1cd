"""The one adapter between the DAV layer and core/store (STYLE 1). It maps URL
paths to store paths, enforces that a user only ever touches their own tree, and
translates domain errors into DAV errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

from safehold.core.model import Actor, Body, Lock, Principal, Resource
from safehold.dav.backend import LockInfo, Node
from safehold.dav.errors import DavError
from safehold.dav.types import SpooledBody
from safehold.errors import DomainError
from safehold.store.repo import Store

PREFIX = "/dav/"
NAMESPACES = ("files", "principals")  # top-level collections under /dav/


def store_path(href: str) -> str:
    return href[len(PREFIX):].strip("/")


def _raise(exc: DomainError) -> NoReturn:
    raise DavError(exc.status, str(exc)) from exc


class StoreDavBackend:
    def __init__(self, store: Store, principal: Principal, actor: Actor,
                 homes: tuple[str, ...] = ("files",)) -> None:
        self.store = store
        self.principal = principal
        self.actor = actor
        self.homes = homes

    # -- access ----------------------------------------------------------------

    def allowed(self, href: str) -> bool:
        if not href.startswith(PREFIX):
            return False
        parts = [p for p in store_path(href).split("/") if p]
        if len(parts) <= 1:
            return not parts or parts[0] in NAMESPACES
        return parts[0] in NAMESPACES and parts[1] == self.principal.name

    def _is_home(self, href: str) -> bool:
        return len([p for p in store_path(href).split("/") if p]) <= 2

    # -- nodes -----------------------------------------------------------------

    def _virtual(self, href: str) -> Node:
        return Node(href=href, is_collection=True, etag="", size=0, content_type=None,
                    created_at=self.principal.created_at, modified_at=self.principal.created_at,
                    dead_props={}, virtual=True)

    def _node(self, res: Resource) -> Node:
        href = PREFIX + res.path + ("/" if res.is_collection else "")
        return Node(href=href, is_collection=res.is_collection, etag=res.etag, size=res.size,
                    content_type=res.content_type, created_at=res.created_at,
                    modified_at=res.modified_at, dead_props=res.props)

    def get(self, href: str) -> Node | None:
        if not self.allowed(href):
            return None
        path = store_path(href)
        parts = path.split("/") if path else []
        if len(parts) <= 1 or parts[0] == "principals":
            if len(parts) <= 2:
                return self._virtual(PREFIX + (path + "/" if path else ""))
            return None
        res = self.store.get(path)
        if res is None:
            return None
        if href.endswith("/") and not res.is_collection:
            return None
        return self._node(res)

    def children(self, node: Node) -> list[Node]:
        path = store_path(node.href)
        if not path:
            return [self._virtual(f"{PREFIX}{ns}/") for ns in NAMESPACES]
        if "/" not in path:
            child = f"{PREFIX}{path}/{self.principal.name}/"
            found = self.get(child)
            return [found] if found else []
        return [self._node(r) for r in self.store.children(path)]

    def subtree(self, node: Node) -> list[Node]:
        return [self._node(r) for r in self.store.subtree(store_path(node.href))]

    def body(self, node: Node) -> Iterator[bytes]:
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
        data: Body | bytes = b"" if body.size == 0 else Body(body.path, body.size, body.sha256)
        try:
            res, created = self.store.put(path, self.principal.id, data, content_type,
                                          self.actor, if_match=if_match,
                                          if_none_match=if_none_match)
        except DomainError as exc:
            _raise(exc)
        return self._node(res), created

    def delete(self, href: str, if_match: str | None) -> None:
        path = self._writable(href)
        if self._is_home(href):
            raise DavError(403, "a home collection cannot be deleted")
        try:
            self.store.delete(path, self.actor, if_match=if_match)
        except DomainError as exc:
            _raise(exc)

    def mkcol(self, href: str) -> Node:
        path = self._writable(href)
        if self._is_home(href):
            raise DavError(405, "the home collection exists")
        try:
            return self._node(self.store.mkcol(path, self.principal.id, self.actor))
        except DomainError as exc:
            _raise(exc)

    def copy_move(self, op: str, src: str, dst: str, deep: bool, overwrite: bool) -> bool:
        s, d = self._writable(src), self._writable(dst)
        if self._is_home(dst) or (op == "move" and self._is_home(src)):
            raise DavError(403, "a home collection cannot be moved or replaced")
        try:
            return self.store.copy_or_move(op, s, d, self.actor, deep=deep, overwrite=overwrite)
        except DomainError as exc:
            _raise(exc)

    def proppatch(self, href: str, set_props: dict[str, str], remove: list[str]) -> Node:
        try:
            return self._node(self.store.proppatch(self._writable(href), set_props, remove,
                                                   self.actor))
        except DomainError as exc:
            _raise(exc)

    # -- locks -----------------------------------------------------------------

    def _lockinfo(self, lk: Lock) -> LockInfo:
        res_href = PREFIX + lk.path
        node = self.store.get(lk.path)
        if node is not None and node.is_collection:
            res_href += "/"
        return LockInfo(token=lk.token, root=res_href, depth=lk.depth, scope=lk.scope,
                        owner_xml=lk.owner_xml, mine=lk.principal_id == self.principal.id,
                        timeout=max(0, lk.timeout))

    def locks(self, href: str, ancestors: bool = True, descendants: bool = False) -> list[LockInfo]:
        if not self.allowed(href):
            return []
        return [self._lockinfo(lk) for lk in
                self.store.locks_for(store_path(href), ancestors=ancestors, descendants=descendants)]

    def add_lock(self, href: str, depth: str, scope: str, owner_xml: str | None,
                 timeout: int) -> LockInfo:
        path = self._writable(href)
        return self._lockinfo(self.store.add_lock(path, depth, scope, owner_xml,
                                                  self.principal.id, timeout))

    def refresh_lock(self, token: str, timeout: int) -> LockInfo | None:
        lk = self.store.refresh_lock(token, timeout)
        return self._lockinfo(lk) if lk else None

    def remove_lock(self, token: str) -> bool:
        return self.store.remove_lock(token)
