"""COPY and MOVE (RFC 4918 §9.8, §9.9)."""

from __future__ import annotations

from safehold.dav.backend import DavBackend
from safehold.dav.conditions import check_if_header, require_unlocked
from safehold.dav.errors import DavError
from safehold.dav.paths import destination
from safehold.dav.types import DavRequest, DavResponse


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    op = req.method.lower()
    src = backend.get(req.path)
    if src is None:
        raise DavError(404, "not found")
    if src.virtual:
        raise DavError(403, f"this collection cannot be {'moved' if op == 'move' else 'copied'}")
    dst = destination(req.header("destination"), req.base_url)
    if src.is_collection and not dst.endswith("/"):
        dst += "/"
    if not backend.allowed(dst):
        raise DavError(403, "the Destination is not yours")
    if dst.rstrip("/") == req.path.rstrip("/"):
        raise DavError(403, "the source and the Destination are the same")
    if src.is_collection and dst.startswith(req.path.rstrip("/") + "/"):
        raise DavError(403, "cannot copy or move a collection into itself")
    overwrite = (req.header("overwrite") or "T").strip().upper()
    if overwrite not in ("T", "F"):
        raise DavError(400, "Overwrite must be T or F")
    depth = (req.header("depth") or "infinity").strip().lower()
    if depth not in ("0", "infinity") or (op == "move" and depth != "infinity" and src.is_collection):
        raise DavError(400, f"invalid Depth {depth!r} for {req.method}")
    target = backend.get(dst)
    if target is not None and target.virtual:
        raise DavError(403, "cannot overwrite this collection")
    if target is not None and overwrite == "F":
        raise DavError(412, "the Destination exists and Overwrite is F")
    tokens = check_if_header(req, backend)
    if op == "move":
        require_unlocked(backend, req.path, tokens, deep=True)
    require_unlocked(backend, dst, tokens, deep=True)
    created = backend.copy_move(op, req.path, dst, depth == "infinity", overwrite == "T")
    return DavResponse(201 if created else 204, [("Content-Length", "0")])
