"""CalDAV (RFC 4791): calendar collections, MKCALENDAR, calendar reports.

``install()`` registers everything with the generic DAV layer; the HTTP
composition root calls it once."""

from __future__ import annotations

CALDAV = "urn:ietf:params:xml:ns:caldav"
CS = "http://calendarserver.org/ns/"
ICAL = "http://apple.com/ns/ical/"


def c(name: str) -> str:
    return f"{{{CALDAV}}}{name}"


def install() -> None:
    from safehold.caldav import mkcalendar, props, reports
    props.install()
    reports.install()
    mkcalendar.install()
