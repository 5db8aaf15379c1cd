"""Request and response values the DAV layer works with, framework-free."""

from __future__ import annotations

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


@dataclass
class DavRequest:
    method: str
    path: str  # decoded URL path, e.g. "/dav/files/alice/a b.txt"
    headers: dict[str, str]  # lower-case names
    body: SpooledBody | None  # spooled to disk by the HTTP layer
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
        with open(self.body.path, "rb") as fh:
            return fh.read()


@dataclass
class DavResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | Iterable[bytes] = b""
