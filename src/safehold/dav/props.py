"""Live properties (RFC 4918 §15) and dead-property handling."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import formatdate

from lxml import etree

from safehold.dav import xml
from safehold.dav.backend import DavBackend, LockInfo, Node
from safehold.dav.paths import href
from safehold.dav.xml import dav

LivePropFn = Callable[[Node, DavBackend], "etree._Element | None"]


def _rfc1123(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(name: str, value: str) -> etree._Element:
    return xml.element(name, value)


def _resourcetype(node: Node, _b: DavBackend) -> etree._Element:
    el = xml.element(dav("resourcetype"))
    if node.is_collection:
        xml.sub(el, dav("collection"))
    return el


def _supportedlock(node: Node, _b: DavBackend) -> etree._Element | None:
    if node.virtual:
        return None
    el = xml.element(dav("supportedlock"))
    for scope in ("exclusive", "shared"):
        entry = xml.sub(el, dav("lockentry"))
        xml.sub(xml.sub(entry, dav("lockscope")), dav(scope))
        xml.sub(xml.sub(entry, dav("locktype")), dav("write"))
    return el


def activelock(lk: LockInfo) -> etree._Element:
    el = xml.element(dav("activelock"))
    xml.sub(xml.sub(el, dav("locktype")), dav("write"))
    xml.sub(xml.sub(el, dav("lockscope")), dav(lk.scope))
    xml.sub(el, dav("depth"), "infinity" if lk.depth == "infinity" else "0")
    if lk.owner_xml:
        el.append(xml.parse_fragment(lk.owner_xml))
    xml.sub(el, dav("timeout"), f"Second-{lk.timeout}")
    xml.sub(xml.sub(el, dav("locktoken")), dav("href"), lk.token)
    xml.sub(xml.sub(el, dav("lockroot")), dav("href"), href(lk.root))
    return el


def _lockdiscovery(node: Node, backend: DavBackend) -> etree._Element | None:
    if node.virtual:
        return None
    el = xml.element(dav("lockdiscovery"))
    for lk in backend.locks(node.href):
        el.append(activelock(lk))
    return el


LIVE: dict[str, LivePropFn] = {
    dav("resourcetype"): _resourcetype,
    dav("getetag"): lambda n, b: None if n.virtual else _text(dav("getetag"), n.etag),
    dav("getlastmodified"): lambda n, b: _text(dav("getlastmodified"), _rfc1123(n.modified_at)),
    dav("creationdate"): lambda n, b: _text(dav("creationdate"), _iso(n.created_at)),
    dav("getcontentlength"): lambda n, b: None if n.is_collection else _text(
        dav("getcontentlength"), str(n.size)),
    dav("getcontenttype"): lambda n, b: None if n.is_collection else _text(
        dav("getcontenttype"), n.content_type or "application/octet-stream"),
    dav("supportedlock"): _supportedlock,
    dav("lockdiscovery"): _lockdiscovery,
}

# Live properties a client may not set or remove (RFC 4918 §15: all of the above
# are protected; displayname stays a dead property).
PROTECTED = set(LIVE)
# Live properties too costly or too specific to compute for allprop (RFC 4918 §9.1
# lets a server leave out properties defined elsewhere).
NOT_IN_ALLPROP: set[str] = set()


def register(name: str, fn: LivePropFn, protected: bool = True, allprop: bool = False) -> None:
    """Protocol extensions (CalDAV, CardDAV, sync) add their live properties here."""
    LIVE[name] = fn
    if protected:
        PROTECTED.add(name)
    if not allprop:
        NOT_IN_ALLPROP.add(name)


def value(name: str, node: Node, backend: DavBackend) -> etree._Element | None:
    fn = LIVE.get(name)
    if fn is not None:
        return fn(node, backend)
    stored = node.dead_props.get(name)
    return xml.parse_fragment(stored) if stored is not None else None


def all_names(node: Node, backend: DavBackend) -> list[str]:
    names = [n for n, fn in LIVE.items() if fn(node, backend) is not None]
    return names + [n for n in node.dead_props if n not in LIVE]
