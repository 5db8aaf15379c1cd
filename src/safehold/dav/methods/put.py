"""PUT (RFC 9110 §9.3.4, RFC 4918 §9.7): bytes are stored exactly as sent."""

from __future__ import annotations

from safehold.dav.backend import DavBackend
from safehold.dav.conditions import check_if_header, require_unlocked
from safehold.dav.errors import DavError
from safehold.dav.types import DavRequest, DavResponse


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    if req.header("content-range"):
        # RFC 9110 §14.4: a server that does not support partial PUT must reject it.
        raise DavError(400, "partial PUT (Content-Range) is not supported")
    existing = backend.get(req.path)
    if existing is not None and existing.is_collection or \
            existing is None and backend.get(req.path.rstrip("/") + "/") is not None:
        raise DavError(405, "cannot PUT to a collection",
                       headers=[("Allow", "OPTIONS, GET, HEAD, DELETE, PROPFIND, PROPPATCH, COPY, "
                                          "MOVE, LOCK, UNLOCK, MKCOL")])
    if req.path.endswith("/"):
        raise DavError(400, "a resource name cannot end with a slash")
    tokens = check_if_header(req, backend)
    require_unlocked(backend, req.path, tokens)
    if_match = req.header("if-match")
    if_none_match = req.header("if-none-match")
    if if_none_match is not None and if_none_match.strip() != "*":
        existing = backend.get(req.path)
        if existing is not None and existing.etag in [t.strip() for t in if_none_match.split(",")]:
            raise DavError(412, "If-None-Match matched the current ETag")
    assert req.body is not None
    node, created = backend.put(req.path, req.body, req.header("content-type"),
                                if_match.strip() if if_match else None,
                                if_none_match is not None and if_none_match.strip() == "*")
    return DavResponse(201 if created else 204, [("ETag", node.etag), ("Content-Length", "0")])
