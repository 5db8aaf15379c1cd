from __future__ import annotations

from safehold.dav.backend import DavBackend
from safehold.dav.types import DavRequest, DavResponse

ALLOW = "OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, PROPFIND, PROPPATCH, COPY, MOVE, LOCK, UNLOCK"
DAV_CLASSES = ["1", "2", "3"]


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    return DavResponse(200, [("DAV", ", ".join(DAV_CLASSES)), ("Allow", ALLOW),
                             ("MS-Author-Via", "DAV"), ("Content-Length", "0")])
