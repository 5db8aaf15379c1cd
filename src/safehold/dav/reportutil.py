"""Pieces shared by the REPORTs of CalDAV and CardDAV: property lists that carry an
object-data element (calendar-data, address-data), multiget, multistatus."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from lxml import etree

from safehold.dav import xml
from safehold.dav.backend import DavBackend, Node
from safehold.dav.errors import DavError
from safehold.dav.methods import propfind
from safehold.dav.types import DavResponse
from safehold.dav.xml import dav

Render = Callable[[bytes], etree._Element]


def clean_text(data: bytes) -> str:
    """Object bytes as XML text. XML 1.0 cannot carry most control characters; a
    GET still returns the exact bytes."""
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20)


def split_props(prop: etree._Element | None, data_tag: str) -> tuple[list[str], etree._Element | None]:
    if prop is None:
        return [], None
    names, data_el = [], None
    for p in prop:
        if not isinstance(p.tag, str):
            continue
        if p.tag == data_tag:
            data_el = p
        else:
            names.append(str(p.tag))
    return names, data_el


def response(node: Node, backend: DavBackend, names: list[str], render: Render | None,
             body: bytes | None = None) -> etree._Element:
    resp = propfind.response_for(node, backend, "prop", names)
    if render is not None:
        ok = next((ps for ps in resp.findall(dav("propstat"))
                   if " 200 " in (ps.findtext(dav("status")) or "") + " "), None)
        if ok is None:
            ok = xml.element(dav("propstat"))
            xml.sub(ok, dav("prop"))
            xml.sub(ok, dav("status"), xml.status_line(200))
            resp.insert(1, ok)
        prop = ok.find(dav("prop"))
        assert prop is not None
        prop.append(render(body if body is not None else backend.read_bytes(node)))
    return resp


def not_found(h: str) -> etree._Element:
    resp = xml.element(dav("response"))
    xml.sub(resp, dav("href"), h)
    xml.sub(resp, dav("status"), xml.status_line(404))
    return resp


def multistatus(responses: list[etree._Element]) -> DavResponse:
    ms = xml.multistatus()
    for r in responses:
        ms.append(r)
    return DavResponse(207, [("Content-Type", "application/xml; charset=utf-8")], xml.to_bytes(ms))


def multiget(root: etree._Element, backend: DavBackend, names: list[str],
             render: Render | None) -> DavResponse:
    hrefs = [h.text.strip() for h in root.findall(dav("href")) if h.text and h.text.strip()]
    if not hrefs:
        raise DavError(400, "a multiget needs at least one DAV:href")
    paths = [unquote(urlsplit(h).path) for h in hrefs]
    found = backend.get_many([p for p in paths if backend.allowed(p)])
    bodies = backend.read_many([n for n in found.values() if not n.is_collection]) \
        if render is not None else {}
    out = []
    for h, p in zip(hrefs, paths, strict=True):
        member = found.get(p)
        out.append(not_found(h) if member is None or member.is_collection
                   else response(member, backend, names, render, bodies.get(member.href)))
    return multistatus(out)
