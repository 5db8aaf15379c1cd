"""Hardened XML parsing and multistatus building.

Request bodies are parsed with entity resolution, DTD loading and network access
off, and any DOCTYPE is refused outright: WebDAV bodies never need one, and a DTD is
how billion-laughs and external-entity attacks arrive."""

from __future__ import annotations

import re

from lxml import etree

from safehold.dav.errors import DavError

DAV = "DAV:"
NSMAP = {"D": DAV}


def tag(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def dav(name: str) -> str:
    return tag(DAV, name)


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          dtd_validation=False, huge_tree=False, remove_comments=True,
                          remove_pis=True)


def parse(body: bytes) -> etree._Element:
    """Parse a request body; any problem is a 400 that changes nothing."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise DavError(400, "XML bodies with a DOCTYPE or entities are not accepted")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise DavError(400, f"malformed XML body: {exc}") from exc
    if root is None:
        raise DavError(400, "empty XML body")
    # The byte check above misses other encodings (UTF-16); the parsed tree does not.
    if root.getroottree().docinfo.doctype:  # type: ignore[union-attr]
        raise DavError(400, "XML bodies with a DOCTYPE or entities are not accepted")
    return root


def parse_fragment(text: str) -> etree._Element:
    """Re-parse a stored property value (written by us, so trusted, still hardened)."""
    return etree.fromstring(text.encode("utf-8"), _PARSER)


def element(name: str, text: str | None = None, nsmap: dict[str, str] | None = None) -> etree._Element:
    if nsmap is None and name.startswith("{DAV:}"):
        nsmap = NSMAP  # serialized alone (multistatus.element) it keeps the D: prefix
    el = etree.Element(name, nsmap=nsmap)
    if text is not None:
        el.text = text
    return el


def sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, name)
    if text is not None:
        el.text = text
    return el


def to_bytes(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def multistatus() -> etree._Element:
    return etree.Element(dav("multistatus"), nsmap=NSMAP)


# Characters XML 1.0 cannot carry (control characters, lone surrogates): a message may
# quote what a client sent.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def error_body(condition: str, ns: str = DAV, extra: etree._Element | None = None,
               hrefs: list[str] | None = None, message: str | None = None) -> bytes:
    root = etree.Element(dav("error"), nsmap=NSMAP)
    cond = etree.SubElement(root, tag(ns, condition))
    for href in hrefs or []:
        sub(cond, dav("href"), href)
    if extra is not None:
        cond.append(extra)
    if message:
        # What went wrong, for the person reading a client's log: the condition element
        # alone says which rule, not why (DAV:error may hold any element, RFC 4918 §14.5).
        sub(root, dav("responsedescription"), _NOT_XML_CHAR.sub("\ufffd", message))
    return to_bytes(root)


def status_line(code: int) -> str:
    from http import HTTPStatus
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Unknown"
    if code == 423:
        phrase = "Locked"
    if code == 424:
        phrase = "Failed Dependency"
    if code == 507:
        phrase = "Insufficient Storage"
    return f"HTTP/1.1 {code} {phrase}"
