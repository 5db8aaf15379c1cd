"""Method dispatch. Everything here is synchronous; the HTTP layer runs it in a
worker thread with the request body already spooled."""

from __future__ import annotations

from collections.abc import Callable

from safehold.dav.backend import DavBackend
from safehold.dav.errors import DavError
from safehold.dav.methods import copymove, delete, get, lock, mkcol, options, propfind, proppatch, put
from safehold.dav.types import DavRequest, DavResponse

Method = Callable[[DavRequest, DavBackend], DavResponse]

METHODS: dict[str, Method] = {
    "OPTIONS": options.handle,
    "GET": get.handle,
    "HEAD": get.handle,
    "PUT": put.handle,
    "DELETE": delete.handle,
    "MKCOL": mkcol.handle,
    "PROPFIND": propfind.handle,
    "PROPPATCH": proppatch.handle,
    "COPY": copymove.handle,
    "MOVE": copymove.handle,
    "LOCK": lock.handle_lock,
    "UNLOCK": lock.handle_unlock,
}


def register(method: str, fn: Method) -> None:
    """CalDAV/CardDAV add REPORT, MKCALENDAR, ... here."""
    METHODS[method] = fn


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    fn = METHODS.get(req.method)
    if fn is None:
        raise DavError(405, f"method {req.method} is not supported here",
                       headers=[("Allow", options.ALLOW)])
    return fn(req, backend)
