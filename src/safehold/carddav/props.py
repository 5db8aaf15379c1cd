"""CardDAV live properties (RFC 6352 §6.2, §7.1)."""

from __future__ import annotations

from lxml import etree

from safehold.carddav import CARDDAV, cr
from safehold.dav import props, xml
from safehold.dav.backend import DavBackend, Node
from safehold.dav.paths import href
from safehold.dav.xml import dav

MAX_RESOURCE_SIZE = 10 * 1024 * 1024


def _home_set(node: Node, backend: DavBackend) -> etree._Element | None:
    if node.kind != "principal":
        return None
    el = xml.element(cr("addressbook-home-set"), nsmap={"CR": CARDDAV})
    xml.sub(el, dav("href"), href(backend.home_hrefs()["addressbook"]))
    return el


def _address_data(node: Node, _b: DavBackend) -> etree._Element | None:
    if node.kind != "addressbook":
        return None
    el = xml.element(cr("supported-address-data"), nsmap={"CR": CARDDAV})
    for version in ("3.0", "4.0"):
        ad = xml.sub(el, cr("address-data-type"))
        ad.set("content-type", "text/vcard")
        ad.set("version", version)
    return el


def install() -> None:
    props.RESOURCETYPES["addressbook"] = [cr("addressbook")]
    props.SUPPORTED_REPORTS["addressbook"] = [cr("addressbook-query"), cr("addressbook-multiget"),
                                              dav("sync-collection")]
    props.CLOSED_REPORT_SETS.add("addressbook")
    props.register(cr("addressbook-home-set"), _home_set)
    props.register(cr("supported-address-data"), _address_data)
    props.register(cr("max-resource-size"), lambda n, b: xml.element(
        cr("max-resource-size"), str(MAX_RESOURCE_SIZE)) if n.kind == "addressbook" else None)
