"""Method dispatch. Everything here is synchronous; the HTTP layer runs it in a
worker thread with the request body already spooled."""

from __future__ import annotations

from collections.abc import Callable

from safehold.dav.backend import DavBackend
from safehold.dav.errors import DavError
from safehold.dav.methods import (
    copymove, delete, get, lock, mkcol, options, propfind, proppatch, put, report,
)
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


# Larger PROPFIND bodies are parsed in a worker thread (handler.quick).
QUICK_BODY = 64 * 1024


def quick(req: DavRequest, backend: DavBackend) -> DavResponse | None:
    """The answer to a request whose work is bounded: GET/HEAD of an item up to
    get.SMALL bytes, PROPFIND Depth 0 with a small body, OPTIONS, and a REPORT with a
    small body whose quick variant finds its work bounded (sync-collection after a
    token with few changes, a multiget of a few small objects, calendar-query on a
    small calendar: report.quick). None for every other request, and for a GET that
    turns out to hit a collection or a large body. The HTTP layer may run this where
    a blocking call would stall other clients (its event loop), so it never writes
    and never lists a collection."""
    fn = METHODS.get(req.method)
    if fn is report.handle:
        if req.body is not None and 0 < req.body.size <= QUICK_BODY:
            return report.quick(req, backend)
        return None
    if fn is get.handle:
        return get.quick(req, backend)
    if fn is options.handle:
        return fn(req, backend)
    if fn is propfind.handle and (req.header("depth") or "").strip() == "0" \
            and (req.body is None or req.body.size <= QUICK_BODY):
        return fn(req, backend)
    return None


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    fn = METHODS.get(req.method)
    if fn is None:
        raise DavError(405, f"method {req.method} is not supported here",
                       headers=[("Allow", options.ALLOW)])
    return fn(req, backend)
