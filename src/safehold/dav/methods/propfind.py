"""PROPFIND (RFC 4918 §9.1). Depth infinity is refused with propfind-finite-depth."""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import repeat
from typing import cast

from safehold.dav import fragments, listing, multistatus, props, xml
from safehold.dav.backend import DavBackend, Members, Node
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


def response_for(node: Node, backend: DavBackend, mode: str, names: list[str],
                 extra: str = "") -> str:
    """One serialized DAV:response; ``extra`` (an object-data element of a REPORT) is
    added to the found properties."""
    found: list[str] = []
    missing: list[str] = []
    if mode == "propname":
        found = [multistatus.empty(name) for name in props.all_names(node, backend)]
    elif mode == "allprop":
        for name in list(props.LIVE) + [n for n in node.dead_props if n not in props.LIVE]:
            if name in props.LIVE and name in props.NOT_IN_ALLPROP:
                continue
            value = props.render(name, node, backend)
            if value is not None:
                found.append(value)
    else:
        for name in names:
            value = props.render(name, node, backend)
            if value is None:
                missing.append(multistatus.empty(name))
            else:
                found.append(value)
    if extra:
        found.append(extra)
    return multistatus.response(href(node.href), found, missing)


def cacheable(mode: str, names: list[str]) -> tuple[str, ...] | None:
    """The names as a cache key (see dav/fragments.py) when every one of them is
    computed from the member's own version alone, else None. Locks, sync tokens and
    privileges depend on more than that and are never cached."""
    if mode != "prop":
        return None
    for name in names:
        if name not in props.FAST and (name in props.LIVE or name in props.DERIVED):
            return None
    return tuple(names)


def responses_for(nodes: list[Node], backend: DavBackend, mode: str, names: list[str]) -> list[str]:
    """``response_for`` of many members (a listing), through the fragment cache."""
    key_names = cacheable(mode, names)
    if key_names is None:
        return [response_for(n, backend, mode, names) for n in nodes]
    cache = fragments.members
    out = []
    for node in nodes:
        key = (node.href, node.etag, key_names)
        text = cache.get(key)
        if text is None:
            text = response_for(node, backend, mode, names)
            if not node.virtual:
                cache.put(key, text)
        out.append(text)
    return out


# Hrefs that percent-encoding and XML escaping both leave as they are (most of them).
_PLAIN_HREF = re.compile(r"[A-Za-z0-9/._~!$'()*+,;=:@-]*").fullmatch


def page_responses(page: Sequence[Node], backend: DavBackend, mode: str,
                   names: list[str]) -> list[str]:
    """``response_for`` of a page of a streamed listing (dav/listing.py caches whole
    pages, so members are not cached one by one). What clients list with, when no text
    needs escaping and every member has every property (props.page_texts), is joined
    from the page's fields (``_joined``); else properties that all have a text function
    (props.FAST) are rendered a column at a time (props.column): the same text in a
    third of the time of a member at a time. This is what a listing costs the first
    time."""
    if mode == "prop" and page:
        # The page by Node field: a Members page holds it so, else it is made in C.
        fields = page.fields if isinstance(page, Members) else list(zip(*page, strict=True))
        if _PLAIN_HREF("".join(fields[0])):
            texts = [props.page_texts(name, page, fields, backend) for name in names]
            if None not in texts:
                return _joined(fields[0], cast("list[props.PageTexts]", texts))
    nodes = page.nodes if isinstance(page, Members) else list(page)
    cols = [props.column(name) for name in names] if mode == "prop" else []
    if mode != "prop" or any(col is None for col in cols):
        return [response_for(n, backend, mode, names) for n in nodes]
    values = [col(nodes, backend) for col in cols if col is not None]
    hrefs = [n.href for n in nodes]
    if not _PLAIN_HREF("".join(hrefs)):  # one check for the page; most have no such href
        hrefs = [h if _PLAIN_HREF(h) else multistatus.escape(href(h)) for h in hrefs]
    head, found_open, found_close = (multistatus.RESPONSE_OPEN, multistatus.FOUND_OPEN,
                                     multistatus.FOUND_CLOSE)
    if not any(None in v for v in values):
        # Each response is one join of its pieces, and the loop over the members runs
        # in C (map, zip): a third of the time of concatenating them in a listcomp.
        full = cast("list[list[str]]", values)
        return list(map("".join, zip(repeat(head), hrefs, repeat(found_open), *full,
                                     repeat(found_close))))
    # Some member lacks a property: that one gets a 404 propstat too.
    empties = [multistatus.empty(name) for name in names]
    out = []
    for i, h in enumerate(hrefs):
        row = [v[i] for v in values]
        out.append(multistatus.escaped_response(
            h, [t for t in row if t is not None],
            [e for t, e in zip(row, empties, strict=True) if t is None]))
    return out


def _joined(hrefs: Sequence[str], texts: list[props.PageTexts]) -> list[str]:
    """The responses of a page whose hrefs and texts need no escaping and whose members
    all have every property: each one join of its href and texts between constant
    pieces (the tags, and properties that are the same for every member), the loop over
    the members in C (map, zip). A cold listing's rendering was a string per member and
    property before this (props.column)."""
    parts: list[str | Sequence[str]] = [multistatus.RESPONSE_OPEN, hrefs]
    const = multistatus.FOUND_OPEN
    for start, values, end in texts:
        if values is None:
            const += start
        else:
            parts += [const + start, values]
            const = end
    parts.append(const + multistatus.FOUND_CLOSE)
    return list(map("".join, zip(*[repeat(p) if isinstance(p, str) else p for p in parts],
                                 strict=False)))


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    d = depth(req)
    mode, names = parse_request(req.body_bytes())
    node = backend.get(req.path)
    if node is None:
        raise DavError(404, "not found")
    out = [response_for(node, backend, mode, names)]
    if d == 1 and node.is_collection and not node.virtual:
        # A page at a time, from one snapshot (dav/listing.py).
        key_names = cacheable(mode, names)
        return DavResponse(207, [multistatus.CONTENT_TYPE], listing.body(
            out[0], backend.listing(node), lambda page: page_responses(page, backend, mode, names),
            None if key_names is None else (node.href, key_names)))
    if d == 1 and node.is_collection:
        out += responses_for(backend.children(node), backend, mode, names)
    return DavResponse(207, [multistatus.CONTENT_TYPE], multistatus.document(out))
