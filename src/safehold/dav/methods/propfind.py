"""PROPFIND (RFC 4918 §9.1). Depth infinity is refused with propfind-finite-depth."""

from __future__ import annotations

from lxml import etree

from safehold.dav import props, xml
from safehold.dav.backend import DavBackend, Node
from safehold.dav.errors import DavError
from safehold.dav.paths import href
from safehold.dav.types import DavRequest, DavResponse
from safehold.dav.xml import dav


def parse_request(body: bytes) -> tuple[str, list[str]]:
    """Return ("allprop"|"propname"|"prop", names)."""
    if not body.strip():
        return "allprop", []
    root = xml.parse(body)
    if root.tag != dav("propfind"):
        raise DavError(400, "the body must be a DAV:propfind element")
    for child in root:
        if child.tag == dav("allprop"):
            return "allprop", []
        if child.tag == dav("propname"):
            return "propname", []
        if child.tag == dav("prop"):
            return "prop", [str(p.tag) for p in child if isinstance(p.tag, str)]
    raise DavError(400, "DAV:propfind needs prop, allprop or propname")


def depth(req: DavRequest) -> int:
    header = req.header("depth")
    value = "infinity" if header is None else header.strip().lower()
    if value == "0":
        return 0
    if value == "1":
        return 1
    if value == "infinity":
        raise DavError(403, "Depth: infinity is not supported; use 0 or 1",
                       condition="propfind-finite-depth")
    raise DavError(400, f"invalid Depth header {value!r}")


def response_for(node: Node, backend: DavBackend, mode: str, names: list[str]) -> etree._Element:
    resp = xml.element(dav("response"))
    xml.sub(resp, dav("href"), href(node.href))
    found = xml.element(dav("prop"))
    missing = xml.element(dav("prop"))
    if mode == "propname":
        for name in props.all_names(node, backend):
            found.append(xml.element(name))
    elif mode == "allprop":
        for name in list(props.LIVE) + [n for n in node.dead_props if n not in props.LIVE]:
            if name in props.LIVE and name in props.NOT_IN_ALLPROP:
                continue
            value = props.value(name, node, backend)
            if value is not None:
                found.append(value)
    else:
        for name in names:
            value = props.value(name, node, backend)
            if value is None:
                missing.append(xml.element(name))
            else:
                found.append(value)
    for group, code in ((found, 200), (missing, 404)):
        if len(group) or (code == 200 and not len(missing)):
            ps = xml.sub(resp, dav("propstat"))
            ps.append(group)
            xml.sub(ps, dav("status"), xml.status_line(code))
    return resp


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    d = depth(req)
    mode, names = parse_request(req.body_bytes())
    node = backend.get(req.path)
    if node is None:
        raise DavError(404, "not found")
    ms = xml.multistatus()
    ms.append(response_for(node, backend, mode, names))
    if d == 1 and node.is_collection:
        for child in backend.children(node):
            ms.append(response_for(child, backend, mode, names))
    return DavResponse(207, [("Content-Type", "application/xml; charset=utf-8")], xml.to_bytes(ms))
