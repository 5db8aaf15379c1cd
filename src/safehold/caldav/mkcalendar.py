"""MKCALENDAR (RFC 4791 §5.3.1) and validation of calendar properties at creation."""

from __future__ import annotations

from safehold.caldav import CALDAV, c
from safehold.caldav.props import COMPONENTS
from safehold.core.formats import ical
from safehold.core.formats.ical_zone import report_zone
from safehold.dav import handler, xml
from safehold.dav.backend import DavBackend
from safehold.dav.errors import DavError
from safehold.dav.methods import mkcol
from safehold.dav.types import DavRequest, DavResponse


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    stored: dict[str, str] = {}
    if req.body is not None and req.body.size > 0:
        root = xml.parse(req.body_bytes())
        if root.tag != c("mkcalendar"):
            raise DavError(400, "the MKCALENDAR body must be a CALDAV:mkcalendar element")
        _types, stored = mkcol.parse_body(root, xml.dav("set"))
    return mkcol.create(req, backend, "calendar", stored)


def validate(stored: dict[str, str]) -> None:
    comp_set = stored.get(c("supported-calendar-component-set"))
    if comp_set is not None:
        el = xml.parse_fragment(comp_set)
        names = [str(x.get("name", "")).upper() for x in el if x.tag == c("comp")]
        if not names or any(n not in COMPONENTS for n in names):
            raise DavError(403, f"unsupported calendar components {names}",
                           condition="supported-calendar-component", namespace=CALDAV)
    tz = stored.get(c("calendar-timezone"))
    if tz is not None:
        # Read as reports read it (RFC 4791 §5.2.2: an iCalendar object with exactly one
        # VTIMEZONE), so that what is stored is what a query can use.
        try:
            report_zone(xml.parse_fragment(tz).text or "")
        except ical.InvalidCalendarData as exc:
            raise DavError(403, "calendar-timezone must hold an iCalendar object with exactly one "
                           f"readable VTIMEZONE: {exc}", condition="valid-calendar-data",
                           namespace=CALDAV) from exc


def install() -> None:
    handler.register("MKCALENDAR", handle)
    mkcol.VALIDATORS["calendar"] = validate
    mkcol.SETTABLE_AT_CREATION.add(c("supported-calendar-component-set"))
