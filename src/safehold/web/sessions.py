"""Login sessions: random server-side tokens (never a signed blob a client could
replay after logout), each with its own CSRF token. Held in memory: a restart logs
everyone out, which costs a login and nothing else."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "safehold_session"
LOGIN_COOKIE = "safehold_login"  # double-submit CSRF token for the login form
IDLE_SECONDS = 8 * 3600.0
MAX_SECONDS = 7 * 86400.0


@dataclass
class Session:
    token: str
    user: str
    csrf: str
    created: float
    seen: float
    flash: list[str] = field(default_factory=list)  # messages for the next page


class Sessions:
    def __init__(self, idle: float = IDLE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle = idle
        self.clock = clock
        self._by_token: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._expire(now)
            self._by_token[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        now = self.clock()
        with self._lock:
            session = self._by_token.get(token)
            if session is None:
                return None
            if now - session.seen > self.idle or now - session.created > MAX_SECONDS:
                del self._by_token[token]
                return None
            session.seen = now
            return session

    def drop(self, token: str) -> None:
        with self._lock:
            self._by_token.pop(token, None)

    def drop_user(self, user: str) -> int:
        """Log ``user`` out everywhere (disabled, or password reset)."""
        with self._lock:
            gone = [t for t, s in self._by_token.items() if s.user == user]
            for token in gone:
                del self._by_token[token]
        return len(gone)

    def _expire(self, now: float) -> None:
        for token, s in list(self._by_token.items()):
            if now - s.seen > self.idle or now - s.created > MAX_SECONDS:
                del self._by_token[token]


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two tokens; a missing one never matches."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
