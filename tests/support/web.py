"""Helpers for the web-page tests: log in through the form (as a browser does) with
httpx, and read the CSRF token out of a page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.support.server import PASSWORD, Server

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@contextmanager
def login(server: Server, user: str = "alice", password: str = PASSWORD) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0, follow_redirects=False) as client:
        client.get("/login")
        r = client.post("/login", data={"csrf": client.cookies["safehold_login"], "user": user,
                                        "password": password})
        assert r.status_code == 303, r.text
        yield client


def csrf(client: httpx.Client, page: str = "/") -> str:
    r = client.get(page)
    assert r.status_code == 200, r.text
    found = CSRF.search(r.text)
    assert found, f"no CSRF token on {page}"
    return found.group(1)
