"""The one exception the DAV layer raises; http/ maps it to a response."""

from __future__ import annotations


class DavError(Exception):
    """An HTTP error with an optional DAV precondition/postcondition element
    (RFC 4918 §16). ``condition`` is a local name in ``namespace``."""

    def __init__(self, status: int, message: str, condition: str | None = None,
                 namespace: str = "DAV:", hrefs: list[str] | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.condition = condition
        self.namespace = namespace
        self.hrefs = hrefs or []
        self.headers = headers or []
