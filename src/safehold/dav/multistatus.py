"""Multistatus bodies (RFC 4918 §13) written as bytes, one DAV:response at a time.

A listing of 10,000 members built as an element tree costs a dozen lxml objects per
member; here a response is a few string joins, and properties that are the same for
every member of a kind (resourcetype, ...) are serialized once. Values that come
from outside (hrefs, ETags, object data) are escaped exactly as lxml would escape
them, including CR as ``&#13;``, so CRLF line ends survive the client's XML parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from lxml import etree

from safehold.dav.xml import DAV, status_line

HEAD = b"<?xml version='1.0' encoding='utf-8'?>\n<D:multistatus xmlns:D=\"DAV:\">"
TAIL = b"</D:multistatus>"
CONTENT_TYPE = ("Content-Type", "application/xml; charset=utf-8")
# Characters XML 1.0 cannot carry at all (§2.2); lxml refuses them, we drop them.
_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# Whatever ``escape`` changes. Most text (ETags, hrefs, media types) has none of it:
# one search instead of a search and four replaces, a listing's per-member cost.
_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]").search


def plain(text: str) -> bool:
    """Whether ``escape`` leaves ``text`` as it is. Asked of a whole page's texts at
    once: ``isprintable`` (no control character, no U+FFFE/U+FFFF) and three ``in``
    checks take half the time of the search, which decides only when they fail."""
    return (text.isprintable() and "&" not in text and "<" not in text and ">" not in text) \
        or _SPECIAL(text) is None


def escape(text: str) -> str:
    """Element text as XML, the way lxml serializes it."""
    if _SPECIAL(text) is None:
        return text
    if _INVALID.search(text):
        text = _INVALID.sub("", text)
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", "&#13;"))


@lru_cache(maxsize=512)
def _split(name: str) -> tuple[str, str]:
    ns, _, local = name[1:].partition("}") if name.startswith("{") else ("", "", name)
    return ns, local


@lru_cache(maxsize=512)
def open_tag(name: str) -> str:
    """``<D:x>`` for DAV:, else ``<x xmlns="ns">`` (a default namespace, so that the
    element's own text and empty children need no prefix)."""
    ns, local = _split(name)
    if ns == DAV:
        return f"<D:{local}>"
    return f'<{local} xmlns="{ns}">' if ns else f'<{local} xmlns="">'


@lru_cache(maxsize=512)
def close_tag(name: str) -> str:
    ns, local = _split(name)
    return f"</D:{local}>" if ns == DAV else f"</{local}>"


@lru_cache(maxsize=512)
def empty(name: str) -> str:
    """An empty property element (a 404 propstat, PROPFIND propname)."""
    return open_tag(name)[:-1] + "/>"


def text_element(name: str, text: str) -> str:
    return f"{open_tag(name)}{escape(text)}{close_tag(name)}"


def element(el: etree._Element) -> str:
    """A property value built as an element (rare properties, dead properties). The
    document element declares D: already, so the fragment's own declaration goes."""
    el.tail = None
    text = etree.tostring(el, encoding="unicode")
    if text.startswith("<D:"):
        end = text.index(">")
        text = text[:end].replace(' xmlns:D="DAV:"', "", 1) + text[end:]
    return text


@lru_cache(maxsize=64)
def _status(code: int) -> str:
    return f"<D:status>{status_line(code)}</D:status>"


def response(href_text: str, found: Iterable[str], missing: Iterable[str] = ()) -> str:
    """One DAV:response with a 200 propstat (always, as RFC 4918 §9.1 examples do when
    nothing is missing) and a 404 propstat for what is missing. ``href_text`` is the
    percent-encoded href."""
    return escaped_response(escape(href_text), found, missing)


RESPONSE_OPEN = "<D:response><D:href>"
# Between the href and the properties, and after them, in a response with no missing
# property (what ``escaped_response`` writes then).
FOUND_OPEN = "</D:href><D:propstat><D:prop>"
FOUND_CLOSE = f"</D:prop><D:status>{status_line(200)}</D:status></D:propstat></D:response>"


def escaped_response(href_xml: str, found: Iterable[str], missing: Iterable[str] = ()) -> str:
    """``response`` of an href already escaped as XML text."""
    ok = "".join(found)
    bad = "".join(missing)
    parts = [f"<D:response><D:href>{href_xml}</D:href>"]
    if ok or not bad:
        parts.append(f"<D:propstat><D:prop>{ok}</D:prop>{_status(200)}</D:propstat>")
    if bad:
        parts.append(f"<D:propstat><D:prop>{bad}</D:prop>{_status(404)}</D:propstat>")
    parts.append("</D:response>")
    return "".join(parts)


def status_response(href_text: str, code: int, error: str | None = None) -> str:
    """A DAV:response for a member with a status and no properties (404 in a
    multiget or a sync report; 507 when results were cut short)."""
    err = f"<D:error>{error}</D:error>" if error else ""
    return f"<D:response><D:href>{escape(href_text)}</D:href>{_status(code)}{err}</D:response>"


def document(responses: Iterable[str], tail: str = "") -> bytes:
    """The whole body: the responses, then ``tail`` (e.g. a DAV:sync-token)."""
    return b"".join((HEAD, "".join(responses).encode("utf-8"), tail.encode("utf-8"), TAIL))
