"""Pieces shared by the REPORTs of CalDAV and CardDAV: property lists that carry an
object-data element (calendar-data, address-data), multiget, multistatus."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from lxml import etree

from safehold.dav import fragments, multistatus
from safehold.dav.backend import DavBackend, Node
from safehold.dav.errors import DavError
from safehold.dav.methods import propfind
from safehold.dav.types import DavResponse
from safehold.dav.xml import dav

# Object data (calendar-data, address-data) as a serialized property element.
Render = Callable[[bytes], str]


class ObjectData(NamedTuple):
    """How a REPORT asks for object data: ``render`` turns an object's bytes into the
    property element; ``key`` names everything the result depends on besides those
    bytes (the element, an expand range, the selected vCard properties), so that
    responses can be cached by (href, ETag, properties, key)."""

    render: Render
    key: str
# XML 1.0 cannot carry most control characters (nor U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def clean_text(data: bytes) -> str:
    """Object bytes as XML text. XML 1.0 cannot carry most control characters; a
    GET still returns the exact bytes."""
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    # A search finds none in almost every object, at C speed; str.translate with a
    # table would look up every character (a fifth of a multiget's rendering).
    return _NOT_XML.sub("", text) if _NOT_XML.search(text) else text


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


def responses(members: list[Node], backend: DavBackend, names: list[str],
              data: ObjectData | None, bodies: dict[str, bytes] | None = None) -> list[str]:
    """The DAV:responses of ``members`` (found, not collections) with the properties
    ``names`` and the object data ``data`` asks for, through the fragment cache
    (dav/fragments.py): an object's bytes are read only for members not cached.
    ``bodies``: bytes the caller read already, by href."""
    return member_responses([(m.href, m.etag) for m in members], backend, names, data,
                            {m.href: m for m in members}, bodies)


def member_responses(members: list[tuple[str, str]], backend: DavBackend, names: list[str],
                     data: ObjectData | None, nodes: dict[str, Node] | None = None,
                     bodies: dict[str, bytes] | None = None) -> list[str]:
    """``responses`` of members named by (href, ETag): a member whose response is in
    the fragment cache needs neither its Node nor its bytes; the others are taken from
    ``nodes`` or read (backend.get_many, one statement for all). A member found in
    neither (gone: never within one snapshot) is left out."""
    key_names = propfind.cacheable("prop", names)
    if key_names is not None and data is not None:
        key_names += ("\0" + data.key,)  # never equal to a property name
    cache = fragments.members
    texts = [None] * len(members) if key_names is None else \
        [cache.get((h, etag, key_names)) for h, etag in members]
    if None not in texts:
        return texts  # type: ignore[return-value]  # all found
    known = nodes if nodes is not None else {}
    wanted = [h for (h, _), t in zip(members, texts, strict=True) if t is None and h not in known]
    if wanted:
        known = {**known, **backend.get_many(wanted)}
    got = bodies or {}
    if data is not None:
        unread = [known[h] for (h, _), t in zip(members, texts, strict=True)
                  if t is None and h in known and h not in got]
        if unread:
            got = {**got, **backend.read_many(unread)}
    out = []
    for (h, _), text in zip(members, texts, strict=True):
        if text is None:
            node = known.get(h)
            if node is None:
                continue
            text = response(node, backend, names, None if data is None else data.render, got.get(h))
            if key_names is not None and not node.virtual:
                cache.put((h, node.etag, key_names), text)
        out.append(text)
    return out


def _plain(h: str) -> bool:
    """Whether ``h`` is a path that is its own URL path, percent-decoded: the usual
    href, as clients send back what the server listed."""
    return h.startswith("/") and not h.startswith("//") and "%" not in h and "?" not in h \
        and "#" not in h


def _path(h: str) -> str:
    """The URL path of a DAV:href (absolute or a path), percent-decoded; "" (which names
    nothing, so the href is answered 404) when the href is not a URL at all."""
    if _plain(h):
        return h
    try:
        return unquote(urlsplit(h).path)
    except ValueError:  # "http://[::1": urlsplit refuses a broken IPv6 host
        return ""


def not_found(h: str) -> str:
    return multistatus.status_response(h, 404)


def multistatus_response(responses: list[str]) -> DavResponse:
    return DavResponse(207, [multistatus.CONTENT_TYPE], multistatus.document(responses))


_HREF = dav("href")
# A multiget of at most this many hrefs and bytes of objects is bounded work (quick).
QUICK_HREFS = 200
QUICK_BYTES = 1 << 20


def _hrefs(root: etree._Element) -> list[str]:
    # Each .text makes a new string from lxml's tree: one per href, not three.
    texts = (h.text for h in root.iterchildren(_HREF))
    hrefs = [t for t in (t.strip() for t in texts if t) if t]
    if not hrefs:
        raise DavError(400, "a multiget needs at least one DAV:href")
    return hrefs


def _paths(hrefs: list[str]) -> list[str]:
    """``_path`` of each href. Usually every one is a plain path (the form ``_path``
    returns as it is), which one look at them all joined finds: "\0" cannot occur in
    XML text, so each "\0/" starts one href."""
    joined = "\0".join(hrefs)
    if _plain(joined) and joined.count("\0/") == len(hrefs) - 1 and "\0//" not in joined:
        return hrefs
    return [_path(h) for h in hrefs]


def multiget(root: etree._Element, backend: DavBackend, names: list[str],
             data: ObjectData | None) -> DavResponse:
    hrefs = _hrefs(root)
    paths = _paths(hrefs)
    return _multiget(hrefs, paths, backend.get_many(paths), backend, names, data)


def multiget_quick(root: etree._Element, backend: DavBackend, names: list[str],
                   data: ObjectData | None) -> DavResponse | None:
    """``multiget`` of at most QUICK_HREFS hrefs and QUICK_BYTES of objects, else None."""
    hrefs = _hrefs(root)
    if len(hrefs) > QUICK_HREFS:
        return None
    paths = _paths(hrefs)
    found = backend.get_many(paths)
    if sum(n.size for n in found.values()) > QUICK_BYTES:
        return None
    return _multiget(hrefs, paths, found, backend, names, data)


def _multiget(hrefs: list[str], paths: list[str], found: dict[str, Node], backend: DavBackend,
              names: list[str], data: ObjectData | None) -> DavResponse:
    # ``found``: backend.get_many leaves out what this user may not see.
    members = [n for n in found.values() if not n.is_collection]
    texts = dict(zip([m.href for m in members], responses(members, backend, names, data),
                     strict=True))
    out = []
    for h, p in zip(hrefs, paths, strict=True):
        member = found.get(p)
        out.append(not_found(h) if member is None or member.is_collection else texts[member.href])
    return multistatus_response(out)
