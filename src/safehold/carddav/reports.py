"""addressbook-query and addressbook-multiget (RFC 6352 §8.6, §8.7)."""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from safehold.carddav import CARDDAV, cr
from safehold.core.formats import vcard
from safehold.core.formats.textmatch import COLLATIONS, TextMatch, UnsupportedCollation
from safehold.dav import multistatus, reportutil
from safehold.dav.backend import DavBackend, Node
from safehold.dav.errors import DavError
from safehold.dav.methods import report
from safehold.dav.types import DavRequest, DavResponse
from safehold.dav.xml import dav


def _renderer(el: etree._Element | None) -> reportutil.ObjectData | None:
    if el is None:
        return None
    names: Sequence[str] = [str(p.get("name", "")) for p in el if p.tag == cr("prop")]

    def render(data: bytes) -> str:
        if names:
            data = vcard.select_properties(data, names)
        return reportutil.data_element(cr("address-data"), "CR", CARDDAV, data)
    # The selected names, in order, are all the rendering depends on besides the bytes.
    return reportutil.ObjectData(render, "address-data " + "\0".join(names))


def _text_match(el: etree._Element) -> TextMatch:
    collation = el.get("collation", "i;unicode-casemap")
    if collation not in COLLATIONS:
        raise DavError(403, f"unsupported collation {collation!r}",
                       condition="supported-collation", namespace=CARDDAV)
    match_type = el.get("match-type", "contains")
    if match_type not in ("equals", "contains", "starts-with", "ends-with"):
        raise DavError(400, f"unsupported match-type {match_type!r}")
    return TextMatch(value=el.text or "", collation=collation,
                     negate=el.get("negate-condition", "no") == "yes", match_type=match_type)


def _test(el: etree._Element) -> str:
    value = el.get("test", "anyof")
    if value not in ("anyof", "allof"):
        raise DavError(400, f"test must be anyof or allof, not {value!r}")
    return value


def _filter(el: etree._Element | None) -> vcard.AddressbookFilter:
    if el is None:
        return vcard.AddressbookFilter()
    props = []
    for pf in el.findall(cr("prop-filter")):
        name = pf.get("name")
        if not name:
            raise DavError(403, "prop-filter needs a name", condition="valid-filter",
                           namespace=CARDDAV)
        params = tuple(vcard.ParamFilter(
            name=str(p.get("name", "")),
            is_not_defined=p.find(cr("is-not-defined")) is not None,
            text_match=_text_match(p.find(cr("text-match")))  # type: ignore[arg-type]
            if p.find(cr("text-match")) is not None else None)
            for p in pf.findall(cr("param-filter")))
        props.append(vcard.PropFilter(
            name=name, test=_test(pf),
            is_not_defined=pf.find(cr("is-not-defined")) is not None,
            text_matches=tuple(_text_match(t) for t in pf.findall(cr("text-match"))),
            param_filters=params))
    return vcard.AddressbookFilter(test=_test(el), prop_filters=tuple(props))


def multiget(req: DavRequest, backend: DavBackend, node: Node, root: etree._Element) -> DavResponse:
    names, data_el = reportutil.split_props(root.find(dav("prop")), cr("address-data"))
    return reportutil.multiget(root, backend, names, _renderer(data_el))


def multiget_quick(req: DavRequest, backend: DavBackend, node: Node,
                   root: etree._Element) -> DavResponse | None:
    names, data_el = reportutil.split_props(root.find(dav("prop")), cr("address-data"))
    return reportutil.multiget_quick(root, backend, names, _renderer(data_el))


def query(req: DavRequest, backend: DavBackend, node: Node, root: etree._Element) -> DavResponse:
    names, data_el = reportutil.split_props(root.find(dav("prop")), cr("address-data"))
    data = _renderer(data_el)
    flt = _filter(root.find(cr("filter")))
    limit = None
    nresults = root.findtext(f"{cr('limit')}/{cr('nresults')}")
    if nresults is not None:
        try:
            limit = max(1, int(nresults.strip()))
        except ValueError as exc:
            raise DavError(400, "CARDDAV:nresults must be a number") from exc
    depth = (req.header("depth") or "0").strip()
    if node.is_collection:
        members = [] if depth == "0" else backend.query_candidates(node, "VCARD", None, None)
    else:
        members = [node]
    hits: list[Node] = []
    truncated = False
    bodies = backend.read_many(members)
    for member in members:
        try:
            hit = vcard.matches(bodies[member.href], flt)
        except UnsupportedCollation as exc:
            raise DavError(403, f"unsupported collation {exc}", condition="supported-collation",
                           namespace=CARDDAV) from exc
        if hit:
            if limit is not None and len(hits) >= limit:
                truncated = True
                break
            hits.append(member)
    out = reportutil.responses(hits, backend, names, data, bodies)
    if truncated:
        # RFC 6352 §8.6.1: say that the result was cut short.
        out.append(multistatus.status_response(
            node.href, 507, multistatus.empty(dav("number-of-matches-within-limits"))))
    return reportutil.multistatus_response(out)


def install() -> None:
    report.register(cr("addressbook-multiget"), multiget, multiget_quick)
    report.register(cr("addressbook-query"), query)
