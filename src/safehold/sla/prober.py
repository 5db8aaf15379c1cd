"""The synthetic DAV transaction: PROPFIND the canary collection, PUT an item, GET it
back byte for byte, DELETE it, over real HTTP. The built-in prober runs it against the
server's own listening address; `safehold sla probe` runs it from another machine, so
that an outage of the whole server is seen from outside too."""

from __future__ import annotations

import base64
import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from safehold.sla.events import Sample

BODY = b"safehold canary: if you can read this, the prober's write came back intact\n"
PROPFIND = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
            b"<D:resourcetype/><D:getetag/></D:prop></D:propfind>")
USER_AGENT = "safehold-prober"


@dataclass(frozen=True)
class Target:
    url: str  # http(s)://host:port
    user: str
    password: str
    collection: str  # URL path of the collection, ending in "/"


class _Failed(Exception):
    def __init__(self, step: str, detail: str) -> None:
        super().__init__(detail)
        self.step = step
        self.detail = detail


class Prober:
    def __init__(self, target: Target, clock: Callable[[], float] = time.time,
                 timeout: float = 10.0, create_collection: bool = False) -> None:
        parts = urlsplit(target.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{target.url!r} is not an http:// or https:// URL")
        self.target = target
        self.clock = clock
        self.timeout = timeout
        self.create_collection = create_collection
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        token = base64.b64encode(f"{target.user}:{target.password}".encode()).decode()
        self._auth = f"Basic {token}"
        self._collection = quote(target.collection if target.collection.endswith("/")
                                 else target.collection + "/")

    def _request(self, step: str, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers={
                "Authorization": self._auth, "User-Agent": USER_AGENT, **(headers or {})})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise _Failed(step, f"{type(exc).__name__}: {exc}") from exc
        finally:
            conn.close()

    def _expect(self, step: str, got: tuple[int, bytes], *ok: int) -> bytes:
        status, body = got
        if status not in ok:
            text = body[:200].decode("utf-8", "replace").strip()
            raise _Failed(step, f"HTTP {status}" + (f": {text}" if text else ""))
        return body

    def run_once(self) -> Sample:
        at = self.clock()
        started = time.monotonic()
        item = self._collection + "canary.txt"
        try:
            got = self._request("propfind", "PROPFIND", self._collection, PROPFIND,
                                {"Depth": "1", "Content-Type": "application/xml"})
            if got[0] == 404 and self.create_collection:
                self._expect("mkcol", self._request("mkcol", "MKCOL", self._collection), 201)
                got = self._request("propfind", "PROPFIND", self._collection, PROPFIND,
                                    {"Depth": "1", "Content-Type": "application/xml"})
            self._expect("propfind", got, 207)
            self._expect("put", self._request("put", "PUT", item, BODY,
                                              {"Content-Type": "text/plain"}), 201, 204)
            body = self._expect("get", self._request("get", "GET", item), 200)
            if body != BODY:
                raise _Failed("get", f"the item came back different ({len(body)} bytes, "
                                     f"{len(BODY)} written)")
            self._expect("delete", self._request("delete", "DELETE", item), 200, 204)
        except _Failed as failed:
            return Sample(at, False, time.monotonic() - started, failed.step, failed.detail)
        return Sample(at, True, time.monotonic() - started, "all", "ok")
