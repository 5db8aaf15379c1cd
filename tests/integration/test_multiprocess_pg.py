"""Several safehold processes on one PostgreSQL (issue: scale-out): concurrent
writers to the same collections, sync clients that must see every change exactly
once, the shipping process killed mid-load, and a restore that equals the database."""

from __future__ import annotations

import random
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.support.server import Server, add_user, cli, run

pytestmark = pytest.mark.skipif("postgresql" not in __import__("tests.conftest").conftest.DATABASES,
                                reason="SAFEHOLD_TEST_DATABASES excludes postgresql")

BOOK = "/dav/addressbooks/alice/contacts"
SYNC = ('<D:sync-collection xmlns:D="DAV:"><D:sync-token>{}</D:sync-token>'
        "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>")


def card(i: int, rev: int) -> bytes:
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:m{i}\r\nFN:M {i} r{rev}\r\nEND:VCARD\r\n".encode()


class SyncClient:
    """Follows the collection with sync-collection through a given server and keeps
    the etag of every member it was told about."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.token = ""
        self.etags: dict[str, str] = {}
        self.reported: list[tuple[str, str | None]] = []  # every (href, etag) ever reported

    def sync(self) -> None:
        with self.server.client() as c:
            r = c.request("REPORT", f"{BOOK}/", headers={"Depth": "0"},
                          content=SYNC.format(self.token).encode())
        assert r.status_code == 207, r.text
        for resp in r.text.split("<D:response>")[1:]:
            href = resp.split("<D:href>")[1].split("</D:href>")[0]
            etag = re.search(r"<D:getetag>([^<]+)</D:getetag>", resp)
            if self.token:
                self.reported.append((href, etag.group(1) if etag else None))
            if etag:
                self.etags[href] = etag.group(1)
            else:
                self.etags.pop(href, None)
        self.token = r.text.split("<D:sync-token>")[1].split("<")[0]


def test_three_processes_one_database(postgres: object, tmp_path: Path) -> None:
    url = postgres.new_database()  # type: ignore[attr-defined]
    env = {"SAFEHOLD_DATABASE_URL": url}
    dirs = [tmp_path / f"node{i}" for i in range(3)]
    add_user(dirs[0], "alice", env=env)
    servers = [Server(dirs[0], env=env).start()]
    for d in dirs[1:]:
        d.mkdir(parents=True)
        shutil.copy(dirs[0] / "backup.key", d / "backup.key")  # every node can ship
        servers.append(Server(d, env=env).start())
    clients = [SyncClient(s) for s in servers]
    for cl in clients:
        cl.sync()
    errors: list[str] = []
    stop = time.monotonic() + 8

    def writer(n: int) -> None:
        rng = random.Random(n)
        rev = 0
        while time.monotonic() < stop:
            srv = servers[rng.randrange(len(servers))]
            if srv.proc is None or srv.proc.poll() is not None:
                continue
            i = rng.randrange(60)
            rev += 1
            try:
                with srv.client() as c:
                    if rng.random() < 0.2:
                        c.delete(f"{BOOK}/m{i}.vcf")
                    else:
                        r = c.put(f"{BOOK}/m{i}.vcf", content=card(i, n * 10000 + rev))
                        if r.status_code not in (201, 204):
                            errors.append(f"{r.status_code} {r.text[:200]}")
            except Exception as exc:  # noqa: BLE001 - a killed node drops connections
                if srv is not servers[0]:
                    errors.append(repr(exc))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    time.sleep(3)
    servers[0].kill()  # a shipping node dies mid-load (SIGKILL)
    for _ in range(4):
        for cl in clients[1:]:
            cl.sync()
        time.sleep(0.5)
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    for cl in clients[1:]:
        cl.sync()
    with servers[1].client() as c:
        r = c.request("PROPFIND", f"{BOOK}/", headers={"Depth": "1"},
                      content=b'<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>')
    truth = {}
    for resp in r.text.split("<D:response>")[2:]:
        href = resp.split("<D:href>")[1].split("</D:href>")[0]
        truth[href] = re.search(r"<D:getetag>([^<]+)</D:getetag>", resp).group(1)  # type: ignore[union-attr]
    for cl in clients[1:]:
        assert cl.etags == truth  # every change seen, none missed, deletions applied
        # Not yet asserted: "exactly once". A probe saw one version reported twice in
        # 51 under this load (a harmless re-download, but not the promised once);
        # the cause is not found yet, see the issue note.

    # The surviving nodes ship what the dead one did not; a restore equals the database.
    deadline = time.monotonic() + 60
    while True:
        st = __import__("json").loads(cli(dirs[1], "status", "--json", env=env, check=False).stdout)
        if st["replicas"] and st["replicas"][0]["shipped_seq"] == st["last_seq"]:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.5)
    assert cli(dirs[1], "backup", "verify", env=env).returncode == 0
    restored = tmp_path / "restored"
    run("restore", "--from", st["replicas"][0]["url"], "--kit", str(dirs[0] / "recovery-kit.json"),
        "--into", str(restored))
    from safehold.store import engine as engine_mod
    from safehold.store import replication as rep
    from safehold.store.repo import Store
    live_engine = engine_mod.create(url)
    back_engine = engine_mod.create(f"sqlite:///{restored / 'safehold.db'}")
    try:
        live, back = Store(live_engine, tmp_path / "t1"), Store(back_engine, tmp_path / "t2")
        seq = live.last_seq()
        assert back.last_seq() == seq
        assert rep.digest_at(back, seq) == rep.digest_at(live, seq)
    finally:
        live_engine.dispose()
        back_engine.dispose()
        for s in servers:
            s.stop()
