"""The measuring client: one keep-alive HTTP/1.1 connection (the standard library's
``http.client``) with a precomputed Basic ``Authorization`` header.

A server benchmark should not measure its client. httpx, used here before, spends
1.4-2.0 ms of the client's CPU on every request (its auth flow, header models, event
hooks), more than safehold spends answering a GET of a contact: with one client sending
requests one at a time, that time is in every round trip of every server and pulls
every ratio toward 1. ``http.client`` spends 0.4-0.6 ms (docs/benchmarks.md, Notes).
Same requests, same headers for every server; the answer is read whole before the
clock stops, chunked or not.
"""

from __future__ import annotations

import base64
import http.client
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit


class TransportError(Exception):
    """The connection failed: refused, reset, closed without an answer."""


class Timeout(TransportError):
    """No complete answer within the client's timeout."""


@dataclass
class Answer:
    status_code: int
    headers: http.client.HTTPMessage
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def raise_for_status(self) -> Answer:
        if self.status_code >= 400:
            raise TransportError(f"status {self.status_code}: {self.text[:200]}")
        return self


class Client:
    """Requests go out one at a time over one connection, reopened when the server closed
    it while idle (a keep-alive timeout between workloads)."""

    def __init__(self, base_url: str, auth: tuple[str, str] | None, timeout: float) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self.base_headers = {"User-Agent": "safehold-bench"}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            self.base_headers["Authorization"] = f"Basic {token}"
        self.conn: http.client.HTTPConnection | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                content: bytes | None = None) -> Answer:
        all_headers = {**self.base_headers, **(headers or {})}
        if content is None and method in ("PUT", "POST", "PROPFIND", "REPORT", "PROPPATCH"):
            all_headers["Content-Length"] = "0"
        for attempt in (1, 2):
            reused = self.conn is not None
            try:
                return self._send(method, url, all_headers, content)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if not reused or attempt == 2:
                    raise TransportError(f"{type(exc).__name__}: {exc}") from exc
                # A kept-alive connection the server had closed: no byte of an answer came,
                # so the request was not taken; send it once more on a new connection.
            except TimeoutError as exc:
                self.close()
                raise Timeout(str(exc)) from exc
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, headers: dict[str, str], content: bytes | None) -> Answer:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.conn.request(method, url, body=content, headers=headers)
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.will_close:
            self.close()
        return Answer(resp.status, resp.headers, body)

    def get(self, url: str, headers: dict[str, str] | None = None) -> Answer:
        return self.request("GET", url, headers)

    def put(self, url: str, content: bytes, headers: dict[str, str] | None = None) -> Answer:
        return self.request("PUT", url, headers, content)
