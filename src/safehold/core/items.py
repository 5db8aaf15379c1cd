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


def index_for(kind: str, data: bytes, supported: tuple[str, ...] = ALL_COMPONENTS) -> ItemIndex | None:
    """Validate ``data`` for a collection of ``kind``; None for plain collections."""
    if kind == CALENDAR:
        return _calendar(data, supported)
    if kind == ADDRESSBOOK:
        return _card(data)
    return None


def _calendar(data: bytes, supported: tuple[str, ...]) -> ItemIndex:
    from safehold.core.formats import ical

    if len(data) > MAX_ITEM_BYTES:
        raise InvalidItem(f"calendar objects are limited to {MAX_ITEM_BYTES} bytes",
                          "max-resource-size", CALDAV)
    try:
        info = ical.inspect_calendar(data)
    except ical.InvalidCalendarData as exc:
        raise InvalidItem(str(exc), exc.precondition, CALDAV) from exc
    if info.component not in supported:
        raise InvalidItem(f"this calendar does not accept {info.component} "
                          f"(supported: {', '.join(supported)})",
                          "supported-calendar-component", CALDAV)
    return ItemIndex(info.component, info.uid,
                     info.start.timestamp() if info.start else None,
                     info.end.timestamp() if info.end else None, info.recurring, info.spans)


def _card(data: bytes) -> ItemIndex:
    # vcard at module level (ical stays lazy: it loads the icalendar library): an
    # import statement in here ran on every vCard PUT.
    if len(data) > MAX_ITEM_BYTES:
        raise InvalidItem(f"vCards are limited to {MAX_ITEM_BYTES} bytes", "max-resource-size",
                          CARDDAV)
    try:
        info = vcard.inspect_card(data)
    except vcard.InvalidAddressData as exc:
        raise InvalidItem(str(exc), "valid-address-data", CARDDAV) from exc
    return ItemIndex("VCARD", info.uid, None, None, False)
