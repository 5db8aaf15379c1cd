"""Request and response values the DAV layer works with, framework-free."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


class SpooledBody(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...


@dataclass(frozen=True)
class BodyBytes:
    """A small request body held in memory (the XML of PROPFIND, REPORT, LOCK, ...):
    no temporary file for what is parsed at once. PUT bodies are spooled to disk."""

    data: bytes
    path: str = ""  # no file: read ``data``

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class DavRequest:
    method: str
    path: str  # decoded URL path, e.g. "/dav/files/alice/a b.txt"
    headers: dict[str, str]  # lower-case names
    body: SpooledBody | None  # spooled to disk by the HTTP layer, or BodyBytes
    base_url: str  # "http://host:port", to resolve Destination headers
    user: str

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def body_bytes(self, limit: int = 1 << 20) -> bytes:
        from safehold.dav.errors import DavError
        if self.body is None or self.body.size == 0:
            return b""
        if self.body.size > limit:
            raise DavError(413, f"XML request bodies are limited to {limit} bytes")
        if isinstance(self.body, BodyBytes):
            return self.body.data
        with open(self.body.path, "rb") as fh:
            return fh.read()


class Pieces(list[bytes]):
    """A body held in memory in pieces: sent with a Content-Length, never joined. The
    join of a one-page listing (~280 KB) is an allocation above glibc's mmap threshold
    (http/memory.py): fresh pages, ~70 page faults, 97 µs against 7.5 µs, every time."""


@dataclass
class DavResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | Iterable[bytes] = b""
