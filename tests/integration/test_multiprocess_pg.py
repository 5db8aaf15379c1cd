"""Several safehold processes on one PostgreSQL (issue 7, scale-out): concurrent
writers to the same collection through three processes, sync clients that must see
every change exactly once, the process that is shipping killed mid-load, another
taking over, and a restore from the replica that equals the database."""

from __future__ import annotations

import json
import random
import re
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.support.server import Server, add_user, cli, run

pytestmark = pytest.mark.skipif("postgresql" not in __import__("tests.conftest").conftest.DATABASES,
                                reason="SAFEHOLD_TEST_DATABASES excludes postgresql")

BOOK = "/dav/addressbooks/alice/contacts"
SYNC = ('<D:sync-collection xmlns:D="DAV:"><D:sync-token>{}</D:sync-token>'
        "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop>{}</D:sync-collection>")
MIN_WRITES = 60  # acknowledged PUT/DELETEs the load goes on for (see _scenario)
SHIPPER_LOCK_KEY = 0x5AFE0002  # safehold.store.repo.SHIPPER_LOCK_KEY


def card(i: int, rev: int) -> bytes:
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:m{i}\r\nFN:M {i} r{rev}\r\nEND:VCARD\r\n".encode()


def token_seq(token: str) -> int:
    return int(token.rpartition(":")[2])


@dataclass
class Window:
    """One incremental sync: what was reported for the changes after ``old``, up to
    the new token ``new`` (href -> etag, or None for a deletion)."""

    old: int
    new: int
    reported: list[tuple[str, str | None]]
    truncated: bool


@dataclass
class SyncClient:
    """Follows the collection with sync-collection through one server, as DAVx5 or
    Thunderbird would: keeps the etag of every member it was told about."""

    server: Server
    limit: int | None = None  # DAV:nresults, to exercise truncated answers
    token: str = ""
    etags: dict[str, str] = field(default_factory=dict)
    windows: list[Window] = field(default_factory=list)

    def sync(self) -> None:
        limit = f"<D:limit><D:nresults>{self.limit}</D:nresults></D:limit>" if self.limit else ""
        with self.server.client() as c:
            r = c.request("REPORT", f"{BOOK}/", headers={"Depth": "0"},
                          content=SYNC.format(self.token, limit).encode())
        assert r.status_code == 207, r.text
        reported: list[tuple[str, str | None]] = []
        truncated = False
        for resp in r.text.split("<D:response>")[1:]:
            href = resp.split("<D:href>")[1].split("</D:href>")[0]
            if href.rstrip("/") == BOOK:  # RFC 6578 §3.6: 507, more to come
                truncated = True
                continue
            found = re.search(r"<D:getetag>([^<]+)</D:getetag>", resp)
            reported.append((href, found.group(1) if found else None))
        new = r.text.split("<D:sync-token>")[1].split("<")[0]
        if self.token:
            self.windows.append(Window(token_seq(self.token), token_seq(new), reported, truncated))
        for href, tag in reported:
            if tag:
                self.etags[href] = tag
            else:
                self.etags.pop(href, None)
        self.token = new


def _shipping_node(conn: sa.Connection) -> str | None:
    """The application_name (PGAPPNAME) of the process holding the shipper lock."""
    return conn.execute(sa.text(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = :lo AND l.classid = 0"
    ), {"lo": SHIPPER_LOCK_KEY}).scalar()


def _member_versions(url: str) -> list[tuple[int, str, bool, str]]:
    """(seq, href, deleted, etag) of every version of every member, in commit order."""
    engine = sa.create_engine("postgresql+psycopg://" + url.split("://", 1)[1])
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT seq, path, deleted, etag FROM version WHERE parent = :p ORDER BY seq, id"),
                {"p": BOOK[len("/dav/"):]}).all()
        return [(int(r[0]), "/dav/" + r[1], bool(r[2]), str(r[3])) for r in rows]
    finally:
        engine.dispose()


