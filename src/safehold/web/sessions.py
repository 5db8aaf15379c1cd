"""Login sessions: random server-side tokens (never a signed blob a client could
replay after logout), each with its own CSRF token.

Held in the database (store/web_sessions.py, revision 0010), keyed by the SHA-256 of
the token: a restart logs nobody out, every process behind a load balancer knows every
session (DESIGN, "Scale-out": the processes are stateless), logging out or disabling a
user ends the session everywhere, and a copy of the database holds no usable cookie.
The times are wall-clock times, shared by the processes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from safehold.store import web_sessions as rows
from safehold.store.repo import Store

COOKIE = "safehold_session"
LOGIN_COOKIE = "safehold_login"  # double-submit CSRF token for the login form
IDLE_SECONDS = 8 * 3600.0
MAX_SECONDS = 7 * 86400.0
# How stale the recorded "last seen" may get: a page view writes it at most once a
# minute, not at every request (the idle limit is hours).
TOUCH_EVERY = 60.0


@dataclass
class Session:
    token: str
    user: str
    csrf: str
    created: float
    flash: list[str] = field(default_factory=list)  # messages for the next page


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Every call reads or writes the database: call them off the event loop."""

    def __init__(self, store: Store, idle: float = IDLE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.idle = idle
        self.clock = clock

    def create(self, user: str) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now)
        rows.add(self.store, _key(session.token), user, session.csrf, now,
                 stale_before=now - self.idle, born_before=now - MAX_SECONDS)
        return session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        key = _key(token)
        row = rows.find(self.store, key)
        if row is None:
            return None
        now = self.clock()
        if now - row["seen_at"] > self.idle or now - row["created_at"] > MAX_SECONDS:
            rows.remove(self.store, key)
            return None
        if now - row["seen_at"] >= TOUCH_EVERY:
            rows.seen(self.store, key, now)
        return Session(token, row["user"], row["csrf"], row["created_at"], row["flash"])

    def drop(self, token: str) -> None:
        rows.remove(self.store, _key(token))

    def drop_user(self, user: str) -> int:
        """Log ``user`` out everywhere (disabled, or password reset)."""
        return rows.remove_user(self.store, user)

    def flash(self, session: Session, message: str) -> None:
        """Say ``message`` on the session's next page (which another process may serve)."""
        session.flash.append(message)
        rows.set_flash(self.store, _key(session.token), session.flash)

    def take_flash(self, session: Session) -> list[str]:
        """The messages for this page, forgotten once shown."""
        flash, session.flash = session.flash, []
        if flash:
            rows.set_flash(self.store, _key(session.token), [])
        return flash


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two tokens; a missing one never matches."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
