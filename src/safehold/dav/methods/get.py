"""GET and HEAD (RFC 9110 §9.3.1-2): bodies stream from the store chunk by chunk."""

from __future__ import annotations

import html

from safehold.dav.backend import DavBackend, Node
from safehold.dav.conditions import check_etag_preconditions
from safehold.dav.errors import DavError
from safehold.dav.httpdate import http_date
from safehold.dav.paths import href
from safehold.dav.types import DavRequest, DavResponse

SMALL = 256 * 1024  # bodies up to this size are answered in one piece


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    node = backend.get(req.path)
    if node is None:
        raise DavError(404, "not found")
    return answer(req, backend, node)


def quick(req: DavRequest, backend: DavBackend) -> DavResponse | None:
    """The answer if it costs one lookup and at most one small body, else None (a
    collection lists its members; a large body streams): see handler.quick."""
    node = backend.get(req.path)
    if node is None:
        raise DavError(404, "not found")
    if node.is_collection or node.size > SMALL:
        return None
    return answer(req, backend, node)


def answer(req: DavRequest, backend: DavBackend, node: Node) -> DavResponse:
    check_etag_preconditions(req, node)
    headers = [("Last-Modified", http_date(node.modified_at))]
    if not node.virtual:
        headers.append(("ETag", node.etag))
    if node.is_collection:
        rows = "".join(
            f'<li><a href="{html.escape(href(c.href))}">{html.escape(c.href.rstrip("/").rsplit("/", 1)[-1])}'
            f'{"/" if c.is_collection else ""}</a></li>' for c in backend.children(node))
        body = (f"<!doctype html><title>{html.escape(node.href)}</title>"
                f"<h1>{html.escape(node.href)}</h1><ul>{rows}</ul>").encode()
        headers += [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]
        return DavResponse(200, headers, b"" if req.method == "HEAD" else body)
    headers += [("Content-Type", node.content_type or "application/octet-stream"),
                ("Content-Length", str(node.size))]
    if req.method == "HEAD":
        return DavResponse(200, headers, b"")
    if node.size <= SMALL:
        # Read here, in the worker thread already running this request, and sent in one
        # piece: streaming costs a thread hop per chunk, which dominates a small GET.
        return DavResponse(200, headers, backend.read_bytes(node))
    return DavResponse(200, headers, backend.body(node))