def _check_exactly_once(name: str, cl: SyncClient, versions: list[tuple[int, str, bool, str]],
                        truth: dict[str, str] | None) -> int:
    """Every version a client was told about, it was told about once; every window
    reported exactly the members whose versions fall in it, each at its latest state
    in the window (RFC 6578 §3.5), so nothing was missed either. Returns the number of
    versions the client was told about."""
    seen = Counter(etag for w in cl.windows for _, etag in w.reported if etag)
    twice = {etag: n for etag, n in seen.items() if n > 1}
    assert not twice, f"{name}: versions reported more than once: {twice}"
    for prev, w in zip(cl.windows, cl.windows[1:], strict=False):
        assert w.old == prev.new, f"{name}: a sync did not start from the previous token"
    for w in cl.windows:
        hrefs = [h for h, _ in w.reported]
        assert len(hrefs) == len(set(hrefs)), f"{name}: a member reported twice in one answer: {w}"
        if cl.limit is not None:
            # One member per change here, so an answer never exceeds the limit. A
            # truncated answer leaves out members whose latest change is above the new
            # token, so only what it reported is compared: each at its state as of the
            # new token, changed after the old one.
            assert len(w.reported) <= cl.limit, f"{name}: more than DAV:nresults: {w}"
            for href, tag in w.reported:
                seq, state = max((v[0], None if v[2] else v[3]) for v in versions
                                 if v[1] == href and v[0] <= w.new)
                assert seq > w.old and state == tag, \
                    f"{name}: the sync from {w.old} to {w.new} reported {href} as {tag}"
            continue
        expected: dict[str, str | None] = {}
        for seq, href, deleted, etag in versions:
            if w.old < seq <= w.new:
                expected[href] = None if deleted else etag
        assert dict(w.reported) == expected, (
            f"{name}: the sync from {w.old} to {w.new} reported {sorted(w.reported)}, the change "
            f"log says {sorted(expected.items())}")
    if truth is not None:
        assert cl.etags == truth, f"{name}: the client's copy differs from the server's listing"
    return sum(seen.values())


def test_three_processes_one_database(postgres: object, tmp_path: Path) -> None:
    url = postgres.new_database()  # type: ignore[attr-defined]
    env = {"SAFEHOLD_DATABASE_URL": url}
    dirs = [tmp_path / f"node{i}" for i in range(3)]
    add_user(dirs[0], "alice", env=env)
    servers: list[Server] = []
    try:
        for i, d in enumerate(dirs):
            if i:
                d.mkdir(parents=True)
                shutil.copy(dirs[0] / "backup.key", d / "backup.key")  # every node can ship
            # libpq names each process's sessions, so the test can tell who holds the lock.
            servers.append(Server(d, env={**env, "PGAPPNAME": f"node{i}"}).start())
        _scenario(servers, url, tmp_path)
    finally:
        for s in servers:
            s.stop()


