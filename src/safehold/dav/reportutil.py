"""Pieces shared by the REPORTs of CalDAV and CardDAV: property lists that carry an
object-data element (calendar-data, address-data), multiget, multistatus."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from lxml import etree

from safehold.dav import multistatus
from safehold.dav.backend import DavBackend, Node
from safehold.dav.errors import DavError
from safehold.dav.methods import propfind
from safehold.dav.types import DavResponse
from safehold.dav.xml import dav

# Object data (calendar-data, address-data) as a serialized property element.
Render = Callable[[bytes], str]
# XML 1.0 cannot carry most control characters (nor U+FFFE/U+FFFF).
_NOT_XML = {c: None for c in [*range(0x20), 0xFFFE, 0xFFFF] if chr(c) not in "\t\n\r"}


def clean_text(data: bytes) -> str:
    """Object bytes as XML text. XML 1.0 cannot carry most control characters; a
    GET still returns the exact bytes."""
    return data.decode("utf-8", errors="replace").lstrip("\ufeff").translate(_NOT_XML)


def data_element(name: str, ns_prefix: str, ns: str, data: bytes) -> str:
    """``<P:name xmlns:P="ns">text</P:name>`` for object data."""
    local = name.rpartition("}")[2]
    return (f'<{ns_prefix}:{local} xmlns:{ns_prefix}="{ns}">'
            f"{multistatus.escape(clean_text(data))}</{ns_prefix}:{local}>")


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
             body: bytes | None = None) -> str:
    extra = ""
    if render is not None:
        extra = render(body if body is not None else backend.read_bytes(node))
    return propfind.response_for(node, backend, "prop", names, extra)


def not_found(h: str) -> str:
    return multistatus.status_response(h, 404)


def multistatus_response(responses: list[str]) -> DavResponse:
    return DavResponse(207, [multistatus.CONTENT_TYPE], multistatus.document(responses))


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
    return multistatus_response(out)
