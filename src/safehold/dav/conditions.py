"""Lock and precondition checks shared by the modifying methods (RFC 4918 §7, §10.4)."""

from __future__ import annotations

from safehold.dav import ifheader
from safehold.dav.backend import DavBackend, LockInfo, Node
from safehold.dav.errors import DavError
from safehold.dav.paths import href, parent
from safehold.dav.types import DavRequest


def if_lists(req: DavRequest) -> list[ifheader.IfList]:
    value = req.header("if")
    return ifheader.parse(value) if value else []


def _key(path: str) -> str:
    return path.rstrip("/")


def check_if_header(req: DavRequest, backend: DavBackend) -> set[str]:
    """Evaluate the If header; 412 when it is false. Returns the submitted tokens."""
    lists = if_lists(req)
    if not lists:
        return set()

    def state(path: str) -> tuple[str | None, set[str]]:
        if not backend.allowed(path):
            return None, set()
        node = backend.get(path)
        tokens = {lk.token for lk in backend.locks(path)}
        return (node.etag if node else None), tokens

    if not ifheader.evaluate(lists, req.path, state):
        raise DavError(412, "the If header evaluated to false")
    return ifheader.submitted_tokens(lists)


def require_unlocked(backend: DavBackend, path: str, tokens: set[str], *,
                     deep: bool = False, membership: bool = True) -> None:
    """423 unless every lock that protects ``path`` was submitted by its owner.
    ``deep``: the operation also affects everything below (DELETE, MOVE).
    ``membership``: the operation adds or removes ``path`` in its parent collection,
    which a depth-0 lock on the parent protects (RFC 4918 §7.4)."""
    locks: list[LockInfo] = list(backend.locks(path, ancestors=True, descendants=deep))
    if membership and _key(path) != _key(parent(path)):
        locks += [lk for lk in backend.locks(parent(path), ancestors=False) if lk.depth == "0"]
    for lk in locks:
        if lk.token not in tokens or not lk.mine:
            raise DavError(423, f"{lk.root} is locked", condition="lock-token-submitted",
                           hrefs=[href(lk.root)])


def check_etag_preconditions(req: DavRequest, node: Node | None) -> None:
    """If-Match / If-None-Match for methods that do not pass them to the store."""
    im = req.header("if-match")
    if im is not None:
        tags = [t.strip() for t in im.split(",")]
        if node is None or ("*" not in tags and node.etag not in tags):
            raise DavError(412, "If-Match does not match")
    inm = req.header("if-none-match")
    if inm is not None and node is not None:
        tags = [t.strip() for t in inm.split(",")]
        if "*" in tags or node.etag in tags:
            if req.method in ("GET", "HEAD"):
                raise DavError(304, "not modified", headers=[("ETag", node.etag)])
            raise DavError(412, "If-None-Match matched")
