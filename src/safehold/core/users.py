"""Principals and passwords (argon2id via argon2-cffi)."""

from __future__ import annotations

import re
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from safehold.core.model import ADDRESSBOOK, CALENDAR, COLLECTION, Actor, Principal, Resource
from safehold.errors import UserError

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
HOMES = ("files", "calendars", "addressbooks")  # home collections every user gets
CALDAV = "urn:ietf:params:xml:ns:caldav"
# What a new user finds (issue 3): a calendar for events and tasks, an address book.
DEFAULT_COLLECTIONS = (
    ("calendars", "personal", CALENDAR, {
        "{DAV:}displayname": '<displayname xmlns="DAV:">Personal</displayname>',
        f"{{{CALDAV}}}supported-calendar-component-set":
            f'<C:supported-calendar-component-set xmlns:C="{CALDAV}"><C:comp name="VEVENT"/>'
            '<C:comp name="VTODO"/></C:supported-calendar-component-set>',
    }),
    ("addressbooks", "contacts", ADDRESSBOOK, {
        "{DAV:}displayname": '<displayname xmlns="DAV:">Contacts</displayname>',
    }),
)
# argon2id with 19 MiB, 2 passes (OWASP's minimum): each verification holds its
# memory, so the default 64 MiB would dominate the server's footprint.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise UserError(f"invalid user name {name!r}: use 1-64 of a-z 0-9 . _ - "
                        "starting with a letter or digit")
    return name


def check_password(password: str) -> str:
    if len(password) < 8:
        raise UserError("the password must be at least 8 characters long")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class UserStore(Protocol):
    """What user management needs from the store (implemented by store.repo.Store)."""

    def add_principal(self, name: str, secret_hash: str, actor: Actor,
                      homes: tuple[str, ...]) -> Principal: ...
    def get(self, path: str) -> Resource | None: ...
    def mkcol(self, path: str, owner_id: int, actor: Actor, props: dict[str, str] | None = None,
              *, root: bool = False, kind: str = COLLECTION) -> Resource: ...


def add_user(store: UserStore, name: str, password: str, actor: Actor) -> Principal:
    principal = store.add_principal(check_name(name), hash_password(check_password(password)),
                                    actor, HOMES)
    ensure_homes(store, principal, actor, defaults=True)
    return principal


def ensure_homes(store: UserStore, principal: Principal, actor: Actor, defaults: bool = False) -> None:
    """Create missing home collections (accounts made by an older release), and for a
    new account the default calendar and address book."""
    for home in HOMES:
        if store.get(f"{home}/{principal.name}") is None:
            store.mkcol(f"{home}/{principal.name}", principal.id, actor, root=True)
    if defaults:
        for home, name, kind, props in DEFAULT_COLLECTIONS:
            path = f"{home}/{principal.name}/{name}"
            if store.get(path) is None:
                store.mkcol(path, principal.id, actor, dict(props), kind=kind)
