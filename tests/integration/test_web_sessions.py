"""Web logins live in the database (web/sessions.py, revision 0010): a restart logs
nobody out, every process of a PostgreSQL deployment knows every session, and the
database holds the SHA-256 of a token, never the token."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from safehold.store.repo import Store
from safehold.store.schema import web_session
from safehold.web.sessions import COOKIE, IDLE_SECONDS, MAX_SECONDS, TOUCH_EVERY, Sessions
from tests.support.server import Server, cli
from tests.support.stores import Clock, fresh_store
from tests.support.web import csrf, login


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    with fresh_store(database_url, tmp_path) as opened:
        yield opened


def _rows(store: Store) -> list[dict[str, object]]:
    with store.engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(sa.select(web_session))]


def test_the_database_holds_a_hash_and_every_process_reads_it(store: Store) -> None:
    clock = Clock()
    here, there = Sessions(store, clock=clock), Sessions(store, clock=clock)  # two processes
    session = here.create("alice")
    [row] = _rows(store)
    assert row["token_hash"] == hashlib.sha256(session.token.encode()).hexdigest()
    assert session.token not in str(row)
    seen = there.get(session.token)
    assert seen is not None and (seen.user, seen.csrf) == ("alice", session.csrf)
    assert there.get(session.token + "x") is None and there.get("") is None
    here.flash(session, "brought back ada.vcf")  # after a POST here, the next page there
    shown = there.get(session.token)
    assert shown is not None and there.take_flash(shown) == ["brought back ada.vcf"]
    again = here.get(session.token)
    assert again is not None and again.flash == []  # shown once
    there.drop(session.token)
    assert here.get(session.token) is None and _rows(store) == []


def test_idle_and_old_sessions_end_and_a_user_is_logged_out_everywhere(store: Store) -> None:
    clock = Clock()
    sessions = Sessions(store, clock=clock)
    idle = sessions.create("alice")
    clock.now += IDLE_SECONDS + 1
    assert sessions.get(idle.token) is None  # idle too long: gone, row and all
    assert _rows(store) == []
    kept = sessions.create("alice")
    while clock.now + IDLE_SECONDS / 2 <= kept.created + MAX_SECONDS:
        clock.now += IDLE_SECONDS / 2
        assert sessions.get(kept.token) is not None  # in use: kept, up to a week
    clock.now = kept.created + MAX_SECONDS + 1
    assert sessions.get(kept.token) is None  # in use all along, but a week old
    a1, a2, b = sessions.create("alice"), sessions.create("alice"), sessions.create("bob")
    assert sessions.drop_user("alice") == 2
    assert sessions.get(a1.token) is None and sessions.get(a2.token) is None
    assert sessions.get(b.token) is not None


def test_last_seen_is_written_at_most_once_a_minute(store: Store) -> None:
    clock = Clock()
    sessions = Sessions(store, clock=clock)
    s = sessions.create("alice")
    clock.now += TOUCH_EVERY / 2
    assert sessions.get(s.token) is not None
    assert _rows(store)[0]["seen_at"] == s.created
    clock.now += TOUCH_EVERY
    assert sessions.get(s.token) is not None
    assert _rows(store)[0]["seen_at"] == clock.now
    # Expired ones go when someone logs in, not only when their cookie comes back.
    clock.now += IDLE_SECONDS + 1
    sessions.create("bob")
    assert [r["user"] for r in _rows(store)] == ["bob"]


def test_a_login_survives_a_restart(fresh_server: Server) -> None:
    with login(fresh_server) as web:
        token = csrf(web)
        fresh_server.stop()
        fresh_server.start()
        home = web.get("/")
        assert home.status_code == 200, home.headers.get("location")
        assert csrf(web) == token  # the same session, not a new one
        assert web.post("/logout", data={"csrf": token}).status_code == 303
    # The token of a logged-out session opens nothing, in any process.
    with httpx.Client(base_url=fresh_server.url, cookies={COOKIE: "x" * 43}) as anon:
        assert anon.get("/").status_code == 303


def test_a_password_reset_or_disable_on_the_command_line_ends_web_logins(fresh_server: Server) -> None:
    with login(fresh_server) as web:
        assert web.get("/").status_code == 200
        out = cli(fresh_server.data_dir, "user", "passwd", "alice", "--password-stdin",
                  stdin="another long password\n", env=fresh_server.env)
        assert "1 web login(s) ended" in out.stdout
        assert web.get("/").status_code == 303  # to /login: the old password's login is over
    with login(fresh_server, password="another long password") as web:
        out = cli(fresh_server.data_dir, "user", "disable", "alice", env=fresh_server.env)
        assert "1 web login(s) ended" in out.stdout
        assert web.get("/").status_code == 303
