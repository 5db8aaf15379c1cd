"""An idle keep-alive connection stays open well past uvicorn's 5 s default
(cli/serve.py KEEP_ALIVE_SECONDS): a client or reverse proxy reusing it after a pause must
not race the server's close (a lost request; test_rollback_collection once failed so)."""

from __future__ import annotations

import base64
import http.client
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import PASSWORD, Server, add_user

IDLE_SECONDS = 6.5  # past uvicorn's default of 5 s


@pytest.fixture
def lone_server(tmp_path: Path) -> Iterator[Server]:
    data = tmp_path / "data"
    add_user(data, "alice")
    srv = Server(data).start()
    yield srv
    srv.stop()


def test_an_idle_connection_is_still_open_after_a_pause(lone_server: Server) -> None:
    auth = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", lone_server.port, timeout=10)

    def propfind() -> None:
        conn.request("PROPFIND", "/dav/calendars/alice/", headers={"Authorization": auth,
                                                                   "Depth": "0"})
        r = conn.getresponse()
        r.read()
        assert r.status == 207 and not r.will_close
    try:
        propfind()
        sock = conn.sock
        assert sock is not None
        time.sleep(IDLE_SECONDS)
        sock.settimeout(0)  # a peek that does not wait
        try:
            gone = sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            gone = False  # open, nothing to read: what a kept connection looks like
        assert not gone, "the server closed an idle connection after a short pause"
        sock.settimeout(10)
        propfind()
        assert conn.sock is sock  # the same connection served the request after the pause
    finally:
        conn.close()
