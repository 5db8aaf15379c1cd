"""REPORT (RFC 3253 §3.6): dispatch on the body's root element."""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree

from safehold.dav import props, xml
from safehold.dav.backend import DavBackend, Node
from safehold.dav.errors import DavError
from safehold.dav.types import DavRequest, DavResponse

Report = Callable[[DavRequest, DavBackend, Node, etree._Element], DavResponse]
# A report's bounded variant: its answer if its work is bounded (a few changes, a few
# hrefs, a small calendar), else None. See handler.quick.
QuickReport = Callable[[DavRequest, DavBackend, Node, etree._Element], DavResponse | None]
REPORTS: dict[str, Report] = {}
QUICK: dict[str, QuickReport] = {}


def register(name: str, fn: Report, quick: QuickReport | None = None) -> None:
    REPORTS[name] = fn
    if quick is not None:
        QUICK[name] = quick


def quick(req: DavRequest, backend: DavBackend) -> DavResponse | None:
    """The answer of a report whose quick variant finds its work bounded, else None
    (the caller runs ``handle``). Bad input raises here as it would there."""
    root = xml.parse(req.body_bytes())
    fn = QUICK.get(str(root.tag))
    if fn is None:
        return None
    node = backend.get(req.path)
    if node is None:
        raise DavError(404, "not found")
    _require_supported(node, str(root.tag))
    return fn(req, backend, node, root)


def _require_supported(node: Node, name: str) -> None:
    # RFC 3253 §3.6: a report the resource does not list in its DAV:supported-report-set
    # is 403 DAV:supported-report, also one the server has for other collections.
    if node.kind in props.CLOSED_REPORT_SETS and name not in props.SUPPORTED_REPORTS[node.kind]:
        raise DavError(403, f"the report {name} is not supported on this {node.kind}",
                       condition="supported-report")


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    root = xml.parse(req.body_bytes())
    node = backend.get(req.path)
    if node is None:
        raise DavError(404, "not found")
    fn = REPORTS.get(str(root.tag))
    if fn is None:
        raise DavError(403, f"the report {root.tag} is not supported", condition="supported-report")
    _require_supported(node, str(root.tag))
    return fn(req, backend, node, root)
