"""The web pages over plain HTTP: login and sessions, security headers, CSRF, and
bad input to every form (a clear 4xx, and nothing changed). Isolation: bob tries
alice's item, collection and job URLs and forms (DESIGN promise 9)."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.support.server import PASSWORD, Server, cli
from tests.support.web import csrf, login

CARD = (b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:web-1\r\nFN:Ada Lovelace\r\n"
        b"TEL;TYPE=cell:+44 20 7946 0000\r\nEND:VCARD\r\n")
BOOK = "/dav/addressbooks/alice/contacts/"


@pytest.fixture(scope="module")
def alice_data(server: Server) -> dict[str, str]:
    """alice: one contact changed twice, one deleted; an export job of hers."""
    with server.client() as dav:
        assert dav.put(BOOK + "ada.vcf", content=CARD, headers={"User-Agent": "DAVx5/4.4"}).status_code == 201
        assert dav.put(BOOK + "ada.vcf", content=CARD.replace(b"+44 20 7946 0000", b"+44 1")).status_code == 204
        assert dav.put(BOOK + "gone.vcf", content=CARD.replace(b"web-1", b"web-2")).status_code == 201
        assert dav.delete(BOOK + "gone.vcf").status_code == 204
    with login(server) as web:
        r = web.post("/export", data={"csrf": csrf(web, "/export")})
        assert r.status_code == 303
        job = r.headers["location"].rsplit("/", 1)[-1]
        for _ in range(300):
            if web.get(f"/jobs/{job}.json").json()["state"] != "running":
                break
            time.sleep(0.1)
        assert web.get(f"/jobs/{job}.json").json()["state"] == "done"
    return {"job": job}


def test_login_session_headers_and_logout(server: Server) -> None:
    with httpx.Client(base_url=server.url) as anon:
        r = anon.get("/")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "unsafe-inline" not in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert anon.get("/admin").status_code == 303
        assert anon.post("/undelete", data={"path": BOOK + "x.vcf"}).status_code == 403
        page = anon.get("/login")
        assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]
        token = anon.cookies["safehold_login"]
        bad = anon.post("/login", data={"csrf": token, "user": "alice", "password": "wrong password"})
        assert bad.status_code == 401 and "do not match" in bad.text
        assert "safehold_session" not in anon.cookies
        assert anon.post("/login", data={"user": "alice", "password": PASSWORD}).status_code == 403
        ok = anon.post("/login", data={"csrf": token, "user": "alice", "password": PASSWORD,
                                       "next": "//evil.example/"})
        assert ok.status_code == 303 and ok.headers["location"] == "/"
        cookie = ok.headers["set-cookie"]
        assert "safehold_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain http on loopback; https requests get Secure
        home = anon.get("/")
        assert home.status_code == 200 and "Contacts" in home.text and "Personal" in home.text
        assert "<script>" not in home.text and "style=" not in home.text
        token = re.search(r'name="csrf" value="([^"]+)"', home.text).group(1)  # type: ignore[union-attr]
        assert anon.post("/logout", data={"csrf": token}).status_code == 303
        assert anon.get("/").status_code == 303  # the session is gone on the server too


def test_history_diff_and_connect_pages(server: Server, alice_data: dict[str, str]) -> None:
    with login(server) as web:
        page = web.get("/item", params={"path": BOOK + "ada.vcf"})
        assert page.status_code == 200
        assert "DAVx5/4.4" in page.text and "+44 1" in page.text and "phone" in page.text
        assert page.text.count("Restore this version") == 1
        coll = web.get("/collection", params={"path": BOOK})
        assert "gone.vcf" in coll.text and "Undelete" in coll.text
        connect = web.get("/connect")
        assert f"{server.url}/dav/addressbooks/alice/" in connect.text
        assert web.get(f"/jobs/{alice_data['job']}/download").content[:2] == b"PK"


def test_bob_cannot_see_or_touch_alices_things(server: Server, alice_data: dict[str, str]) -> None:
    before = server.changes()
    job = alice_data["job"]
    with login(server, "bob") as bob:
        token = csrf(bob)
        for url, params in [("/item", {"path": BOOK + "ada.vcf"}),
                            ("/item", {"path": BOOK + "gone.vcf"}),
                            ("/collection", {"path": BOOK}),
                            ("/collection", {"path": "/dav/files/alice/"}),
                            ("/rollback", {"path": BOOK, "to": "1"}),
                            (f"/jobs/{job}", {}), (f"/jobs/{job}.json", {}),
                            (f"/jobs/{job}/download", {}), ("/admin", {})]:
            r = bob.get(url, params=params)
            assert r.status_code == 404, (url, params, r.status_code)
            assert "Ada" not in r.text and "gone.vcf" not in r.text
        for url, form in [("/undelete", {"path": BOOK + "gone.vcf"}),
                          ("/restore", {"path": BOOK + "ada.vcf", "version": "1"}),
                          ("/rollback", {"path": BOOK, "to": "1"}),
                          ("/incidents/1/undo", {}), ("/incidents/1/confirm", {}),
                          ("/admin/drill", {}), ("/admin/users", {"name": "mallory", "password": "x" * 12}),
                          ("/admin/users/alice/disable", {}),
                          ("/admin/users/alice/password", {"password": "y" * 12})]:
            r = bob.post(url, data={"csrf": token, **form})
            assert r.status_code == 404, (url, r.status_code)
            no_csrf = bob.post(url, data=form)
            assert no_csrf.status_code == 403, (url, no_csrf.status_code)
        with login(server) as alice:
            # alice's session with bob's token (a forged cross-session form) is refused too
            r = alice.post("/undelete", data={"csrf": token, "path": BOOK + "gone.vcf"})
            assert r.status_code == 403
    assert server.changes() == before
    with server.client() as dav:
        assert dav.get(BOOK + "gone.vcf").status_code == 404
    assert "mallory" not in cli(server.data_dir, "user", "list", env=server.env).stdout


def test_bad_input_is_a_clear_4xx_and_changes_nothing(server: Server, alice_data: dict[str, str]) -> None:
    cli(server.data_dir, "user", "admin", "alice", env=server.env)
    before = server.changes()
    users_before = cli(server.data_dir, "user", "list", env=server.env).stdout
    with login(server) as web:
        token = csrf(web)
        cases: list[tuple[str, str, dict[str, str], int]] = [
            ("GET", "/collection", {}, 400),
            ("GET", "/collection", {"path": "/etc/passwd"}, 400),
            ("GET", "/collection", {"path": "/dav/addressbooks/alice/nothing/"}, 404),
            ("GET", "/item", {"path": BOOK + "never.vcf"}, 404),
            ("GET", "/rollback", {"path": BOOK}, 400),
            ("GET", "/rollback", {"path": BOOK, "to": "yesterday-ish"}, 400),
            ("GET", "/rollback", {"path": BOOK, "to": "99999999"}, 404),
            ("GET", "/jobs/nope", {}, 404),
            ("GET", "/admin/nope", {}, 404),
            ("GET", "/item/nope", {}, 404),
            ("POST", "/undelete", {}, 400),
            ("POST", "/undelete", {"path": "../../etc"}, 400),
            ("POST", "/undelete", {"path": BOOK + "ada.vcf"}, 409),
            ("POST", "/undelete", {"path": BOOK + "never.vcf"}, 404),
            ("POST", "/restore", {"path": BOOK + "ada.vcf", "version": "abc"}, 400),
            ("POST", "/restore", {"path": BOOK + "ada.vcf", "version": "99999999"}, 404),
            ("POST", "/rollback", {"path": BOOK, "to": "2026-01-01T00:00"}, 400),
            ("POST", "/rollback", {"path": BOOK}, 400),
            ("POST", "/incidents/99999/undo", {}, 404),
            ("POST", "/admin/users", {"name": "Bad Name!", "password": "long enough"}, 400),
            ("POST", "/admin/users", {"name": "carol", "password": "short"}, 400),
            ("POST", "/admin/users", {"name": "bob", "password": "long enough"}, 409),
            ("POST", "/admin/users/nobody/disable", {}, 404),
            ("POST", "/admin/users/alice/disable", {}, 409),
            ("POST", "/admin/users/bob/password", {"password": "short"}, 400),
            ("POST", "/admin/users/BAD NAME/enable", {}, 400),
        ]
        for method, url, form, status in cases:
            if method == "GET":
                r = web.get(url, params=form)
            else:
                r = web.post(url, data={"csrf": token, **form})
            assert r.status_code == status, (method, url, form, r.status_code, r.text[-300:])
            assert "<h1>" in r.text and "internal error" not in r.text
        assert web.post("/undelete", json={"csrf": token}).status_code == 415
        assert web.post("/undelete", content=b"csrf=" + b"x" * 70000,
                        headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 413
        assert web.post("/undelete", content=b"csrf=%ff%fe",
                        headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 400
        assert web.request("PUT", "/").status_code == 405
        assert web.get("/undelete").status_code == 405
        assert web.get("/static/../web/site.py").status_code == 404
        assert web.request("PROPFIND", "/", headers={"Depth": "0"}).status_code == 401  # still DAV
    assert server.changes() == before
    assert cli(server.data_dir, "user", "list", env=server.env).stdout == users_before
    cli(server.data_dir, "user", "admin", "alice", "--revoke", env=server.env)


def test_run_drill_now_restores_in_a_child_process_and_records_it(server: Server,
                                                                  alice_data: dict[str, str]) -> None:
    """"Run drill now" (and the scheduled drill) restore in a spawned child process
    (backup/drill_process.py), so the server's memory never carries a scratch restore:
    the child must find the database and the backup key from the server's settings,
    and its result must reach the page and the drill records."""
    cli(server.data_dir, "user", "add", "--admin", "dora", "--password-stdin",
        stdin=PASSWORD + "\n", env=server.env)
    with login(server, "dora") as web:
        r = web.post("/admin/drill", data={"csrf": csrf(web, "/admin")})
        assert r.status_code == 303, r.text
        job = r.headers["location"].rsplit("/", 1)[-1]
        state = {}
        for _ in range(1200):
            state = web.get(f"/jobs/{job}.json").json()
            if state["state"] != "running":
                break
            time.sleep(0.1)
        assert state["state"] == "done", state
        assert "collections match at seq" in state["message"], state
        assert "collections match at seq" in web.get("/admin").text
