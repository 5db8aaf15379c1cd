"""The store side of web/sessions.py: one row per logged-in browser, keyed by the
SHA-256 of its cookie's token."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from safehold.store.repo import Store
from safehold.store.schema import web_session


def add(store: Store, token_hash: str, user: str, csrf: str, now: float,
        stale_before: float, born_before: float) -> None:
    """Record a new session; drop the expired ones on the way (logins are rare)."""
    def tx(c: Connection) -> None:
        c.execute(sa.delete(web_session).where(sa.or_(web_session.c.seen_at < stale_before,
                                                      web_session.c.created_at < born_before)))
        c.execute(sa.insert(web_session).values(token_hash=token_hash, user=user, csrf=csrf,
                                                created_at=now, seen_at=now, flash="[]"))
    store._write(tx)


def find(store: Store, token_hash: str) -> dict[str, Any] | None:
    def q(c: Connection) -> dict[str, Any] | None:
        row = c.execute(sa.select(web_session).where(web_session.c.token_hash == token_hash)).first()
        if row is None:
            return None
        found = dict(row._mapping)
        found["flash"] = json.loads(found["flash"])
        return found
    return store._read(q)


def seen(store: Store, token_hash: str, now: float) -> None:
    store._write(lambda c: c.execute(sa.update(web_session)
                                     .where(web_session.c.token_hash == token_hash)
                                     .values(seen_at=now)))


def set_flash(store: Store, token_hash: str, flash: list[str]) -> None:
    store._write(lambda c: c.execute(sa.update(web_session)
                                     .where(web_session.c.token_hash == token_hash)
                                     .values(flash=json.dumps(flash))))


def remove(store: Store, token_hash: str) -> None:
    store._write(lambda c: c.execute(sa.delete(web_session)
                                     .where(web_session.c.token_hash == token_hash)))


def remove_user(store: Store, user: str) -> int:
    return int(store._write(lambda c: c.execute(sa.delete(web_session)
                                                .where(web_session.c.user == user)).rowcount))