def _scenario(servers: list[Server], url: str, tmp_path: Path) -> None:
    env = {"SAFEHOLD_DATABASE_URL": url}
    clients = [SyncClient(servers[0]), SyncClient(servers[1]), SyncClient(servers[2], limit=7)]
    for cl in clients:
        cl.sync()
    errors: list[str] = []
    killed: list[Server] = []
    acked: list[int] = []  # one entry per acknowledged write
    stop = threading.Event()

    def writer(n: int) -> None:
        rng = random.Random(n)
        rev = 0
        while not stop.is_set():
            srv = servers[rng.randrange(len(servers))]
            if srv in killed:
                continue
            i = rng.randrange(60)
            rev += 1
            try:
                with srv.client() as c:
                    if rng.random() < 0.2:
                        r = c.delete(f"{BOOK}/m{i}.vcf")
                        if r.status_code not in (204, 404):
                            errors.append(f"DELETE {r.status_code} {r.text[:200]}")
                    else:
                        r = c.put(f"{BOOK}/m{i}.vcf", content=card(i, n * 10000 + rev))
                        if r.status_code not in (201, 204):
                            errors.append(f"PUT {r.status_code} {r.text[:200]}")
                    if r.status_code in (201, 204):
                        acked.append(1)
            except httpx.TransportError as exc:
                if srv not in killed:  # a killed node drops its connections
                    errors.append(repr(exc))

    def follower(cl: SyncClient) -> None:
        while not stop.is_set():
            if cl.server in killed:
                return
            try:
                cl.sync()
            except httpx.TransportError as exc:
                if cl.server not in killed:
                    errors.append(f"sync: {exc!r}")
                return
            time.sleep(0.1)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    threads += [threading.Thread(target=follower, args=(cl,)) for cl in clients]
    for t in threads:
        t.start()
    try:
        time.sleep(2.0)
        holder, shipped_at_kill = _kill_the_shipper(servers, killed, url)
        killed_at = time.monotonic()
        survivor = next(s for s in servers if s not in killed)
        # Another process ships what came after, while the load goes on.
        taken_over = None
        while taken_over is None and time.monotonic() < killed_at + 20:
            if _shipped_seq(url) > shipped_at_kill:
                taken_over = time.monotonic() - killed_at
            time.sleep(0.1)
        # Load on for a while after the take-over; a busy machine writes slowly, so
        # until enough writes were acknowledged (bounded, on a very slow machine).
        more = time.monotonic() + 2.0
        while time.monotonic() < more or (len(acked) < MIN_WRITES
                                          and time.monotonic() < killed_at + 40):
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:5]
    assert taken_over is not None and taken_over < 10, \
        f"no surviving process shipped past seq {shipped_at_kill} within 20 s of the shipper's death"
    followers = [cl for cl in clients if cl.server not in killed]
    for cl in followers:
        cl.sync()
        while cl.windows[-1].truncated:
            cl.sync()
    with survivor.client() as c:
        r = c.request("PROPFIND", f"{BOOK}/", headers={"Depth": "1"},
                      content=b'<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>')
    truth = {}
    for resp in r.text.split("<D:response>")[2:]:
        href = resp.split("<D:href>")[1].split("</D:href>")[0]
        truth[href] = re.search(r"<D:getetag>([^<]+)</D:getetag>", resp).group(1)  # type: ignore[union-attr]
    versions = _member_versions(url)
    told = {}
    for i, cl in enumerate(clients):
        if cl in followers:
            told[f"client{i}"] = _check_exactly_once(f"client{i}", cl, versions, truth)
        else:  # followed the killed node: exactly once up to its last answer
            whole = not cl.windows or not cl.windows[-1].truncated
            _check_exactly_once(f"client{i}", cl, versions,
                                _state_at(versions, token_seq(cl.token)) if whole else None)
    print(f"\n{len(versions)} member versions; {holder} killed while shipping, another "
          f"shipped {taken_over:.1f} s later; versions told per client: {told}; "
          f"syncs: {[len(cl.windows) for cl in clients]}")
    assert len(acked) >= MIN_WRITES // 2 and all(len(cl.windows) >= 5 for cl in followers), \
        "the load hardly wrote or the clients hardly synced: the test tested little"

    # The survivors shipped what the dead one did not; the replica has no gap and no
    # overlap, and a restore from it equals the database.
    deadline = time.monotonic() + 60
    while True:
        st = json.loads(cli(survivor.data_dir, "status", "--json", env=env, check=False).stdout)
        if st["replicas"] and st["replicas"][0]["shipped_seq"] == st["last_seq"]:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.5)
    from safehold.backup import segment
    replica_dir = servers[0].data_dir / "replica"
    refs = sorted((r for r in (segment.parse_segment(f"segments/{p.name}")
                               for p in (replica_dir / "segments").iterdir()) if r),
                  key=lambda r: r.first)
    for a, b in zip(refs, refs[1:], strict=False):
        assert b.first > a.last, f"overlapping segments (a duplicate): {a.name} {b.name}"
    assert cli(survivor.data_dir, "backup", "verify", env=env).returncode == 0
    restored = tmp_path / "restored"
    run("restore", "--from", st["replicas"][0]["url"], "--kit",
        str(servers[0].data_dir / "recovery-kit.json"), "--into", str(restored))
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


def _kill_the_shipper(servers: list[Server], killed: list[Server], url: str) -> tuple[str, int]:
    """SIGKILL the process that is shipping right now (it holds the shipper lock);
    return its name and the replica's shipped seq just after."""
    admin = sa.create_engine("postgresql+psycopg://" + url.split("://", 1)[1])
    try:
        deadline = time.monotonic() + 15
        with admin.connect() as conn:
            while (holder := _shipping_node(conn)) is None:
                conn.rollback()
                assert time.monotonic() < deadline, "no process took the shipping turn under load"
                time.sleep(0.002)
            victim = servers[int(holder.removeprefix("node"))]
            killed.append(victim)
            victim.kill()
        return holder, _shipped_seq(url)
    finally:
        admin.dispose()


def _shipped_seq(url: str) -> int:
    """What the replica holds, as the shipping processes record it in the database."""
    engine = sa.create_engine("postgresql+psycopg://" + url.split("://", 1)[1],
                              poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT max(shipped_seq) FROM replica_state")).scalar()
                       or 0)
    finally:
        engine.dispose()


def _state_at(versions: list[tuple[int, str, bool, str]], seq: int) -> dict[str, str]:
    state: dict[str, str] = {}
    for s, href, deleted, etag in versions:
        if s <= seq:
            if deleted:
                state.pop(href, None)
            else:
                state[href] = etag
    return state
