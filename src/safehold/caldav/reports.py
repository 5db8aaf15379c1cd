"""calendar-query, calendar-multiget (RFC 4791 §7.8, §7.9) and free-busy-query
(§7.10). Time-range lookups go through the index first; only candidates are parsed."""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from datetime import datetime

from lxml import etree

from safehold.caldav import CALDAV, c, filters
from safehold.core.formats import ical, ical_spans
from safehold.core.formats.ical_instances import TooManyInstances
from safehold.core.formats.ical_zone import ZONE_MARGIN, ReportZone, report_zone
from safehold.core.formats.textmatch import UnsupportedCollation
from safehold.dav import reportutil
from safehold.dav.backend import DavBackend, IndexEntry, Node
from safehold.dav.errors import DavError
from safehold.dav.methods import report
from safehold.dav.paths import parent
from safehold.dav.types import DavRequest, DavResponse
from safehold.dav.xml import dav, parse_fragment


class DataRequest:
    """What a CALDAV:calendar-data element in the request asks for (RFC 4791 §9.6)."""

    def __init__(self, el: etree._Element | None) -> None:
        self.expand: tuple[datetime, datetime] | None = None
        self.limit: tuple[datetime, datetime] | None = None
        # Which floating and all-day instances fall in the range (RFC 4791 §7.3).
        self.zone: ReportZone | None = None
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
        if self.zone is not None and (self.expand is not None or self.limit is not None):
            key += " in " + self.zone.key
        return reportutil.ObjectData(self.render, key)

    def render(self, data: bytes) -> str:
        tz = self.zone.tz if self.zone is not None else None
        try:
            if self.expand is not None:
                data = ical.expand(data, *self.expand, floating_tz=tz)
            elif self.limit is not None:
                data = ical.limit_recurrence_set(data, *self.limit, floating_tz=tz)
        except ical.InvalidCalendarData:
            pass  # an object that no longer parses is sent as stored, never left out
        return reportutil.data_element(c("calendar-data"), "C", CALDAV, data)


class _MatchCache:
    """Results of ``ical.matches`` by (ETag, filter, zone). An ETag names one version's
    bytes (its seq and content hash), which never change (promise 3), and filters are
    frozen values, so a result stays true; clients repeat the same time-range query (the
    month on screen) at every sync. The zone (its key, "" for none) decides floating and
    all-day times. Bounded, least recently used goes first."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, ical.CompFilter, str], bool] = OrderedDict()
        self._lock = threading.Lock()

    def known(self, etag: str, flt: ical.CompFilter, zone: str = "") -> bool | None:
        """The cached result, or None: the body must be read and parsed."""
        key = (etag, flt, zone)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def matches(self, etag: str, body: bytes, flt: ical.CompFilter,
                zone: ReportZone | None = None) -> bool:
        zone_key = zone.key if zone is not None else ""
        hit = self.known(etag, flt, zone_key)
        if hit is not None:
            return hit
        result = ical.matches(body, flt, zone.tz if zone is not None else None)
        key = (etag, flt, zone_key)
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
    if data_el is None:
        return reportutil.multiget(root, backend, names, None)
    request = DataRequest(data_el)
    if request.expand is not None or request.limit is not None:
        # §9.6.5/§9.6.6 read floating times as calendar-query does without CALDAV:timezone
        # (multiget has none): in the calendar's zone, that of the request-URI.
        calendar = node if node.is_collection else backend.get(parent(node.href))
        stored = calendar.dead_props.get(c("calendar-timezone")) if calendar is not None else None
        request.zone = None if stored is None else _stored_zone(stored)
    return reportutil.multiget(root, backend, names, request.object_data())


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
    flt = filters.parse_filter(root.find(c("filter")))
    zone = _query_zone(root, backend, node, flt, request)
    if request is not None:
        request.zone = zone
    data = request.object_data() if request is not None else None
    depth = (req.header("depth") or "0").strip()
    nodes: dict[str, Node] = {}
    if node.is_collection:
        if depth == "0":
            return reportutil.multistatus_response([])
        component, start, end = filters.index_hint(flt)
        if zone is not None:
            start, end = _widened(start, end)
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
    # In a zone, floating times may lie outside an envelope by up to the margin: the
    # envelope alone decides only what lies that far inside the range. Indexed instances
    # (spans) are never floating, so they decide as they are.
    margin = ZONE_MARGIN.total_seconds()
    sure_lo, sure_hi = (lo, hi) if zone is None else (lo + margin, hi - margin)
    zone_key = zone.key if zone is not None else ""
    known = _matches.known
    # Per member: True/False when the index envelope or an earlier answer for the same
    # (ETag, filter) decides, None when its bytes must be parsed. Entries unpacked, not
    # read by attribute: this runs per candidate.
    verdicts: list[bool | None] = []
    for _, etag, first, last, recurring, spans in entries:
        if decides is None:
            verdicts.append(known(etag, flt, zone_key))
        elif not recurring and first is not None and last is not None \
                and sure_lo < first and last < sure_hi:
            verdicts.append(True)
        elif spans is not None:
            verdicts.append(ical_spans.overlap(spans, lo, hi))
        else:
            verdicts.append(known(etag, flt, zone_key))
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
                verdict = _matches.matches(entry.etag, body, flt, zone)
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


def _query_zone(root: etree._Element, backend: DavBackend, node: Node, flt: ical.CompFilter,
                request: DataRequest | None) -> ReportZone | None:
    """The zone floating and all-day times are read in (RFC 4791 §7.3): the request's
    CALDAV:timezone (§9.8), else the calendar's CALDAV:calendar-timezone; None: UTC."""
    el = root.find(c("timezone"))
    if el is not None:
        try:
            return report_zone(el.text or "")
        except ical.InvalidCalendarData as exc:
            # RFC 4791 §7.8's precondition for the time zone of a calendar-query.
            raise DavError(403, "CALDAV:timezone must hold an iCalendar object with exactly one "
                           f"VTIMEZONE (RFC 4791 §9.8): {exc}", condition="valid-calendar-data",
                           namespace=CALDAV) from exc
    calendar: Node | None = node
    if not node.is_collection:
        timed = _has_time_range(flt) or (request is not None and (
            request.expand is not None or request.limit is not None))
        # One object's calendar is looked up only when a time is compared.
        calendar = backend.get(parent(node.href)) if timed else None
    stored = calendar.dead_props.get(c("calendar-timezone")) if calendar is not None else None
    return None if stored is None else _stored_zone(stored)


