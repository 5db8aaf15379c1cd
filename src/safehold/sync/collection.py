"""The sync-collection REPORT (RFC 6578 §3). Tokens come from the change log, so
they survive restarts and never expire; an unknown token is 403 valid-sync-token."""

from __future__ import annotations

from lxml import etree

from safehold.dav import listing, multistatus
from safehold.dav.backend import DavBackend, Node
from safehold.dav.errors import DavError
from safehold.dav.methods import propfind
from safehold.dav.paths import href
from safehold.dav.types import DavRequest, DavResponse
from safehold.dav.xml import dav


# An incremental sync with at most this many changes is bounded work (report.quick).
QUICK_CHANGES = 100


def quick(req: DavRequest, backend: DavBackend, node: Node,
          root: etree._Element) -> DavResponse | None:
    """``handle`` if this is a sync after a token with few changes, else None."""
    token = (root.findtext(dav("sync-token")) or "").strip()
    if not token or not node.is_collection or node.virtual \
            or not backend.changes_within(node, token, QUICK_CHANGES):
        return None
    return handle(req, backend, node, root)


def handle(req: DavRequest, backend: DavBackend, node: Node, root: etree._Element) -> DavResponse:
    if not node.is_collection or node.virtual:
        raise DavError(403, "sync-collection needs a collection", condition="supported-report")
    token_el = root.find(dav("sync-token"))
    token = (token_el.text or "").strip() if token_el is not None else ""
    level = (root.findtext(dav("sync-level")) or "1").strip()
    if level not in ("1", "infinite"):
        raise DavError(400, "sync-level must be 1 or infinite")
    if level == "infinite" and node.kind == "collection":
        # RFC 6578 §3.3: only members are reported; nested collections are not walked.
        raise DavError(403, "sync-level infinite is not supported here",
                       condition="sync-traversal-supported")
    limit = None
    nresults = root.findtext(f"{dav('limit')}/{dav('nresults')}")
    if nresults is not None:
        try:
            limit = int(nresults.strip())
        except ValueError as exc:
            raise DavError(400, "DAV:nresults must be a number") from exc
        if limit < 1:
            raise DavError(400, "DAV:nresults must be positive")
    prop = root.find(dav("prop"))
    names = [str(p.tag) for p in prop if isinstance(p.tag, str)] if prop is not None else []
    if not token:
        # The initial sync lists the whole collection: a page at a time, and the token
        # from the same snapshot as every page (dav/listing.py), so that nothing listed
        # is newer than the token (the next sync would report it again) and nothing
        # older is missing (it would never be reported).
        snapshot = backend.listing(node)
        key_names = propfind.cacheable("prop", names)
        return DavResponse(207, [multistatus.CONTENT_TYPE], listing.body(
            "", snapshot, lambda page: propfind.page_responses(page, backend, "prop", names),
            None if key_names is None else (node.href, key_names),
            multistatus.text_element(dav("sync-token"), snapshot.token)))
    # The members come with the token, from one snapshot: re-reading them here could
    # report a newer version than the token covers, and the next sync would report
    # it again.
    changes, new_token, truncated = backend.changes(node, token or None, limit)
    found = iter(propfind.responses_for([m for _, m in changes if m is not None], backend,
                                        "prop", names))
    out = [multistatus.status_response(href(h), 404) if member is None else next(found)
           for h, member in changes]
    if truncated:
        # RFC 6578 §3.6: tell the client there is more; it asks again with the new token.
        out.append(multistatus.status_response(
            href(node.href), 507, multistatus.empty(dav("number-of-matches-within-limits"))))
    return DavResponse(207, [multistatus.CONTENT_TYPE], multistatus.document(
        out, multistatus.text_element(dav("sync-token"), new_token)))
