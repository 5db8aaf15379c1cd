"""Live properties (RFC 4918 §15) and dead-property handling."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from lxml import etree

from safehold.dav import multistatus, xml
from safehold.dav.backend import DavBackend, LockInfo, Node
from safehold.dav.httpdate import http_date
from safehold.dav.paths import href
from safehold.dav.xml import dav

LivePropFn = Callable[[Node, DavBackend], "etree._Element | None"]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(name: str, value: str) -> etree._Element:
    return xml.element(name, value)


# Extra resource types per node kind, registered by protocol extensions.
RESOURCETYPES: dict[str, list[str]] = {"principal": [dav("principal")]}
# Reports each node kind supports (RFC 3253 §3.1.5 supported-report-set).
SUPPORTED_REPORTS: dict[str, list[str]] = {}
# Kinds whose list above is complete: any other report on them is refused (a CalDAV
# report on an address book, a CardDAV one on a calendar).
CLOSED_REPORT_SETS: set[str] = set()


def _resourcetype(node: Node, _b: DavBackend) -> etree._Element:
    el = xml.element(dav("resourcetype"))
    if node.is_collection:
        xml.sub(el, dav("collection"))
    for name in RESOURCETYPES.get(node.kind, []):
        xml.sub(el, name)
    return el


def _href_prop(name: str, target: str) -> etree._Element:
    el = xml.element(name)
    xml.sub(el, dav("href"), href(target))
    return el


def _privileges(node: Node, _b: DavBackend) -> etree._Element:
    # RFC 3744 §5.4: a user has every privilege on their own tree and read on the
    # namespace nodes above it (there is no sharing yet).
    el = xml.element(dav("current-user-privilege-set"))
    names = ["read", "read-current-user-privilege-set"]
    if not node.virtual:
        names += ["write", "write-properties", "write-content", "bind", "unbind", "unlock",
                  "read-acl"]
    for name in names:
        xml.sub(xml.sub(el, dav("privilege")), dav(name))
    return el


def _supported_reports(node: Node, _b: DavBackend) -> etree._Element | None:
    el = xml.element(dav("supported-report-set"))
    for name in SUPPORTED_REPORTS.get(node.kind, []):
        xml.sub(xml.sub(xml.sub(el, dav("supported-report")), dav("report")), name)
    return el


def _sync_token(node: Node, backend: DavBackend) -> etree._Element | None:
    if node.kind not in SYNCABLE:
        return None
    return xml.element(dav("sync-token"), backend.sync_token(node))


def _principal_url(node: Node, backend: DavBackend) -> etree._Element | None:
    return _href_prop(dav("principal-URL"), node.href) if node.kind == "principal" else None


def _displayname(node: Node, backend: DavBackend) -> etree._Element | None:
    stored = node.dead_props.get(dav("displayname"))
    if stored is not None:
        return xml.parse_fragment(stored)
    if node.kind == "principal":
        return xml.element(dav("displayname"), backend.principal_name())
    return None


SYNCABLE = {"collection", "calendar", "addressbook"}


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
    dav("getlastmodified"): lambda n, b: _text(dav("getlastmodified"), http_date(n.modified_at)),
    dav("creationdate"): lambda n, b: _text(dav("creationdate"), _iso(n.created_at)),
    dav("getcontentlength"): lambda n, b: None if n.is_collection else _text(
        dav("getcontentlength"), str(n.size)),
    dav("getcontenttype"): lambda n, b: None if n.is_collection else _text(
        dav("getcontenttype"), n.content_type or "application/octet-stream"),
    dav("supportedlock"): _supportedlock,
    dav("lockdiscovery"): _lockdiscovery,
    # RFC 5397, RFC 3744, RFC 6578: what clients use to find their way around.
    dav("current-user-principal"): lambda n, b: _href_prop(dav("current-user-principal"),
                                                           b.principal_href()),
    dav("principal-URL"): _principal_url,
    dav("owner"): lambda n, b: None if n.virtual else _href_prop(dav("owner"), b.principal_href()),
    dav("current-user-privilege-set"): _privileges,
    dav("supported-report-set"): _supported_reports,
    dav("sync-token"): _sync_token,
    dav("principal-collection-set"): lambda n, b: _href_prop(dav("principal-collection-set"),
                                                             "/dav/principals/"),
}
# displayname is a dead property everywhere except on principals, where it is
# derived from the user name unless one was set.
DERIVED: dict[str, LivePropFn] = {dav("displayname"): _displayname}

# Live properties a client may not set or remove (RFC 4918 §15: all of the above
# are protected; displayname stays a dead property).
PROTECTED = set(LIVE)
# Live properties too costly or too specific to compute for allprop (RFC 4918 §9.1
# lets a server leave out properties defined elsewhere).
NOT_IN_ALLPROP: set[str] = {dav("current-user-principal"), dav("principal-URL"), dav("owner"),
                            dav("current-user-privilege-set"), dav("supported-report-set"),
                            dav("sync-token"), dav("principal-collection-set")}


def register(name: str, fn: LivePropFn, protected: bool = True, allprop: bool = False) -> None:
    """Protocol extensions (CalDAV, CardDAV, sync) add their live properties here."""
    LIVE[name] = fn
    FAST.pop(name, None)  # the registered function is the definition from now on
    COLUMNS.pop(name, None)
    PAGE_TEXTS.pop(name, None)
    if protected:
        PROTECTED.add(name)
    if not allprop:
        NOT_IN_ALLPROP.add(name)


def value(name: str, node: Node, backend: DavBackend) -> etree._Element | None:
    fn = LIVE.get(name) or DERIVED.get(name)
    if fn is not None:
        return fn(node, backend)
    stored = node.dead_props.get(name)
    if stored is None:
        return None
    try:
        return xml.parse_fragment(stored)
    except etree.XMLSyntaxError:
        # Stored before a parser fix; report it as absent rather than fail the listing.
        return None


# -- serialized values, for multistatus bodies -------------------------------------
# The properties every listing asks for, written straight to text. Each gives the same
# answer as its LIVE function above (None: the node does not have it).
TextFn = Callable[[Node, DavBackend], "str | None"]


def _fast_text(name: str, value: Callable[[Node], str | None]) -> TextFn:
    # multistatus.text_element, with the tags made once.
    start, end, escape = multistatus.open_tag(name), multistatus.close_tag(name), multistatus.escape

    def fn(node: Node, _b: DavBackend) -> str | None:
        text = value(node)
        return None if text is None else start + escape(text) + end
    return fn


_kind_cache: dict[tuple[str, str, bool, bool], str | None] = {}


def _per_kind(name: str) -> TextFn:
    """Properties whose value depends only on the node's kind, whether it is a
    collection, and whether it is virtual: serialized once per combination."""
    def fn(node: Node, backend: DavBackend) -> str | None:
        key = (name, node.kind, node.is_collection, node.virtual)
        if key not in _kind_cache:
            el = LIVE[name](node, backend)
            _kind_cache[key] = None if el is None else multistatus.element(el)
        return _kind_cache[key]
    return fn


FAST: dict[str, TextFn] = {
    dav("getetag"): _fast_text(dav("getetag"), lambda n: None if n.virtual else n.etag),
    dav("getcontenttype"): _fast_text(dav("getcontenttype"), lambda n: None if n.is_collection
                                      else n.content_type or "application/octet-stream"),
    dav("getcontentlength"): _fast_text(dav("getcontentlength"),
                                        lambda n: None if n.is_collection else str(n.size)),
    dav("getlastmodified"): _fast_text(dav("getlastmodified"), lambda n: http_date(n.modified_at)),
    dav("creationdate"): _fast_text(dav("creationdate"), lambda n: _iso(n.created_at)),
    dav("resourcetype"): _per_kind(dav("resourcetype")),
    dav("supportedlock"): _per_kind(dav("supportedlock")),
}


# The same texts for a page of members at once (propfind.page_responses): a listcomp
# per property instead of two calls per member, and one escape check per page. Each is
# equal to its FAST function applied to every node (tests/unit/test_page_render.py).
ColumnFn = Callable[[list[Node], DavBackend], "list[str | None]"]


def _wrap(name: str, values: list[str | None]) -> list[str | None]:
    start, end = multistatus.open_tag(name), multistatus.close_tag(name)
    if None not in values and multistatus.plain("".join(values)):  # type: ignore[arg-type]
        return [start + v + end for v in values]  # type: ignore[operator]
    escape = multistatus.escape
    return [None if v is None else start + escape(v) + end for v in values]


def _etag_column(nodes: list[Node], _b: DavBackend) -> list[str | None]:
    return _wrap(dav("getetag"), [None if n.virtual else n.etag for n in nodes])


def _type_column(nodes: list[Node], _b: DavBackend) -> list[str | None]:
    return _wrap(dav("getcontenttype"), [
        None if n.is_collection else n.content_type or "application/octet-stream" for n in nodes])


def _length_column(nodes: list[Node], _b: DavBackend) -> list[str | None]:
    return _wrap(dav("getcontentlength"), [None if n.is_collection else str(n.size) for n in nodes])


_KIND_KEY = itemgetter(Node._fields.index("kind"), Node._fields.index("is_collection"),
                       Node._fields.index("virtual"))  # what _per_kind's text depends on


def _resourcetype_column(nodes: list[Node], backend: DavBackend) -> list[str | None]:
    fn = FAST[dav("resourcetype")]
    keys = list(map(_KIND_KEY, nodes))
    texts = {key: fn(nodes[keys.index(key)], backend) for key in set(keys)}
    if len(texts) == 1:  # the usual page: all items, or all collections
        return [texts[keys[0]]] * len(keys) if keys else []
    return [texts[k] for k in keys]


COLUMNS: dict[str, ColumnFn] = {
    dav("getetag"): _etag_column,
    dav("getcontenttype"): _type_column,
    dav("getcontentlength"): _length_column,
    dav("resourcetype"): _resourcetype_column,
}


# A page's texts as the pieces its responses are joined from (propfind.page_responses):
# no string per member and property, only the member's own text between constant tags.
# ``fields`` is the page transposed (zip(*nodes): one tuple per Node field).
PageTexts = tuple[str, "Sequence[str] | None", str]
_HREF, _IS_COLL, _ETAG, _SIZE, _CTYPE, _VIRTUAL, _KIND = (
    Node._fields.index(f) for f in ("href", "is_collection", "etag", "size", "content_type",
                                    "virtual", "kind"))
PageTextFn = Callable[[str, Sequence[Node], list[tuple[Any, ...]], DavBackend], "PageTexts | None"]


def _plain_texts(name: str, values: Sequence[str]) -> PageTexts | None:
    if not multistatus.plain("".join(values)):
        return None  # some text needs escaping: ``column`` does it
    return multistatus.open_tag(name), values, multistatus.close_tag(name)


def _same_per_kind(name: str, nodes: Sequence[Node], fields: list[tuple[Any, ...]],
                   backend: DavBackend) -> PageTexts | None:
    kinds, colls, virtual = fields[_KIND], fields[_IS_COLL], fields[_VIRTUAL]
    n = len(kinds)
    if kinds.count(kinds[0]) != n or colls.count(colls[0]) != n or virtual.count(virtual[0]) != n:
        return None
    # _per_kind's text depends on these three fields only, the same for every member; not
    # nodes[0], which would make a Members page's Nodes.
    first = Node(*[f[0] for f in fields])._replace(dead_props={})
    text = FAST[name](first, backend)
    return None if text is None else (text, None, "")


def _etag_texts(name: str, _n: Sequence[Node], fields: list[tuple[Any, ...]],
                _b: DavBackend) -> PageTexts | None:
    return None if True in fields[_VIRTUAL] else _plain_texts(name, fields[_ETAG])


def _type_texts(name: str, _n: Sequence[Node], fields: list[tuple[Any, ...]],
                _b: DavBackend) -> PageTexts | None:
    types = fields[_CTYPE]
    if True in fields[_IS_COLL] or None in types or "" in types:
        return None  # no such property, or application/octet-stream: ``column``
    return _plain_texts(name, types)


def _length_texts(name: str, _n: Sequence[Node], fields: list[tuple[Any, ...]],
                  _b: DavBackend) -> PageTexts | None:
    return None if True in fields[_IS_COLL] else _plain_texts(name, list(map(str, fields[_SIZE])))


PAGE_TEXTS: dict[str, PageTextFn] = {
    dav("getetag"): _etag_texts,
    dav("getcontenttype"): _type_texts,
    dav("getcontentlength"): _length_texts,
    dav("resourcetype"): _same_per_kind,
    dav("supportedlock"): _same_per_kind,
}


def page_texts(name: str, nodes: Sequence[Node], fields: list[tuple[Any, ...]],
               backend: DavBackend) -> PageTexts | None:
    """``name`` for a whole (non-empty) page: (open tag, the members' texts, close tag), or
    (the element, None, "") when it is the same for every member; None when some member
    lacks it or a text needs escaping (then ``column`` renders the page). Where not None,
    open tag + text + close tag is FAST[name] of each member (tests/unit/test_page_render.py)."""
    fn = PAGE_TEXTS.get(name)
    return None if fn is None else fn(name, nodes, fields, backend)


def column(name: str) -> ColumnFn | None:
    """The texts of ``name`` for a page of members (None each where a member does not
    have it); None when ``name`` has no FAST text function."""
    if name not in FAST:
        return None
    col = COLUMNS.get(name)
    if col is not None:
        return col
    fn = FAST[name]
    return lambda nodes, backend: [fn(n, backend) for n in nodes]


def render(name: str, node: Node, backend: DavBackend) -> str | None:
    """``value`` serialized (what a multistatus body carries), or None."""
    fast = FAST.get(name)
    if fast is not None:
        return fast(node, backend)
    el = value(name, node, backend)
    return None if el is None else multistatus.element(el)


def all_names(node: Node, backend: DavBackend) -> list[str]:
    names = [n for n, fn in LIVE.items() if fn(node, backend) is not None]
    return names + [n for n in node.dead_props if n not in LIVE]
