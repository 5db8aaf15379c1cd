"""The measuring client: one keep-alive HTTP/1.1 connection over a plain socket, the
answer parsed by httptools (the C parser uvicorn serves with), with a precomputed Basic
``Authorization`` header.

A server benchmark should not measure its client. With one client sending requests one
at a time, the client's own CPU is in every round trip of every server and pulls every
ratio toward 1. httpx, used first, spent 1.4-2.0 ms of it per request; the standard
library's ``http.client``, used next, 0.3-0.6 ms, most of it parsing the answer's
headers with ``email.parser`` (docs/benchmarks.md, Notes). This one writes each request
with one ``sendall`` and feeds what arrives to httptools. Same requests, same headers
for every server; the answer is read whole before the clock stops, whatever its framing
(Content-Length, chunked, or the end of the connection).
"""

from __future__ import annotations

import base64
import socket
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

import httptools

RECV = 64 * 1024


class TransportError(Exception):
    """The connection failed: refused, reset, closed without an answer, or an answer that
    is not HTTP."""


class Timeout(TransportError):
    """No complete answer within the client's timeout."""


class _Closed(TransportError):
    """The server closed the connection before the first byte of an answer."""


class Headers:
    """An answer's header fields, looked up without regard to case."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields
        self._by_name = {name.lower(): value for name, value in fields}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._by_name.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._by_name[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name


@dataclass
class Answer:
    status_code: int
    headers: Headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def raise_for_status(self) -> Answer:
        if self.status_code >= 400:
            raise TransportError(f"status {self.status_code}: {self.text[:200]}")
        return self


@dataclass
class _Reading:
    """httptools' callbacks for one answer."""
    fields: list[tuple[str, str]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    headers_done: bool = False
    keep_alive: bool = False
    done: bool = False
    parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # Asked here: once the answer is complete the parser has started over.
        self.keep_alive = self.parser is not None and self.parser.should_keep_alive()

    def on_body(self, chunk: bytes) -> None:
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        self.done = True


class Client:
    """Requests go out one at a time over one connection, reopened when the server closed
    it while idle (a keep-alive timeout between workloads)."""

    def __init__(self, base_url: str, auth: tuple[str, str] | None, timeout: float) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        # What http.client sent, so that no server answers differently than before.
        self.base_headers = {"Host": f"{self.host}:{self.port}", "Accept-Encoding": "identity",
                             "User-Agent": "safehold-bench"}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            self.base_headers["Authorization"] = f"Basic {token}"
        self.sock: socket.socket | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                content: bytes | None = None) -> Answer:
        if method == "HEAD":
            raise ValueError("HEAD is not supported: its answer's length describes no body")
        all_headers = {**self.base_headers, **(headers or {})}
        if content is not None:
            all_headers["Content-Length"] = str(len(content))
        elif method in ("PUT", "POST", "PROPFIND", "REPORT", "PROPPATCH"):
            all_headers["Content-Length"] = "0"
        head = "".join([f"{method} {url} HTTP/1.1\r\n",
                        *(f"{name}: {value}\r\n" for name, value in all_headers.items()), "\r\n"])
        message = head.encode("latin-1") + (content or b"")
        for attempt in (1, 2):
            reused = self.sock is not None
            try:
                return self._exchange(message)
            except (_Closed, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if not reused or attempt == 2:
                    raise TransportError(f"{type(exc).__name__}: {exc}") from exc
                # A kept-alive connection the server had closed: no byte of an answer came,
                # so the request was not taken; send it once more on a new connection.
            except TimeoutError as exc:
                self.close()
                raise Timeout(str(exc)) from exc
            except TransportError:
                self.close()
                raise
            except (OSError, httptools.HttpParserError) as exc:
                self.close()
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def _exchange(self, message: bytes) -> Answer:
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.sock
        sock.sendall(message)
        reading = _Reading()
        parser = reading.parser = httptools.HttpResponseParser(reading)
        got_any = False
        while not reading.done:
            data = sock.recv(RECV)
            if not data:
                if not got_any:
                    raise _Closed("closed before an answer")
                if reading.headers_done and self._ends_with_close(reading):
                    break  # a body delimited by the end of the connection
                raise TransportError("closed in the middle of an answer")
            got_any = True
            parser.feed_data(data)
        status = parser.get_status_code()
        if not reading.done or not reading.keep_alive:
            self.close()
        return Answer(status, Headers(reading.fields), b"".join(reading.body))

    @staticmethod
    def _ends_with_close(reading: _Reading) -> bool:
        names = {name.lower() for name, _ in reading.fields}
        return "content-length" not in names and "transfer-encoding" not in names

    def get(self, url: str, headers: dict[str, str] | None = None) -> Answer:
        return self.request("GET", url, headers)

    def put(self, url: str, content: bytes, headers: dict[str, str] | None = None) -> Answer:
        return self.request("PUT", url, headers, content)
