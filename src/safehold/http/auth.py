"""HTTP Basic authentication with a short-lived cache of verified passwords.

Clients send the password with every request. Verifying argon2 costs tens of
milliseconds, so a verified (user, sha256(password)) pair is remembered for
``ttl`` seconds and later requests compare digests in constant time. Failed logins
delay the answer to that client, doubling per failure (capped), so that guessing is
slow without blocking other clients."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from safehold.core.model import Principal
from safehold.core.users import hash_password, verify_password
from safehold.store.repo import Store

MAX_DELAY = 8.0
FAILURE_MEMORY = 900.0


@dataclass
class _Verified:
    principal: Principal
    digest: bytes
    expires: float


class Authenticator:
    def __init__(self, store: Store, ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, _Verified] = {}
        self._failures: dict[str, tuple[int, float]] = {}
        self._dummy_hash = hash_password(secrets.token_hex(16))
        self._verifying = anyio.Semaphore(2)

    @staticmethod
    def parse(header: str | None) -> tuple[str, str] | None:
        if not header or not header[:6].lower() == "basic ":
            return None
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if ":" not in raw:
            return None
        user, _, password = raw.partition(":")
        return user, password

    def _cached(self, user: str, password: str) -> Principal | None:
        digest = hashlib.sha256(password.encode("utf-8")).digest()
        hit = self._cache.get(user)
        if hit is not None and hit.expires > self.clock() and hmac.compare_digest(hit.digest, digest):
            return hit.principal
        return None

    def _check(self, user: str, password: str) -> Principal | None:
        digest = hashlib.sha256(password.encode("utf-8")).digest()
        now = self.clock()
        cached = self._cached(user, password)
        if cached is not None:
            return cached
        principal = self.store.principal(user)
        if principal is None or principal.disabled:
            # Spend the same work as a real check so that timing does not tell
            # whether the user exists.
            verify_password(self._dummy_hash, password)
            return None
        stored = self.store.password_hash(principal.id)
        if stored is None or not verify_password(stored, password):
            return None
        self._cache[user] = _Verified(principal, digest, now + self.ttl)
        return principal

    async def authenticate(self, header: str | None, client: str) -> Principal | None:
        creds = self.parse(header)
        if creds is None:
            return None
        return await self.login(*creds, client)

    async def login(self, user: str, password: str, client: str) -> Principal | None:
        """The same check for the web login form as for DAV's Basic header."""
        cached = self._cached(user, password)
        if cached is not None:
            # A digest compare: no worker thread, no place in the argon2 queue.
            self._failures.pop(client, None)
            return cached
        async with self._verifying:  # bounds argon2's memory under a burst of logins
            principal = await anyio.to_thread.run_sync(self._check, user, password)
        if principal is None:
            await self._fail(client)
        else:
            self._failures.pop(client, None)
        return principal

    async def _fail(self, client: str) -> None:
        now = self.clock()
        count, last = self._failures.get(client, (0, now))
        if now - last > FAILURE_MEMORY:
            count = 0
        count += 1
        self._failures[client] = (count, now)
        await anyio.sleep(min(0.25 * 2 ** (count - 1), MAX_DELAY))

    def forget(self, user: str) -> None:
        self._cache.pop(user, None)

