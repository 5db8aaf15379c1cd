"""One user cannot read, change, lock or even detect another user's resources.

Bob attacks alice's tree with every method. For each attempt, the answer for an
existing resource of alice's must be byte-for-byte the answer for a resource alice
does not have, and the answer for a user ("carol") who does not exist at all; only
the Date and X-Request-Id headers may differ. Afterwards alice's data (bytes, ETags,
dead properties, locks) and the change log (last_seq) are exactly as before.

Authentication: bad or missing credentials get 401 + WWW-Authenticate: Basic, and a
user disabled with the CLI is shut out within auth_cache_seconds.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx
import pytest

from tests.support.server import PASSWORD, Server, add_user, cli

ALICE = "/dav/files/alice"
BOB = "/dav/files/bob"
CAROL = "/dav/files/carol"  # no such user

ALICE_SECRET = b"alice's secret: the launch code is 0000\n"
ALICE_NOTE = b"alice's note inside docs/\n"
BOB_OWN = b"bob's own file\n"

IGNORED_HEADERS = {"date", "x-request-id"}

PROPPATCH_BODY = (b'<?xml version="1.0" encoding="utf-8"?>'
                  b'<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:example:z">'
                  b"<D:set><D:prop><Z:owned>by bob</Z:owned></D:prop></D:set>"
                  b"</D:propertyupdate>")
LOCK_BODY = (b'<?xml version="1.0" encoding="utf-8"?>'
             b'<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
             b"<D:locktype><D:write/></D:locktype><D:owner>bob</D:owner></D:lockinfo>")
PROPFIND_ALL = (b'<?xml version="1.0" encoding="utf-8"?>'
                b'<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>')


def last_seq(server: Server) -> int:
    """The highest change-log number, read through the CLI while the server runs."""
    out = cli(server.data_dir, "check", "--json", env=server.env).stdout
    return int(json.loads(out)["last_seq"])


def fingerprint(r: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Everything a client can observe, minus the headers that differ per request."""
    headers = sorted((k.lower(), v) for k, v in r.headers.multi_items()
                     if k.lower() not in IGNORED_HEADERS)
    return r.status_code, r.content, headers


def hrefs(body: bytes) -> set[str]:
    return {el.text or "" for el in ET.fromstring(body).iter("{DAV:}href")}


@dataclass
class World:
    """Alice's and bob's data before bob starts trying, and a client for each (kept
    for the module: creating an httpx client costs tens of milliseconds)."""
    server: Server
    alice: httpx.Client
    bob: httpx.Client
    tokens: dict[str, str] = field(default_factory=dict)  # kind -> a lock token of alice's
    seq: int = 0
    before: dict[str, object] = field(default_factory=dict)

    def snapshot(self) -> dict[str, object]:
        """Both trees as their owners see them: listings with every live and dead
        property (ETags, lengths, locks) and every file's bytes."""
        snap: dict[str, object] = {}
        for client, coll in ((self.alice, f"{ALICE}/"), (self.alice, f"{ALICE}/docs/"),
                             (self.bob, f"{BOB}/")):
            r = client.request("PROPFIND", coll, headers={"Depth": "1"}, content=PROPFIND_ALL)
            assert r.status_code == 207, (coll, r.status_code, r.text)
            snap[f"PROPFIND {coll}"] = r.content
            for h in sorted(hrefs(r.content)):
                if not h.endswith("/"):
                    g = client.get(h)
                    snap[f"GET {h}"] = (g.status_code, g.headers.get("etag"), g.content)
        return snap


@pytest.fixture(scope="module")
def world(server: Server) -> Iterator[World]:
    with server.client("alice") as a, server.client("bob") as b:
        w = World(server, a, b)
        assert a.put(f"{ALICE}/secret.txt", content=ALICE_SECRET).status_code == 201
        assert a.request("MKCOL", f"{ALICE}/docs/").status_code == 201
        assert a.put(f"{ALICE}/docs/note.txt", content=ALICE_NOTE).status_code == 201
        r = a.request("PROPPATCH", f"{ALICE}/secret.txt",
                      content=PROPPATCH_BODY.replace(b"by bob", b"by alice"))
        assert r.status_code == 207, r.text
        for kind, path, depth in (("file", f"{ALICE}/secret.txt", "0"),
                                  ("collection", f"{ALICE}/docs/", "infinity")):
            r = a.request("LOCK", path, headers={"Depth": depth, "Timeout": "Second-3600"},
                          content=LOCK_BODY.replace(b">bob<", b">alice<"))
            assert r.status_code == 200, r.text
            w.tokens[kind] = r.headers["lock-token"].strip("<>")
        # Where alice holds no lock of her own (her home, her principal URL), bob
        # submits the token of her file lock.
        w.tokens["home"] = w.tokens["principal"] = w.tokens["file"]
        assert b.put(f"{BOB}/mine.txt", content=BOB_OWN).status_code == 201
        w.before = w.snapshot()
        w.seq = last_seq(server)
        yield w


