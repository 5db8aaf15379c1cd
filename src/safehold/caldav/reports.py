"""calendar-query, calendar-multiget (RFC 4791 §7.8, §7.9) and free-busy-query
(§7.10). Time-range lookups go through the index first; only candidates are parsed."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime

from lxml import etree

from safehold.caldav import CALDAV, c, filters
from safehold.core.formats import ical, ical_spans
from safehold.core.formats.ical_instances import TooManyInstances
from safehold.core.formats.textmatch import UnsupportedCollation
from safehold.dav import reportutil
from safehold.dav.backend import DavBackend, IndexEntry, Node
from safehold.dav.errors import DavError
from safehold.dav.methods import report
from safehold.dav.types import DavRequest, DavResponse
from safehold.dav.xml import dav


class DataRequest:
    """What a CALDAV:calendar-data element in the request asks for (RFC 4791 §9.6)."""

    def __init__(self, el: etree._Element | None) -> None:
        self.expand: tuple[datetime, datetime] | None = None
        self.limit: tuple[datetime, datetime] | None = None
        if el is None:
            return
        for child in el:
            if child.tag in (c("expand"), c("limit-recurrence-set")):
                start = filters.parse_time(child.get("start"))
                end = filters.parse_time(child.get("end"))
                if start is None or end is None:
                    raise DavError(400, f"{etree.QName(child).localname} needs start and end")
                if child.tag == c("expand"):
                    self.expand = (start, end)
                else:
                    self.limit = (start, end)

    def object_data(self) -> reportutil.ObjectData:
        key = "calendar-data"
        if self.expand is not None:
            key += " expand " + " ".join(t.isoformat() for t in self.expand)
        elif self.limit is not None:
            key += " limit " + " ".join(t.isoformat() for t in self.limit)
        return reportutil.ObjectData(self.render, key)

    def render(self, data: bytes) -> str:
        try:
            if self.expand is not None:
                data = ical.expand(data, *self.expand)
            elif self.limit is not None:
                data = ical.limit_recurrence_set(data, *self.limit)
        except ical.InvalidCalendarData:
            pass  # an object that no longer parses is sent as stored, never left out
        return reportutil.data_element(c("calendar-data"), "C", CALDAV, data)


class _MatchCache:
    """Results of ``ical.matches`` by (ETag, filter). An ETag names one version's bytes
    (its seq and content hash), which never change (promise 3), and filters are frozen
    values, so a result stays true; clients repeat the same time-range query (the
    month on screen) at every sync. Bounded, least recently used goes first."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, ical.CompFilter], bool] = OrderedDict()
        self._lock = threading.Lock()

    def known(self, etag: str, flt: ical.CompFilter) -> bool | None:
        """The cached result, or None: the body must be read and parsed."""
        key = (etag, flt)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def matches(self, etag: str, body: bytes, flt: ical.CompFilter) -> bool:
        hit = self.known(etag, flt)
        if hit is not None:
            return hit
        result = ical.matches(body, flt)
        key = (etag, flt)
        with self._lock:
            self._items[key] = result
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        return result


_matches = _MatchCache()

# A calendar-query is bounded work (report.quick) when its index lookup reads at most
# QUICK_ROWS entries, with at most QUICK_ENTRIES candidates of which at most QUICK_PARSES
# need their bytes parsed, and no expansion of the results.
QUICK_ROWS = 2000
QUICK_ENTRIES = 500
QUICK_PARSES = 32


def multiget(req: DavRequest, backend: DavBackend, node: Node, root: etree._Element) -> DavResponse:
    names, data_el = reportutil.split_props(root.find(dav("prop")), c("calendar-data"))
    data = DataRequest(data_el).object_data() if data_el is not None else None
    return reportutil.multiget(root, backend, names, data)


def multiget_quick(req: DavRequest, backend: DavBackend, node: Node,
                   root: etree._Element) -> DavResponse | None:
    names, data_el = reportutil.split_props(root.find(dav("prop")), c("calendar-data"))
    request = DataRequest(data_el)
    if request.expand is not None or request.limit is not None:
        return None  # every object would be parsed
    return reportutil.multiget_quick(root, backend, names,
                                     request.object_data() if data_el is not None else None)


def query(req: DavRequest, backend: DavBackend, node: Node, root: etree._Element) -> DavResponse:
    resp = _query(req, backend, node, root, quick=False)
    assert resp is not None
    return resp


def query_quick(req: DavRequest, backend: DavBackend, node: Node,
                root: etree._Element) -> DavResponse | None:
    return _query(req, backend, node, root, quick=True)


