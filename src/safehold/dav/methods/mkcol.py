"""MKCOL (RFC 4918 §9.3)."""

from __future__ import annotations

from safehold.dav.backend import DavBackend
from safehold.dav.conditions import check_if_header, require_unlocked
from safehold.dav.errors import DavError
from safehold.dav.types import DavRequest, DavResponse


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    if req.body is not None and req.body.size > 0:
        # §9.3: a body the server does not understand is 415.
        raise DavError(415, "MKCOL with a request body is not supported")
    if backend.get(req.path) is not None:
        raise DavError(405, "the resource already exists", headers=[("Allow", "GET, HEAD, PROPFIND, DELETE")])
    tokens = check_if_header(req, backend)
    require_unlocked(backend, req.path, tokens)
    backend.mkcol(req.path)
    return DavResponse(201, [("Content-Length", "0")])
