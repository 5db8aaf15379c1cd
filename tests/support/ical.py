"""iCalendar text for tests that write many generated events."""

from __future__ import annotations


def vcalendar(components: list[str]) -> str:
    """A VCALENDAR object holding ``components`` (each a CRLF-terminated VEVENT/VTODO)."""
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//safehold tests//EN\r\n"
            + "".join(components) + "END:VCALENDAR\r\n")
