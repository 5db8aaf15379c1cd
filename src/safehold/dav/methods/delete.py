"""DELETE (RFC 4918 §9.6): a tombstone in the store, never a hard delete."""

from __future__ import annotations

from safehold.dav.backend import DavBackend
from safehold.dav.conditions import check_etag_preconditions, check_if_header, require_unlocked
from safehold.dav.errors import DavError
from safehold.dav.types import DavRequest, DavResponse


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    if "#" in req.path:
        raise DavError(400, "a fragment is not part of a resource name")
    node = backend.get(req.path)
    if node is None:
        raise DavError(404, "not found")
    if node.virtual:
        raise DavError(403, "this collection cannot be deleted")
    depth = req.header("depth")
    if node.is_collection and depth is not None and depth.lower() != "infinity":
        raise DavError(400, "DELETE of a collection must have Depth: infinity")
    check_etag_preconditions(req, node)
    tokens = check_if_header(req, backend)
    require_unlocked(backend, req.path, tokens, deep=node.is_collection)
    backend.delete(req.path, None)
    return DavResponse(204, [("Content-Length", "0")])
