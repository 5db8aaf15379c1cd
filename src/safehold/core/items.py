"""Validating a calendar object or vCard before it is stored, and computing the
index row kept beside its bytes. The bytes themselves are never changed."""

from __future__ import annotations

from safehold.core.formats import vcard
from safehold.core.model import ADDRESSBOOK, CALENDAR, ItemIndex
from safehold.errors import DomainError

CALDAV = "urn:ietf:params:xml:ns:caldav"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
ALL_COMPONENTS = ("VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY")
MAX_ITEM_BYTES = 10 * 1024 * 1024  # max-resource-size of calendars and address books


class InvalidItem(DomainError):
    """A PUT that breaks a CalDAV/CardDAV precondition (RFC 4791 §5.3.2.1,
    RFC 6352 §6.3.2.1). ``precondition`` is the element's local name."""

    status = 403

    def __init__(self, message: str, precondition: str, namespace: str) -> None:
        super().__init__(message)
        self.precondition = precondition
        self.namespace = namespace


def index_for(kind: str, data: bytes, supported: tuple[str, ...] = ALL_COMPONENTS, *,
              stored: bool = False) -> ItemIndex | None:
    """Validate ``data`` for a collection of ``kind``; None for plain collections.

    ``stored``: bytes this server accepted before (a restore, an undelete), which the rules
    added since (no control characters) must not strand."""
    if kind == CALENDAR:
        return _calendar(data, supported, stored)
    if kind == ADDRESSBOOK:
        return _card(data, stored)
    return None


def _calendar(data: bytes, supported: tuple[str, ...], stored: bool = False) -> ItemIndex:
    from safehold.core.formats import ical

    if len(data) > MAX_ITEM_BYTES:
        raise InvalidItem(f"calendar objects are limited to {MAX_ITEM_BYTES} bytes",
                          "max-resource-size", CALDAV)
    try:
        info = ical.inspect_calendar(data, stored=stored)
    except ical.InvalidCalendarData as exc:
        raise InvalidItem(str(exc), exc.precondition, CALDAV) from exc
    require_component(info.component, supported)
    return ItemIndex(info.component, info.uid,
                     info.start.timestamp() if info.start else None,
                     info.end.timestamp() if info.end else None, info.recurring, info.spans)


def require_component(component: str, supported: tuple[str, ...]) -> None:
    """Refuse a calendar object whose component the calendar does not take (its
    supported-calendar-component-set), at PUT and at COPY or MOVE into it."""
    if component not in supported:
        raise InvalidItem(f"this calendar does not accept {component} "
                          f"(supported: {', '.join(supported)})",
                          "supported-calendar-component", CALDAV)


def _card(data: bytes, stored: bool = False) -> ItemIndex:
    # vcard at module level (ical stays lazy: it loads the icalendar library): an
    # import statement in here ran on every vCard PUT.
    if len(data) > MAX_ITEM_BYTES:
        raise InvalidItem(f"vCards are limited to {MAX_ITEM_BYTES} bytes", "max-resource-size",
                          CARDDAV)
    try:
        info = vcard.inspect_card(data, stored=stored)
    except vcard.InvalidAddressData as exc:
        raise InvalidItem(str(exc), "valid-address-data", CARDDAV) from exc
    return ItemIndex("VCARD", info.uid, None, None, False)
