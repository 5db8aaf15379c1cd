"""Principals and passwords (argon2id via argon2-cffi)."""

from __future__ import annotations

import re
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from safehold.core.model import Actor, Principal
from safehold.errors import UserError

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
HOMES = ("files",)  # collections every user gets; CalDAV/CardDAV add theirs
_hasher = PasswordHasher()


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


def add_user(store: UserStore, name: str, password: str, actor: Actor) -> Principal:
    return store.add_principal(check_name(name), hash_password(check_password(password)),
                               actor, HOMES)
