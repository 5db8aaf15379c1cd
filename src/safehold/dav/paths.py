"""URL path helpers: hrefs are percent-encoded on the way out."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_to_bytes, urlsplit

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
    try:
        raw = unquote_to_bytes(parts.path).decode("utf-8") if parts.path else ""
    except UnicodeDecodeError as exc:
        raise DavError(400, "the Destination path is not valid UTF-8") from exc
    bad = check_path(raw)
    if bad:
        raise DavError(400, f"Destination: {bad}")
    if not raw.startswith(own_prefix):
        raise DavError(502 if parts.netloc else 403, "the Destination is outside this DAV tree")
    return raw


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def check_path(path: str) -> str | None:
    """Why a decoded URL path is unacceptable, or None. Applied to request paths and
    Destination headers alike."""
    if "\x00" in path:
        return "the path contains a NUL byte"
    segments = path.split("/")
    if "." in segments or ".." in segments:
        return "the path contains . or .. segments"
    if "//" in path:
        return "the path contains an empty segment"
    # 255 bytes need at least 64 characters (UTF-8 has at most 4 bytes per character).
    if max(map(len, segments)) > 63 and any(len(s.encode()) > 255 for s in segments):
        return "a path segment is longer than 255 bytes"
    if _CONTROL.search(path):
        return "the path contains control characters"
    return None