# kind -> (alice's existing resource, a resource alice does not have, carol's)
TARGETS = {
    "file": (f"{ALICE}/secret.txt", f"{ALICE}/no-such.txt", f"{CAROL}/secret.txt"),
    "collection": (f"{ALICE}/docs/", f"{ALICE}/no-such-dir/", f"{CAROL}/docs/"),
    "home": (f"{ALICE}/", f"{ALICE}/", f"{CAROL}/"),
    "home-no-slash": (ALICE, ALICE, CAROL),
    "principal": ("/dav/principals/alice/", "/dav/principals/alice/", "/dav/principals/carol/"),
}

# name -> (method, headers, body); "{token}" and "{url}" are filled in per request.
METHODS: dict[str, tuple[str, dict[str, str], bytes]] = {
    "PROPFIND-depth0": ("PROPFIND", {"Depth": "0"}, PROPFIND_ALL),
    "PROPFIND-depth1": ("PROPFIND", {"Depth": "1"}, PROPFIND_ALL),
    "PROPFIND-depth1-nobody": ("PROPFIND", {"Depth": "1"}, b""),
    "GET": ("GET", {}, b""),
    "HEAD": ("HEAD", {}, b""),
    "OPTIONS": ("OPTIONS", {}, b""),
    "PUT": ("PUT", {"Content-Type": "text/plain"}, b"overwritten by bob\n"),
    "DELETE": ("DELETE", {}, b""),
    "PROPPATCH": ("PROPPATCH", {"Content-Type": "application/xml"}, PROPPATCH_BODY),
    "MKCOL": ("MKCOL", {}, b""),
    "COPY-from": ("COPY", {"Destination": "{url}/dav/files/bob/loot", "Overwrite": "T"}, b""),
    "MOVE-from": ("MOVE", {"Destination": "{url}/dav/files/bob/loot", "Overwrite": "T"}, b""),
    "LOCK": ("LOCK", {"Depth": "0", "Content-Type": "application/xml"}, LOCK_BODY),
    "LOCK-refresh-with-alices-token": ("LOCK", {"If": "(<{token}>)"}, b""),
    "UNLOCK-with-alices-token": ("UNLOCK", {"Lock-Token": "<{token}>"}, b""),
    "PUT-with-alices-token": ("PUT", {"If": "(<{token}>)"}, b"overwritten by bob\n"),
}


@pytest.mark.parametrize("kind", list(TARGETS))
@pytest.mark.parametrize("method_name", list(METHODS))
def test_bob_cannot_touch_or_detect_alices_resources(world: World, kind: str,
                                                     method_name: str) -> None:
    method, headers, body = METHODS[method_name]
    token = world.tokens[kind.split("-")[0]]
    answers = []
    for path in TARGETS[kind]:
        h = {k: v.format(token=token, url=world.server.url) for k, v in headers.items()}
        answers.append(world.bob.request(method, path, headers=h, content=body))
    for r in answers:
        assert r.status_code in (403, 404), (r.request.method, r.request.url, r.status_code, r.text)
        assert b"alice" not in r.content.lower(), r.text
    existing, missing, carol = answers
    assert fingerprint(existing) == fingerprint(missing), "bob can tell that alice's resource exists"
    assert fingerprint(existing) == fingerprint(carol), "bob can tell that user alice exists"
    assert world.snapshot() == world.before


