"""The JSON API under /api/v1/: history, deleted items, undelete, rollback,
restore-user; own data only; clear 4xx on bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.support.server import Server

BASE = "/dav/files/alice/api"


def test_history_undelete_and_rollback(server: Server) -> None:
    with server.client() as c:
        c.request("MKCOL", f"{BASE}/")
        c.put(f"{BASE}/a.txt", content=b"one", headers={"User-Agent": "tester/1"})
        c.put(f"{BASE}/a.txt", content=b"two")
        before = server.changes()[-1][0]
        c.put(f"{BASE}/b.txt", content=b"bee")
        assert c.delete(f"{BASE}/a.txt").status_code == 204

        hist = c.get("/api/v1/history", params={"path": f"{BASE}/a.txt"}).json()
        ops = [(v["op"], v["deleted"]) for v in hist["versions"]]
        assert ops == [("put", False), ("put", False), ("delete", True)]
        assert hist["versions"][0]["user_agent"] == "tester/1"
        assert hist["versions"][0]["user"] == "alice"

        deleted = c.get("/api/v1/deleted", params={"collection": f"{BASE}/"}).json()["deleted"]
        assert [d["path"] for d in deleted] == [f"{BASE}/a.txt"]

        dry = c.post("/api/v1/undelete", json={"path": f"{BASE}/a.txt", "dry_run": True}).json()
        assert dry["plans"][0]["summary"]["create"] == 1 and dry["plans"][0]["seq"] is None
        assert c.get(f"{BASE}/a.txt").status_code == 404
        done = c.post("/api/v1/undelete", json={"path": f"{BASE}/a.txt"}).json()
        assert done["plans"][0]["seq"] is not None
        assert c.get(f"{BASE}/a.txt").content == b"two"

        r = c.post("/api/v1/rollback", json={"collection": f"{BASE}/", "to": before})
        assert r.status_code == 200, r.text
        assert c.get(f"{BASE}/b.txt").status_code == 404
        assert c.get(f"{BASE}/a.txt").content == b"two"

        r = c.post("/api/v1/restore-user", json={"to": before, "dry_run": True})
        assert r.status_code == 200 and r.json()["dry_run"] is True
        assert c.get("/api/v1/incidents").json() == {"incidents": []}


def test_api_isolation_and_bad_input(server: Server) -> None:
    with server.client() as alice:
        alice.put("/dav/files/alice/secret.txt", content=b"s")
    with server.client("bob") as bob:
        for path in ("/dav/files/alice/secret.txt", "/dav/files/alice/nothing.txt"):
            r = bob.get("/api/v1/history", params={"path": path})
            assert r.status_code == 404 and r.json() == {"error": "not found"}
        r = bob.post("/api/v1/undelete", json={"path": "/dav/files/alice/secret.txt"})
        assert r.status_code == 404
        assert bob.post("/api/v1/rollback", content=b"{not json").status_code == 400
        assert bob.post("/api/v1/rollback", json=[1, 2]).status_code == 400
        assert bob.post("/api/v1/rollback", json={"collection": "/dav/files/bob/",
                                                  "to": "yesterday-ish"}).status_code == 400
        assert bob.post("/api/v1/undelete", json={"path": "/dav/files/bob/x",
                                                  "dry_run": "yes"}).status_code == 400
        assert bob.get("/api/v1/undelete").status_code == 405
        assert bob.get("/api/v1/nope").status_code == 404
    with httpx.Client(base_url=server.url) as anon:
        assert anon.get("/api/v1/incidents").status_code == 401


def test_openapi_describes_every_route(server: Server) -> None:
    with httpx.Client(base_url=server.url) as anon:
        spec = anon.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    from safehold.http import api
    source = Path(api.__file__).read_text()
    routes = {p.replace(r"(\d+)", "{id}") for p in
              re.findall(r'"(?:GET|POST)", r"([^"]+)"', source)}
    assert routes == set(spec["paths"]), routes ^ set(spec["paths"])
    json.dumps(spec)
