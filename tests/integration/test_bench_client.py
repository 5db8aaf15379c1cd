"""The benchmark's measuring client (bench/client.py): every framing a server may answer
with is read whole, a kept-alive connection the server closed is reopened, and the
requests it writes are the ones http.client wrote. Real servers on loopback: the
standard library's HTTP server for each framing, and safehold."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.server import PASSWORD, Server

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from client import Client, Timeout, TransportError  # noqa: E402

BODY = b"x" * 70_000  # more than one read of the client's buffer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        self.seen.append((self.command, self.path, dict(self.headers.items()), body))

    def do_GET(self) -> None:
        self._record()
        if self.path == "/length":
            self._answer(200, [("Content-Length", str(len(BODY)))], BODY)
        elif self.path == "/chunked":
            parts = [BODY[:30_000], BODY[30_000:]]
            raw = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
            self._answer(200, [("Transfer-Encoding", "chunked")], raw)
        elif self.path == "/until-close":
            self._answer(200, [("Connection", "close")], BODY)
            self.close_connection = True
        elif self.path == "/close-after":
            self._answer(200, [("Content-Length", "2"), ("Connection", "close")], b"ok")
            self.close_connection = True
        elif self.path == "/no-content":
            self._answer(204, [("X-Case", "Mixed")], b"")
        elif self.path == "/garbage":
            self.wfile.write(b"this is not HTTP\r\n\r\n")
            self.close_connection = True
        elif self.path == "/silent":
            self.close_connection = True  # closes without an answer
        elif self.path == "/slow":
            threading.Event().wait(2.0)
            self._answer(200, [("Content-Length", "0")], b"")

    def do_PUT(self) -> None:
        self._record()
        self._answer(201, [("ETag", '"e1"'), ("Content-Length", "0")], b"")

    do_PROPFIND = do_PUT

    def _answer(self, status: int, headers: list[tuple[str, str]], raw: bytes) -> None:
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture(scope="module")
def plain() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("path", ["/length", "/chunked", "/until-close"])
def test_every_framing_is_read_whole(plain: str, path: str) -> None:
    with Client(plain, None, 10) as client:
        answer = client.get(path)
        assert (answer.status_code, answer.content) == (200, BODY)
        # The same client goes on, over a new connection where the server closed it.
        assert client.get("/length").content == BODY


def test_headers_and_empty_answers(plain: str) -> None:
    with Client(plain, None, 10) as client:
        answer = client.get("/no-content")
        assert (answer.status_code, answer.content) == (204, b"")
        assert answer.headers.get("x-case") == answer.headers["X-CASE"] == "Mixed"
        assert "x-case" in answer.headers and answer.headers.get("absent") is None


def test_request_as_http_client_wrote_it(plain: str) -> None:
    _Handler.seen.clear()
    with Client(plain, ("alice", "pw"), 10) as client:
        assert client.put("/a.vcf", b"BEGIN:VCARD", {"If-None-Match": "*"}).status_code == 201
        client.request("PROPFIND", "/")
    (method, path, headers, body), (method2, _, headers2, body2) = _Handler.seen
    assert (method, path, body) == ("PUT", "/a.vcf", b"BEGIN:VCARD")
    assert headers["Content-Length"] == "11" and headers["If-None-Match"] == "*"
    assert headers["Authorization"] == "Basic YWxpY2U6cHc="
    assert headers["Accept-Encoding"] == "identity"
    assert headers["Host"] == plain.removeprefix("http://")
    assert (method2, headers2["Content-Length"], body2) == ("PROPFIND", "0", b"")


def test_closed_keep_alive_connection_is_reopened_once(plain: str) -> None:
    with Client(plain, None, 10) as client:
        assert client.get("/close-after").content == b"ok"
        assert client.sock is None  # the server said it closes
        assert client.get("/length").content == BODY
        # A connection the server closed without saying so: the next request's send
        # or read fails before any byte of an answer, and it goes again on a new one.
        assert client.sock is not None
        client.sock.shutdown(socket.SHUT_RD)
        assert client.get("/length").content == BODY


def test_failures_are_transport_errors(plain: str) -> None:
    with Client(plain, None, 10) as client:
        with pytest.raises(TransportError):
            client.get("/garbage")
        with pytest.raises(TransportError):
            client.get("/silent")  # a fresh connection that gets no answer is not retried
    with Client(plain, None, 0.5) as client, pytest.raises(Timeout):
        client.get("/slow")
    with pytest.raises(ValueError):
        Client(plain, None, 1).request("HEAD", "/length")


def test_against_safehold(server: Server) -> None:
    card = b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:bench-client-1\r\nFN:A\r\nN:A;;;;\r\nEND:VCARD\r\n"
    href = "/dav/addressbooks/alice/contacts/bench-client-1.vcf"
    with Client(server.url, ("alice", PASSWORD), 10) as client:
        put = client.put(href, card, {"Content-Type": "text/vcard", "If-None-Match": "*"})
        assert put.status_code == 201 and put.headers.get("etag")
        got = client.get(href)
        assert (got.status_code, got.content) == (200, card)
        assert got.headers.get("ETag") == put.headers.get("etag")
        listing = client.request("PROPFIND", "/dav/addressbooks/alice/contacts/",
                                 {"Depth": "1", "Content-Type": "application/xml"})
        assert listing.status_code == 207 and b"bench-client-1.vcf" in listing.content
        assert client.request("GET", href, {"Authorization": "Basic eDp5"}).status_code == 401
