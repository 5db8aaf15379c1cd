"""Reading an ASGI request body into memory, bounded: shared by the DAV app (XML bodies)
and the web pages (forms), which map the two failures to their own error responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]


class ClientGone(Exception):
    """The client disconnected before the body was complete."""


class BodyTooLarge(Exception):
    """The body grew past the limit; nothing beyond it was kept."""


async def read_limited(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
