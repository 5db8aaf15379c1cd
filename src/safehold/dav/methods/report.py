"""REPORT (RFC 3253 §3.6): dispatch on the body's root element."""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree

from safehold.dav import xml
from safehold.dav.backend import DavBackend, Node
from safehold.dav.errors import DavError
from safehold.dav.types import DavRequest, DavResponse

Report = Callable[[DavRequest, DavBackend, Node, etree._Element], DavResponse]
REPORTS: dict[str, Report] = {}


def register(name: str, fn: Report) -> None:
    REPORTS[name] = fn


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    root = xml.parse(req.body_bytes())
    node = backend.get(req.path)
    if node is None:
        raise DavError(404, "not found")
    fn = REPORTS.get(str(root.tag))
    if fn is None:
        raise DavError(403, f"the report {root.tag} is not supported", condition="supported-report")
    return fn(req, backend, node, root)
