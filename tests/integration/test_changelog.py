"""Every mutation is exactly one change-log row with the right op; bytes read back
are the bytes written (promise 3)."""

from __future__ import annotations

import httpx

from tests.support.server import Server

BASE = "/dav/files/alice"


def _one_change(server: Server, before: int, op: str, path: str) -> None:
    rows = [r for r in server.changes() if r[0] > before]
    assert [(r[1], r[2]) for r in rows] == [(op, path)], rows


def _last(server: Server) -> int:
    rows = server.changes()
    return rows[-1][0] if rows else 0


def test_each_mutation_is_one_change(server: Server) -> None:
    with server.client() as c:
        steps: list[tuple[str, str, dict[str, str], bytes, str, str]] = [
            ("MKCOL", f"{BASE}/cl/", {}, b"", "mkcol", "files/alice/cl"),
            ("PUT", f"{BASE}/cl/a.txt", {}, b"one", "put", "files/alice/cl/a.txt"),
            ("PUT", f"{BASE}/cl/a.txt", {}, b"two", "put", "files/alice/cl/a.txt"),
            ("PROPPATCH", f"{BASE}/cl/a.txt", {},
             b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z">'
             b"<D:set><D:prop><Z:color>red</Z:color></D:prop></D:set></D:propertyupdate>",
             "proppatch", "files/alice/cl/a.txt"),
            ("COPY", f"{BASE}/cl/a.txt", {"Destination": f"{server.url}{BASE}/cl/b.txt"}, b"",
             "copy", "files/alice/cl/a.txt"),
            ("MOVE", f"{BASE}/cl/b.txt", {"Destination": f"{server.url}{BASE}/cl/c.txt"}, b"",
             "move", "files/alice/cl/b.txt"),
            ("DELETE", f"{BASE}/cl/c.txt", {}, b"", "delete", "files/alice/cl/c.txt"),
            ("DELETE", f"{BASE}/cl/", {}, b"", "delete", "files/alice/cl"),
        ]
        for method, url, headers, body, op, path in steps:
            before = _last(server)
            r = c.request(method, url, headers=headers, content=body)
            assert r.status_code < 300, (method, url, r.status_code, r.text)
            _one_change(server, before, op, path)


def test_reads_change_nothing(server: Server) -> None:
    with server.client() as c:
        c.put(f"{BASE}/ro.txt", content=b"x")
        before = _last(server)
        c.get(f"{BASE}/ro.txt")
        c.head(f"{BASE}/ro.txt")
        c.request("PROPFIND", f"{BASE}/", headers={"Depth": "1"})
        c.options(f"{BASE}/")
        assert _last(server) == before


def test_bytes_round_trip_exactly(server: Server) -> None:
    bodies = {
        "crlf.ics": b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n",
        "latin1.txt": "caf\xe9 na\xefve".encode("latin-1"),
        "binary.bin": bytes(range(256)) * 41,
        "empty.txt": b"",
        "bom.txt": b"\xef\xbb\xbfhello\r\n\r\n",
        "mixed-eol.txt": b"a\nb\r\nc\rd",
    }
    with server.client() as c:
        for name, body in bodies.items():
            assert c.put(f"{BASE}/{name}", content=body).status_code == 201
        for name, body in bodies.items():
            r = c.get(f"{BASE}/{name}")
            assert r.status_code == 200
            assert r.content == body, name
            assert r.headers["content-length"] == str(len(body))


def test_etag_is_strong_and_changes(server: Server) -> None:
    with server.client() as c:
        e1 = c.put(f"{BASE}/etag.txt", content=b"1").headers["etag"]
        assert not e1.startswith("W/") and e1.startswith('"')
        assert c.get(f"{BASE}/etag.txt").headers["etag"] == e1
        assert c.get(f"{BASE}/etag.txt", headers={"If-None-Match": e1}).status_code == 304
        e2 = c.put(f"{BASE}/etag.txt", content=b"2", headers={"If-Match": e1}).headers["etag"]
        assert e2 != e1
        assert c.put(f"{BASE}/etag.txt", content=b"3", headers={"If-Match": e1}).status_code == 412
        assert c.put(f"{BASE}/etag.txt", content=b"3",
                     headers={"If-None-Match": "*"}).status_code == 412
        assert c.get(f"{BASE}/etag.txt").content == b"2"


def test_unicode_names(server: Server) -> None:
    with server.client() as c:
        url = f"{BASE}/" + httpx.URL("x").copy_with(path="/caf\u00e9 \u65e5\u672c.txt").path.lstrip("/")
        assert c.put(url, content=b"u").status_code == 201
        r = c.request("PROPFIND", f"{BASE}/", headers={"Depth": "1"})
        assert "caf%C3%A9%20%E6%97%A5%E6%9C%AC.txt" in r.text
        assert c.get(url).content == b"u"


def test_health_and_discovery(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        for wk in ("/.well-known/caldav", "/.well-known/carddav"):
            r = c.get(wk)
            assert r.status_code == 301 and r.headers["location"] == "/dav/"
