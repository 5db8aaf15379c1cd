"""How the sync-collection REPORT reads its body (sync/collection.py): the elements it
looks for are taken from one pass over the body's children, and must mean what the
ElementPath lookups before it meant (the first element of each name; DAV:nresults
only inside DAV:limit; an absent or empty DAV:sync-level is "1")."""

from __future__ import annotations

from typing import Any

import pytest

from safehold.dav import xml
from safehold.dav.backend import Node
from safehold.dav.errors import DavError
from safehold.dav.types import DavRequest, DavResponse
from safehold.sync import collection

CAL = Node("/dav/calendars/alice/cal/", True, '"c"', 0, None, 0.0, 0.0, {}, False, "calendar")
ITEM = Node("/dav/calendars/alice/cal/a.ics", False, '"e1"', 10, "text/calendar", 0.0, 0.0, {},
            False, "item")


class Backend:
    """The two calls an incremental sync makes, recording their arguments."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []

    def changes_within(self, node: Node, token: str, count: int) -> bool:
        self.asked.append(("within", token))
        return True

    def changes(self, node: Node, token: str | None,
                limit: int | None) -> tuple[list[tuple[str, Node | None]], str, bool]:
        self.asked.append(("changes", (token, limit)))
        return [(ITEM.href, ITEM), ("/dav/calendars/alice/cal/gone.ics", None)], "tok-2", False


def _report(inner: str, quick: bool = False) -> tuple[DavResponse | None, Backend]:
    body = f'<D:sync-collection xmlns:D="DAV:">{inner}</D:sync-collection>'.encode()
    req = DavRequest("REPORT", CAL.href, {}, None, "http://h", "alice")
    backend = Backend()
    fn = collection.quick if quick else collection.handle
    return fn(req, backend, CAL, xml.parse(body)), backend  # type: ignore[arg-type]


PROP = "<D:prop><D:getetag/></D:prop>"


@pytest.mark.parametrize("level", ["", "<D:sync-level/>", "<D:sync-level> 1 </D:sync-level>"])
def test_an_absent_or_empty_sync_level_is_one(level: str) -> None:
    resp, backend = _report(f"<D:sync-token> tok-1 </D:sync-token>{level}{PROP}")
    assert resp is not None and resp.status == 207
    assert backend.asked == [("changes", ("tok-1", None))]


@pytest.mark.parametrize("level", ["<D:sync-level>  </D:sync-level>", "<D:sync-level>2</D:sync-level>",
                                   "<D:sync-level>x</D:sync-level><D:sync-level>1</D:sync-level>"])
def test_other_sync_levels_are_refused(level: str) -> None:
    with pytest.raises(DavError) as err:
        _report(f"<D:sync-token>tok-1</D:sync-token>{level}{PROP}")
    assert err.value.status == 400


def test_the_first_sync_level_is_the_one_read() -> None:
    resp, _ = _report(f"<D:sync-token>tok-1</D:sync-token><D:sync-level>1</D:sync-level>"
                      f"<D:sync-level>x</D:sync-level>{PROP}")
    assert resp is not None and resp.status == 207


def test_the_first_sync_token_is_the_one_used_on_both_paths() -> None:
    inner = f"<D:sync-token>tok-1</D:sync-token><D:sync-token>other</D:sync-token>{PROP}"
    slow, b1 = _report(inner)
    fast, b2 = _report(inner, quick=True)
    assert b1.asked == [("changes", ("tok-1", None))]
    assert b2.asked == [("within", "tok-1"), ("changes", ("tok-1", None))]
    assert slow is not None and fast is not None and slow.body == fast.body
    assert isinstance(slow.body, bytes)
    assert b'<D:getetag>"e1"</D:getetag>' in slow.body and b"404 Not Found" in slow.body
    assert slow.body.endswith(b"<D:sync-token>tok-2</D:sync-token></D:multistatus>")


@pytest.mark.parametrize(("inner", "limit"), [
    ("<D:limit><D:nresults> 2 </D:nresults></D:limit>", 2),
    ("<D:nresults>2</D:nresults>", None),  # outside DAV:limit: not a limit
    ("<D:limit/>", None),
    ("<D:limit/><D:limit><D:nresults>3</D:nresults></D:limit>", 3),  # any DAV:limit's
])
def test_nresults_is_read_inside_a_limit(inner: str, limit: int | None) -> None:
    _, backend = _report(f"<D:sync-token>tok-1</D:sync-token>{inner}{PROP}")
    assert backend.asked == [("changes", ("tok-1", limit))]


@pytest.mark.parametrize("nresults", ["0", "x"])
def test_a_bad_nresults_is_400(nresults: str) -> None:
    with pytest.raises(DavError) as err:
        _report(f"<D:sync-token>tok-1</D:sync-token><D:limit><D:nresults>{nresults}</D:nresults>"
                f"</D:limit>{PROP}")
    assert err.value.status == 400


def test_a_sync_without_a_token_is_not_quick() -> None:
    resp, backend = _report(f"<D:sync-token/>{PROP}", quick=True)
    assert resp is None and backend.asked == []
