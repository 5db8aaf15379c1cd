"""The cache of serialized member responses (dav/fragments.py): bounded by what it holds,
and used only for properties computed from a member's own version."""

from __future__ import annotations

from safehold.caldav import c
from safehold.dav import props
from safehold.dav.fragments import FragmentCache
from safehold.dav.methods.propfind import cacheable, responses_for
from safehold.dav.backend import Node
from safehold.dav.xml import dav
from safehold.http.app import install_protocols


def test_the_cache_stays_within_its_budget_and_drops_the_oldest_first() -> None:
    cache = FragmentCache(budget=1000)
    for i in range(100):
        cache.put((f"/dav/x/{i}", '"1"', ("p",)), "x" * 50)
        assert cache.chars <= 1000
        assert cache.chars == 50 * len(cache)
    assert cache.get(("/dav/x/99", '"1"', ("p",))) == "x" * 50
    assert cache.get(("/dav/x/0", '"1"', ("p",))) is None
    cache.put(("/dav/big", '"1"', ("p",)), "y" * 200)  # over an eighth of the budget
    assert cache.get(("/dav/big", '"1"', ("p",))) is None


def test_only_properties_of_the_version_itself_are_cached() -> None:
    install_protocols()
    plain = [dav("getetag"), dav("resourcetype"), dav("getcontenttype"), dav("displayname") + "x",
             "{http://example.com/ns}color"]
    assert cacheable("prop", plain) == tuple(plain)
    # Locks, tokens, privileges, principal names and CalDAV's live properties depend on more.
    for name in (dav("lockdiscovery"), dav("sync-token"), dav("current-user-privilege-set"),
                 dav("displayname"), c("calendar-home-set"), "{http://calendarserver.org/ns/}getctag"):
        assert name in props.LIVE or name in props.DERIVED, name
        assert cacheable("prop", [dav("getetag"), name]) is None, name
    assert cacheable("allprop", []) is None
    assert cacheable("propname", []) is None


class _Backend:
    """Only what rendering getetag/getcontenttype/resourcetype of an item touches."""


def _item(etag: str) -> Node:
    return Node("/dav/calendars/u/cal/a%b.ics", False, etag, 10, "text/calendar", 0.0, 0.0, {},
                False, "item")


def test_a_new_etag_gives_a_new_response() -> None:
    names = [dav("getetag"), dav("getcontenttype")]
    backend = _Backend()
    first = responses_for([_item('"1-aa"')], backend, "prop", names)  # type: ignore[arg-type]
    again = responses_for([_item('"1-aa"')], backend, "prop", names)  # type: ignore[arg-type]
    changed = responses_for([_item('"2-bb"')], backend, "prop", names)  # type: ignore[arg-type]
    assert first == again
    assert '"1-aa"' in first[0] and "a%25b.ics" in first[0]
    assert '"2-bb"' in changed[0] and '"1-aa"' not in changed[0]