@functools.lru_cache(maxsize=256)
def _stored_zone(stored: str) -> ReportZone | None:
    """A calendar's CALDAV:calendar-timezone (its stored element); one that cannot be
    read counts as none, as before: PROPPATCH and MKCALENDAR refuse such a value now,
    but one stored before they did may remain."""
    try:
        return report_zone(parse_fragment(stored).text or "")
    except (ical.InvalidCalendarData, etree.XMLSyntaxError):
        return None


def _has_time_range(flt: ical.CompFilter) -> bool:
    return flt.time_range is not None or any(p.time_range is not None for p in flt.prop_filters) \
        or any(_has_time_range(child) for child in flt.comp_filters)


def _widened(start: float | None, end: float | None) -> tuple[float | None, float | None]:
    """An index lookup's [start, end) widened by ZONE_MARGIN on each side; None: open."""
    margin = ZONE_MARGIN.total_seconds()
    return (None if start is None else start - margin, None if end is None else end + margin)


def freebusy(req: DavRequest, backend: DavBackend, node: Node, root: etree._Element) -> DavResponse:
    tr_el = root.find(c("time-range"))
    if tr_el is None:
        raise DavError(400, "free-busy-query needs a CALDAV:time-range")
    tr = filters.time_range(tr_el)
    if tr.start is None or tr.end is None:
        raise DavError(400, "free-busy-query needs start and end")
    if node.kind != "calendar":
        raise DavError(403, "free-busy-query runs on a calendar collection")
    # §7.3: floating and all-day times in the calendar's CALDAV:calendar-timezone.
    stored = node.dead_props.get(c("calendar-timezone"))
    zone = None if stored is None else _stored_zone(stored)
    start, end = _widened(tr.start.timestamp(), tr.end.timestamp()) if zone is not None \
        else (tr.start.timestamp(), tr.end.timestamp())
    objects = [backend.read_bytes(m) for comp in ("VEVENT", "VFREEBUSY")
               for m in backend.query_candidates(node, comp, start, end)]
    try:
        body = ical.freebusy(objects, tr.start, tr.end, floating_tz=zone.tz if zone is not None else None)
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