def _query(req: DavRequest, backend: DavBackend, node: Node, root: etree._Element,
           quick: bool) -> DavResponse | None:
    """calendar-query; with ``quick``, None as soon as the work is found unbounded."""
    names, data_el = reportutil.split_props(root.find(dav("prop")), c("calendar-data"))
    request = DataRequest(data_el) if data_el is not None else None
    if quick and request is not None and (request.expand is not None or request.limit is not None):
        return None
    data = request.object_data() if request is not None else None
    flt = filters.parse_filter(root.find(c("filter")))
    depth = (req.header("depth") or "0").strip()
    nodes: dict[str, Node] = {}
    if node.is_collection:
        if depth == "0":
            return reportutil.multistatus_response([])
        component, start, end = filters.index_hint(flt)
        # The entries the lookup reads, not the whole calendar: a month early in a
        # year-long calendar reads a quarter of it.
        if quick and not backend.index_within(node, QUICK_ROWS, component, end):
            return None
        entries = backend.query_index(node, component, start, end,
                                      QUICK_ENTRIES + 1 if quick else None)
        if quick and len(entries) > QUICK_ENTRIES:
            return None
    else:
        entries = [IndexEntry(node.href, node.etag, None, None, False)]
        nodes[node.href] = node
    # Only index entries (a collection's members) have an envelope to decide by.
    decides = filters.index_decides(flt) if node.is_collection else None
    lo, hi = decides if decides is not None else (0.0, 0.0)
    known = _matches.known
    # Per member: True/False when the index envelope or an earlier answer for the same
    # (ETag, filter) decides, None when its bytes must be parsed. Entries unpacked, not
    # read by attribute: this runs per candidate.
    verdicts: list[bool | None] = []
    for _, etag, first, last, recurring, spans in entries:
        if decides is None:
            verdicts.append(known(etag, flt))
        elif not recurring and first is not None and last is not None \
                and lo < first and last < hi:
            verdicts.append(True)
        elif spans is not None:
            verdicts.append(ical_spans.overlap(spans, lo, hi))
        else:
            verdicts.append(known(etag, flt))
    unknown = [e.href for e, v in zip(entries, verdicts, strict=True) if v is None]
    if quick and len(unknown) > QUICK_PARSES:
        return None
    bodies: dict[str, bytes] = {}
    if unknown:
        wanted = [h for h in unknown if h not in nodes]
        if wanted:
            nodes.update(backend.get_many(wanted))
        bodies = backend.read_many([nodes[h] for h in unknown if h in nodes])
    hits: list[tuple[str, str]] = []
    for entry, verdict in zip(entries, verdicts, strict=True):
        if verdict is None:
            body = bodies.get(entry.href)
            if body is None:
                continue  # gone (never within one snapshot)
            try:
                verdict = _matches.matches(entry.etag, body, flt)
            except ical.InvalidCalendarData:
                # Leaving it out would make clients such as DAVx5 delete their copy.
                verdict = True
            except UnsupportedCollation as exc:
                raise DavError(403, f"unsupported collation {exc}", condition="supported-collation",
                               namespace=CALDAV) from exc
        if verdict:
            hits.append((entry.href, entry.etag))
    return reportutil.multistatus_response(
        reportutil.member_responses(hits, backend, names, data, nodes, bodies))


def freebusy(req: DavRequest, backend: DavBackend, node: Node, root: etree._Element) -> DavResponse:
    tr_el = root.find(c("time-range"))
    if tr_el is None:
        raise DavError(400, "free-busy-query needs a CALDAV:time-range")
    tr = filters.time_range(tr_el)
    if tr.start is None or tr.end is None:
        raise DavError(400, "free-busy-query needs start and end")
    if node.kind != "calendar":
        raise DavError(403, "free-busy-query runs on a calendar collection")
    objects = [backend.read_bytes(m) for comp in ("VEVENT", "VFREEBUSY")
               for m in backend.query_candidates(node, comp, tr.start.timestamp(), tr.end.timestamp())]
    try:
        body = ical.freebusy(objects, tr.start, tr.end)
    except TooManyInstances as exc:
        # The postcondition §7.10 names for a range that needs too much work. 403, as Apple's
        # CalendarServer answers it: the answer is one iCalendar object, no multistatus that
        # could end in a 507 response. Leaving busy time out would show it as free.
        raise DavError(403, str(exc), condition="number-of-matches-within-limits") from exc
    return DavResponse(200, [("Content-Type", "text/calendar; charset=utf-8")], body)


def install() -> None:
    report.register(c("calendar-multiget"), multiget, multiget_quick)
    report.register(c("calendar-query"), query, query_quick)
    report.register(c("free-busy-query"), freebusy)
