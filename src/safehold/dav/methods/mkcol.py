"""MKCOL (RFC 4918 §9.3) and extended MKCOL (RFC 5689): a body may set the
resource type (e.g. a calendar or an address book) and initial properties."""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree

from safehold.dav import props, xml
from safehold.dav.backend import DavBackend
from safehold.dav.conditions import check_if_header, require_unlocked
from safehold.dav.errors import DavError
from safehold.dav.types import DavRequest, DavResponse
from safehold.dav.xml import dav

# kind -> check(props) raising DavError; lets CalDAV/CardDAV validate their properties.
VALIDATORS: dict[str, Callable[[dict[str, str]], None]] = {}
# Properties that may be set at creation although PROPPATCH may not change them.
SETTABLE_AT_CREATION: set[str] = set()


def parse_body(root: etree._Element, set_tag: str) -> tuple[set[str], dict[str, str]]:
    """Return (resource type names, properties to store) from a DAV:mkcol or
    CALDAV:mkcalendar body."""
    types: set[str] = set()
    stored: dict[str, str] = {}
    for instr in root:
        if instr.tag != set_tag:
            continue
        for prop in instr.iter(dav("prop")):
            for p in prop:
                if not isinstance(p.tag, str):
                    continue
                name = str(p.tag)
                if name == dav("resourcetype"):
                    types |= {str(t.tag) for t in p if isinstance(t.tag, str)}
                    continue
                if name in props.PROTECTED and name not in SETTABLE_AT_CREATION:
                    raise DavError(403, f"{name} cannot be set", condition="cannot-modify-protected-property")
                p.tail = None
                stored[name] = etree.tostring(p, encoding="unicode")
    return types, stored


def kind_for(types: set[str]) -> str:
    extra = types - {dav("collection")}
    if not extra:
        return "collection"
    for kind, names in props.RESOURCETYPES.items():
        if kind != "principal" and set(names) == extra:
            return kind
    raise DavError(403, f"unsupported resource type {sorted(extra)}", condition="valid-resourcetype")


def create(req: DavRequest, backend: DavBackend, kind: str, stored: dict[str, str]) -> DavResponse:
    if backend.get(req.path) is not None:
        raise DavError(405, "the resource already exists",
                       headers=[("Allow", "GET, HEAD, PROPFIND, DELETE")])
    validator = VALIDATORS.get(kind)
    if validator is not None:
        validator(stored)
    tokens = check_if_header(req, backend)
    require_unlocked(backend, req.path, tokens)
    backend.mkcol_kind(req.path, kind, stored)
    return DavResponse(201, [("Content-Length", "0"), ("Cache-Control", "no-cache")])


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    if req.body is not None and req.body.size > 0:
        ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
        if ctype not in ("application/xml", "text/xml"):
            # §9.3: a body the server does not understand is 415.
            raise DavError(415, "MKCOL understands only an extended-MKCOL XML body (RFC 5689)")
        root = xml.parse(req.body_bytes())
        if root.tag != dav("mkcol"):
            raise DavError(415, "the MKCOL body must be a DAV:mkcol element")
        types, stored = parse_body(root, dav("set"))
        return create(req, backend, kind_for(types), stored)
    return create(req, backend, "collection", {})