@pytest.mark.parametrize("method", ["COPY", "MOVE"])
@pytest.mark.parametrize("overwrite", ["T", "F"])
def test_bob_cannot_copy_or_move_into_alices_tree(world: World, method: str, overwrite: str) -> None:
    destinations = (f"{ALICE}/secret.txt", f"{ALICE}/no-such.txt", f"{CAROL}/secret.txt",
                    f"{ALICE}/docs/", f"{ALICE}/docs/note.txt", f"{ALICE}/no-such-dir/new.txt",
                    f"{ALICE}/", ALICE)
    answers = [world.bob.request(method, f"{BOB}/mine.txt",
                                 headers={"Destination": world.server.url + d, "Overwrite": overwrite})
               for d in destinations]
    # A path-only Destination header must be judged the same way.
    answers += [world.bob.request(method, f"{BOB}/mine.txt",
                                  headers={"Destination": d, "Overwrite": overwrite})
                for d in destinations]
    for r in answers:
        assert r.status_code in (403, 404), (r.request.headers["destination"], r.status_code, r.text)
    prints = {repr(fingerprint(r)) for r in answers}
    assert len(prints) == 1, f"the answers differ by destination: {prints}"
    assert world.snapshot() == world.before  # includes bob's mine.txt: nothing moved


def test_if_header_does_not_reveal_alices_etags(world: World) -> None:
    """A tagged If list names alice's resource with her real ETag: it must evaluate
    exactly as for a resource that does not exist (false, so 412)."""
    etag = world.alice.get(f"{ALICE}/secret.txt").headers["etag"]
    answers = [world.bob.put(f"{BOB}/mine.txt", content=b"changed by bob\n",
                             headers={"If": f"<{world.server.url}{target}> ([{etag}])"})
               for target in (f"{ALICE}/secret.txt", f"{ALICE}/no-such.txt", f"{CAROL}/secret.txt")]
    assert [r.status_code for r in answers] == [412, 412, 412], [r.text for r in answers]
    assert len({repr(fingerprint(r)) for r in answers}) == 1
    assert world.snapshot() == world.before


