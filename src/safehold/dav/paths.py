"""URL path helpers: hrefs are percent-encoded on the way out."""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

from safehold.dav.errors import DavError


def href(path: str) -> str:
    return quote(path, safe="/~!$&'()*+,;=:@")


def parent(path: str) -> str:
    p = path.rstrip("/")
    return p.rsplit("/", 1)[0] + "/"


def destination(value: str | None, base_url: str, own_prefix: str = "/dav/") -> str:
    """Resolve a Destination header (RFC 4918 §10.3) to a decoded URL path."""
    if not value:
        raise DavError(400, "the Destination header is missing")
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        base = urlsplit(base_url)
        if parts.netloc and parts.netloc.lower() != base.netloc.lower():
            raise DavError(502, "the Destination is on another server")
    raw = unquote(parts.path) if parts.path else ""
    if not raw.startswith(own_prefix):
        raise DavError(502 if parts.netloc else 403, "the Destination is outside this DAV tree")
    return raw
