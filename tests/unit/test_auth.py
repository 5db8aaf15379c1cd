"""The credential cache: one argon2 verification, then constant-time digest checks."""

from __future__ import annotations

import base64
from pathlib import Path

import anyio
import pytest

from safehold.core import users
from safehold.core.model import Actor
from safehold.http import auth as auth_mod
from safehold.http.auth import Authenticator
from safehold.store import engine as engine_mod
from safehold.store.repo import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def _store(tmp_path: Path) -> Store:
    engine = engine_mod.create(f"sqlite:///{tmp_path / 'db.sqlite'}")
    engine_mod.ensure_schema(engine)
    store = Store(engine, tmp_path / "tmp")
    users.add_user(store, "alice", "password-1", Actor(None))
    return store


def _argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords http.auth verifies with argon2 from now on (the real check)."""
    calls: list[str] = []
    real = users.verify_password

    def counting(h: str, p: str) -> bool:
        calls.append(p)
        return real(h, p)

    monkeypatch.setattr(auth_mod, "verify_password", counting)
    return calls


def test_cache_avoids_rehashing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path)
    clock = Clock()
    auth = Authenticator(store, ttl=60, clock=clock)
    calls = _argon2_calls(monkeypatch)

    async def run() -> None:
        for _ in range(5):
            assert await auth.authenticate(_basic("alice", "password-1"), "c") is not None
        assert len(calls) == 1
        clock.now += 61
        assert await auth.authenticate(_basic("alice", "password-1"), "c") is not None
        assert len(calls) == 2
        assert await auth.authenticate(_basic("alice", "wrong-pass"), "c") is None
        assert await auth.authenticate(_basic("nobody", "password-1"), "c") is None
        assert await auth.authenticate("Basic !!!", "c") is None
        assert await auth.authenticate(None, "c") is None
    anyio.run(run)
    store.engine.dispose()


def test_disabled_user_cannot_log_in(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.set_disabled("alice", True)
    auth = Authenticator(store, ttl=60)

    async def run() -> None:
        assert await auth.authenticate(_basic("alice", "password-1"), "c2") is None
    anyio.run(run)
    store.engine.dispose()


def test_a_pair_is_checked_again_before_it_expires(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A hit in the last quarter of the ttl is answered from the cache and checks the
    pair again in the background: a client in steady use never waits for argon2 after
    its first request, and a password changed elsewhere stops working within the ttl."""
    store = _store(tmp_path)
    clock = Clock()
    auth = Authenticator(store, ttl=60, clock=clock)
    calls = _argon2_calls(monkeypatch)

    async def settle() -> None:
        while auth._refreshes:
            await anyio.sleep(0.01)

    async def run() -> None:
        alice = _basic("alice", "password-1")
        assert await auth.authenticate(alice, "c") is not None
        clock.now += 50  # 10 s left: answered from the cache, checked in the background
        assert await auth.authenticate(alice, "c") is not None
        assert await auth.authenticate(alice, "c") is not None  # one check at a time
        await settle()
        assert len(calls) == 2
        clock.now += 20  # past the first expiry, within the renewed one
        assert await auth.authenticate(alice, "c") is not None
        assert len(calls) == 2
        # Changed by another process (the CLI): the next re-check drops the pair.
        store.set_password("alice", users.hash_password("password-2"))
        clock.now += 30  # 10 s left of the renewed pair
        assert await auth.authenticate(alice, "c") is not None  # still within its ttl
        await settle()
        assert len(calls) == 3
        assert await auth.authenticate(alice, "c") is None  # argon2 again: refused
        assert await auth.authenticate(_basic("alice", "password-2"), "c") is not None
    anyio.run(run)
    store.engine.dispose()
