"""CardDAV (RFC 6352): address book collections and their reports."""

from __future__ import annotations

CARDDAV = "urn:ietf:params:xml:ns:carddav"


def cr(name: str) -> str:
    return f"{{{CARDDAV}}}{name}"


def install() -> None:
    from safehold.carddav import props, reports
    props.install()
    reports.install()