@pytest.mark.parametrize("collection,expected", [
    ("/dav/files/", {"/dav/files/", "/dav/files/bob/"}),
    ("/dav/principals/", {"/dav/principals/", "/dav/principals/bob/"}),
    ("/dav/", None),  # the namespaces (files, principals, ...): no user's home
])
def test_listings_show_only_bobs_own_home(world: World, collection: str,
                                          expected: set[str] | None) -> None:
    for depth_header in ("0", "1"):
        r = world.bob.request("PROPFIND", collection, headers={"Depth": depth_header},
                              content=PROPFIND_ALL)
        assert r.status_code == 207, r.text
        found = hrefs(r.content)
        if depth_header == "0":
            assert found == {collection}
        elif expected is not None:
            assert found == expected
        else:
            assert {"/dav/", "/dav/files/", "/dav/principals/"} <= found
            assert all(h.count("/") == 3 for h in found - {"/dav/"}), found
        assert b"alice" not in r.content
    page = world.bob.get(collection)
    assert page.status_code == 200
    assert b"alice" not in page.content


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("authorization", [
    pytest.param(None, id="no-credentials"),
    pytest.param(_basic("alice", "wrong password"), id="wrong-password"),
    pytest.param(_basic("alice", ""), id="empty-password"),
    pytest.param(_basic("carol", PASSWORD), id="unknown-user"),
    pytest.param(_basic("ALICE", PASSWORD), id="wrong-case-user"),
    pytest.param("Basic " + base64.b64encode(b"alice").decode(), id="no-colon"),
    pytest.param("Basic !!!not-base64!!!", id="not-base64"),
    pytest.param("Bearer " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode(), id="bearer"),
])
def test_bad_credentials_get_401(world: World, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    answers = []
    with httpx.Client(base_url=world.server.url, timeout=60.0) as anon:
        for path in (f"{ALICE}/secret.txt", f"{ALICE}/no-such.txt"):
            answers.append(anon.request("PROPFIND", path, headers={"Depth": "0", **headers}))
            # Failed logins slow down the next answer to this client address (the
            # delay doubles per failure); one good login resets that.
            assert world.alice.request("OPTIONS", f"{ALICE}/").status_code == 200
    for r in answers:
        assert r.status_code == 401, r.text
        challenge = r.headers.get("www-authenticate", "")
        assert challenge.lower().startswith("basic "), challenge
        assert "realm=" in challenge.lower()
        assert ALICE_SECRET not in r.content and b"secret.txt" not in r.content
    assert fingerprint(answers[0]) == fingerprint(answers[1])


def test_wrong_password_and_unknown_user_look_the_same(world: World) -> None:
    answers = []
    with httpx.Client(base_url=world.server.url, timeout=60.0) as anon:
        for user in ("alice", "carol"):
            answers.append(anon.get(f"{ALICE}/secret.txt",
                                    headers={"Authorization": _basic(user, "wrong password")}))
            assert world.alice.request("OPTIONS", f"{ALICE}/").status_code == 200
    assert answers[0].status_code == 401
    assert fingerprint(answers[0]) == fingerprint(answers[1])


def test_alices_data_is_unchanged_after_all_of_bobs_attempts(world: World) -> None:
    """Defined last, so it runs after every attempt above (all of which must have failed)."""
    assert world.snapshot() == world.before
    assert last_seq(world.server) == world.seq
    a = world.alice
    assert a.get(f"{ALICE}/secret.txt").content == ALICE_SECRET
    assert a.get(f"{ALICE}/docs/note.txt").content == ALICE_NOTE
    r = a.request("PROPFIND", f"{ALICE}/secret.txt", headers={"Depth": "0"}, content=PROPFIND_ALL)
    assert r.status_code == 207
    assert b"by alice" in r.content and b"by bob" not in r.content
    assert world.tokens["file"].encode() in r.content  # alice's locks are still there
    r = a.request("PROPFIND", f"{ALICE}/docs/", headers={"Depth": "0"}, content=PROPFIND_ALL)
    assert world.tokens["collection"].encode() in r.content
    r = world.bob.request("PROPFIND", f"{BOB}/", headers={"Depth": "1"})
    assert hrefs(r.content) == {f"{BOB}/", f"{BOB}/mine.txt"}, "bob looted something"


# -- a disabled user ---------------------------------------------------------------

AUTH_CACHE_SECONDS = 1


@pytest.fixture
def short_cache_server(tmp_path: Path) -> Iterator[Server]:
    """Auth cache of 1 s (default 60 s) so that the test need not wait a minute."""
    data = tmp_path / "data"
    add_user(data, "alice")
    add_user(data, "bob")
    srv = Server(data, env={"SAFEHOLD_AUTH_CACHE_SECONDS": str(AUTH_CACHE_SECONDS)}).start()
    yield srv
    srv.stop()


def test_disabled_user_is_refused_within_the_auth_cache_time(short_cache_server: Server) -> None:
    srv = short_cache_server
    add_user(srv.data_dir, "dave")  # a third user, added while the server runs
    with srv.client("dave") as d:
        r = d.put("/dav/files/dave/diary.txt", content=b"dear diary\n")
        assert r.status_code == 201, r.text  # dave's password is now in the auth cache
        cli(srv.data_dir, "user", "disable", "dave")
        disabled_at = time.monotonic()
        while True:
            r = d.request("PROPFIND", "/dav/files/dave/", headers={"Depth": "0"})
            waited = time.monotonic() - disabled_at
            if r.status_code == 401:
                break
            assert r.status_code == 207, r.text
            assert waited < AUTH_CACHE_SECONDS + 2.0, \
                f"dave is still let in {waited:.1f}s after being disabled"
            time.sleep(0.05)
        # The 401 itself may come after a failed-login delay (0.25 s for the first).
        assert waited <= AUTH_CACHE_SECONDS + 2.0
        assert r.headers.get("www-authenticate", "").lower().startswith("basic ")
        # ... and dave stays out, for reads and writes alike.
        assert d.get("/dav/files/dave/diary.txt").status_code == 401
        assert d.put("/dav/files/dave/diary.txt", content=b"x").status_code == 401
    with srv.client("alice") as a:  # other users are unaffected
        assert a.request("PROPFIND", "/dav/files/alice/", headers={"Depth": "0"}).status_code == 207
    # Disabling kept dave's data: once enabled again, it is all there.
    cli(srv.data_dir, "user", "enable", "dave")
    with srv.client("dave") as d:
        r = d.get("/dav/files/dave/diary.txt")
        assert r.status_code == 200 and r.content == b"dear diary\n"
