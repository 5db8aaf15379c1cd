"""What the DAV layer needs from storage: small Protocols, implemented by
http/davbackend.py on top of core (STYLE 1)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from safehold.dav.types import SpooledBody


@dataclass(frozen=True)
class Node:
    href: str  # URL path; collections end with "/"
    is_collection: bool
    etag: str
    size: int
    content_type: str | None
    created_at: float
    modified_at: float
    dead_props: dict[str, str]  # Clark name -> serialized XML element
    virtual: bool = False  # a namespace node (/dav/, /dav/files/) that cannot be changed


@dataclass(frozen=True)
class LockInfo:
    token: str
    root: str  # href of the locked resource
    depth: str
    scope: str
    owner_xml: str | None
    mine: bool  # held by the requesting principal
    timeout: int


class DavBackend(Protocol):
    def get(self, href: str) -> Node | None: ...
    def children(self, node: Node) -> list[Node]: ...
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
