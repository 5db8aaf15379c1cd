"""LOCK and UNLOCK (RFC 4918 §9.10, §9.11): shared and exclusive write locks."""

from __future__ import annotations

from lxml import etree

from safehold.dav import props, xml
from safehold.dav.backend import DavBackend, LockInfo
from safehold.dav.conditions import check_if_header, if_lists, require_unlocked
from safehold.dav.errors import DavError
from safehold.dav.ifheader import submitted_tokens
from safehold.dav.paths import href
from safehold.dav.types import DavRequest, DavResponse
from safehold.dav.xml import dav

MAX_TIMEOUT = 7 * 24 * 3600
DEFAULT_TIMEOUT = 3600


class _EmptyBody:
    path = "/dev/null"
    size = 0
    sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def timeout(req: DavRequest) -> int:
    """RFC 4918 §10.7: the first value we understand; capped."""
    for part in (req.header("timeout") or "").split(","):
        part = part.strip()
        if part.lower() == "infinite":
            return MAX_TIMEOUT
        if part.lower().startswith("second-"):
            try:
                return max(1, min(int(part[7:]), MAX_TIMEOUT))
            except ValueError:
                continue
    return DEFAULT_TIMEOUT


def _response(lk: LockInfo, status: int) -> DavResponse:
    root = xml.element(dav("prop"), nsmap=xml.NSMAP)
    disc = xml.sub(root, dav("lockdiscovery"))
    disc.append(props.activelock(lk))
    return DavResponse(status, [("Content-Type", "application/xml; charset=utf-8"),
                                ("Lock-Token", f"<{lk.token}>")], xml.to_bytes(root))


def handle_lock(req: DavRequest, backend: DavBackend) -> DavResponse:
    body = req.body_bytes()
    if not body.strip():
        return _refresh(req, backend)
    root = xml.parse(body)
    if root.tag != dav("lockinfo"):
        raise DavError(400, "the body must be a DAV:lockinfo element")
    scope_el = root.find(dav("lockscope"))
    type_el = root.find(dav("locktype"))
    if scope_el is None or type_el is None or len(scope_el) != 1 or len(type_el) != 1:
        raise DavError(400, "DAV:lockinfo needs one lockscope and one locktype")
    scope = etree.QName(scope_el[0]).localname
    if scope not in ("exclusive", "shared") or type_el[0].tag != dav("write"):
        raise DavError(400, "only exclusive or shared write locks exist")
    owner_el = root.find(dav("owner"))
    owner_xml = None
    if owner_el is not None:
        owner_el.tail = None
        owner_xml = etree.tostring(owner_el, encoding="unicode")
    depth = (req.header("depth") or "infinity").strip().lower()
    if depth not in ("0", "infinity"):
        raise DavError(400, "LOCK Depth must be 0 or infinity")
    node = backend.get(req.path)
    if node is not None and node.virtual:
        raise DavError(403, "this collection cannot be locked")
    tokens = check_if_header(req, backend)
    deep = depth == "infinity" and (node is None or node.is_collection)
    for existing in backend.locks(req.path, ancestors=True, descendants=deep):
        if scope == "exclusive" or existing.scope == "exclusive":
            raise DavError(423, f"{existing.root} is already locked",
                           condition="no-conflicting-lock", hrefs=[href(existing.root)])
    created = False
    if node is None:
        # RFC 4918 §7.3: locking an unmapped URL creates an empty resource.
        require_unlocked(backend, req.path, tokens)
        backend.put(req.path, _EmptyBody(), None, None, True)
        created = True
    lk = backend.add_lock(req.path, "infinity" if deep else "0", scope, owner_xml, timeout(req))
    return _response(lk, 201 if created else 200)


def _refresh(req: DavRequest, backend: DavBackend) -> DavResponse:
    lists = if_lists(req)
    if not lists:
        raise DavError(400, "a LOCK refresh needs an If header with the lock token")
    tokens = submitted_tokens(lists)
    for lk in backend.locks(req.path):
        if lk.token in tokens:
            if not lk.mine:
                raise DavError(403, "the lock belongs to another principal")
            refreshed = backend.refresh_lock(lk.token, timeout(req))
            if refreshed is not None:
                return _response(refreshed, 200)
    raise DavError(412, "no lock with the submitted token covers this resource",
                   condition="lock-token-matches-request-uri")


def handle_unlock(req: DavRequest, backend: DavBackend) -> DavResponse:
    value = (req.header("lock-token") or "").strip()
    if not (value.startswith("<") and value.endswith(">")):
        raise DavError(400, "UNLOCK needs a Lock-Token header")
    token = value[1:-1]
    if backend.get(req.path) is None:
        raise DavError(404, "not found")
    for lk in backend.locks(req.path):
        if lk.token == token:
            if not lk.mine:
                raise DavError(403, "the lock belongs to another principal")
            backend.remove_lock(token)
            return DavResponse(204, [("Content-Length", "0")])
    raise DavError(409, "the lock token does not cover this resource",
                   condition="lock-token-matches-request-uri")
