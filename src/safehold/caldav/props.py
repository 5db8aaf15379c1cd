"""CalDAV live properties (RFC 4791 §5.2, §6.2) and CalendarServer's getctag."""

from __future__ import annotations

import functools

from lxml import etree

from safehold.caldav import CALDAV, CS, c
from safehold.dav import props, xml
from safehold.dav.backend import DavBackend, Node
from safehold.dav.paths import href
from safehold.dav.xml import dav

COMPONENTS = ("VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY")
MAX_RESOURCE_SIZE = 10 * 1024 * 1024


def supported_components(node: Node) -> tuple[str, ...]:
    stored = node.dead_props.get(c("supported-calendar-component-set"))
    if stored is None:
        return COMPONENTS
    return _component_names(stored)


# Every PUT into a calendar asks for its set; the answer depends on the stored text alone,
# so it is kept by that text and cannot go stale.
@functools.lru_cache(maxsize=256)
def _component_names(stored: str) -> tuple[str, ...]:
    el = xml.parse_fragment(stored)
    names = tuple(str(comp.get("name", "")).upper() for comp in el if comp.tag == c("comp"))
    return names or COMPONENTS


def _component_set(node: Node, _b: DavBackend) -> etree._Element | None:
    if node.kind != "calendar":
        return None
    el = xml.element(c("supported-calendar-component-set"), nsmap={"C": CALDAV})
    for name in supported_components(node):
        xml.sub(el, c("comp")).set("name", name)
    return el


def _calendar_data(node: Node, _b: DavBackend) -> etree._Element | None:
    if node.kind != "calendar":
        return None
    el = xml.element(c("supported-calendar-data"), nsmap={"C": CALDAV})
    cd = xml.sub(el, c("calendar-data"))
    cd.set("content-type", "text/calendar")
    cd.set("version", "2.0")
    return el


def _home_set(node: Node, backend: DavBackend) -> etree._Element | None:
    if node.kind != "principal":
        return None
    el = xml.element(c("calendar-home-set"), nsmap={"C": CALDAV})
    xml.sub(el, dav("href"), href(backend.home_hrefs()["calendar"]))
    return el


def _user_address_set(node: Node, backend: DavBackend) -> etree._Element | None:
    if node.kind != "principal":
        return None
    el = xml.element(c("calendar-user-address-set"), nsmap={"C": CALDAV})
    xml.sub(el, dav("href"), href(node.href))
    return el


def _getctag(node: Node, backend: DavBackend) -> etree._Element | None:
    if node.kind not in ("calendar", "addressbook", "collection") or node.virtual:
        return None
    return xml.element(f"{{{CS}}}getctag", backend.sync_token(node), nsmap={"CS": CS})


def install() -> None:
    props.RESOURCETYPES["calendar"] = [c("calendar")]
    props.SUPPORTED_REPORTS["calendar"] = [c("calendar-query"), c("calendar-multiget"),
                                           c("free-busy-query"), dav("sync-collection")]
    props.CLOSED_REPORT_SETS.add("calendar")
    props.SUPPORTED_REPORTS.setdefault("collection", []).append(dav("sync-collection"))
    props.register(c("supported-calendar-component-set"), _component_set)
    props.register(c("supported-calendar-data"), _calendar_data)
    props.register(c("max-resource-size"), lambda n, b: xml.element(
        c("max-resource-size"), str(MAX_RESOURCE_SIZE)) if n.kind == "calendar" else None)
    props.register(c("calendar-home-set"), _home_set)
    props.register(c("calendar-user-address-set"), _user_address_set)
    props.register(f"{{{CS}}}getctag", _getctag)
