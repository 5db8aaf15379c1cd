"""Replication, restore from the replica alone, verification and drills, with the
real server and the real CLI, on every test database (a replica of a PostgreSQL
store restores into a new SQLite data directory: the replica format is the same)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import DATABASES
from tests.conftest import _env_for as env_for
from tests.support.server import PASSWORD, Server, add_user, cli, run

BOOK = "/dav/addressbooks/{u}/contacts"


def card(u: str, i: int) -> bytes:
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{u}-{i}\r\nFN:Person {i} of {u} "
            f"needle-{u}-{i}\r\nEND:VCARD\r\n").encode()


def _status(srv: Server) -> dict[str, object]:
    proc = cli(srv.data_dir, "status", "--json", env=srv.env, check=False)
    return dict(json.loads(proc.stdout))


def _wait_shipped(srv: Server, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        st = _status(srv)
        reps = st["replicas"]
        assert isinstance(reps, list)
        if reps and all(r["shipped_seq"] == st["last_seq"] for r in reps):
            return st
        assert time.monotonic() < deadline, f"replication did not catch up: {st}"
        time.sleep(0.2)


def _load(srv: Server, users: list[str], n: int) -> dict[str, bytes]:
    written: dict[str, bytes] = {}
    for u in users:
        with srv.client(u) as c:
            for i in range(n):
                path = f"{BOOK.format(u=u)}/{i}.vcf"
                assert c.put(path, content=card(u, i)).status_code == 201
                written[path] = card(u, i)
            body = bytes(range(256)) * 50 + u.encode()
            assert c.put(f"/dav/files/{u}/blob.bin", content=body).status_code == 201
            written[f"/dav/files/{u}/blob.bin"] = body
            for i in range(0, n, 7):  # some history: edits and deletes
                path = f"{BOOK.format(u=u)}/{i}.vcf"
                assert c.delete(path).status_code == 204
                written.pop(path)
    return written


@pytest.fixture(params=DATABASES)
def replicated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A server with the default configuration: replica and kit in the data dir."""
    data = tmp_path / "data"
    env = env_for(request.param, request)
    add_user(data, "alice", env=env)
    add_user(data, "bob", env=env)
    srv = Server(data, env=env).start()
    yield srv
    srv.stop()


def test_default_replica_is_amber_and_catches_up(replicated: Server) -> None:
    _load(replicated, ["alice"], 20)
    st = _wait_shipped(replicated)
    assert st["verdict"] == "amber"
    assert any("same disk" in m for m in st["messages"])  # type: ignore[union-attr]
    assert (replicated.data_dir / "recovery-kit.json").exists()
    with httpx.Client(base_url=replicated.url) as anon:
        text = anon.get("/metrics").text
    assert "safehold_replication_lag_seconds" in text and "safehold_last_committed_seq" in text


def test_disaster_restore_from_the_replica_alone(replicated: Server, tmp_path: Path) -> None:
    written = _load(replicated, ["alice", "bob"], 60)
    with replicated.client() as c:
        r = c.request("REPORT", "/dav/addressbooks/alice/contacts/", headers={"Depth": "0"},
                      content=b'<D:sync-collection xmlns:D="DAV:"><D:sync-token/><D:sync-level>1'
                              b"</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>")
        old_token = r.text.split("<D:sync-token>")[1].split("<")[0]
        c.put(f"{BOOK.format(u='alice')}/late.vcf", content=card("alice", 999))
        written[f"{BOOK.format(u='alice')}/late.vcf"] = card("alice", 999)
    _wait_shipped(replicated)
    history_before = replicated.changes()
    replicated.stop()
    kit = tmp_path / "kit.json"
    shutil.copy(replicated.data_dir / "recovery-kit.json", kit)
    replica = tmp_path / "offsite"
    shutil.copytree(replicated.data_dir / "replica", replica)
    shutil.rmtree(replicated.data_dir)  # the disaster

    new_dir = tmp_path / "rebuilt"
    out = run("restore", "--from", f"file://{replica}", "--kit", str(kit), "--into", str(new_dir))
    assert "restored seq" in out.stdout
    cli(new_dir, "user", "list")
    rebuilt = Server(new_dir).start()  # SQLite, whatever the original ran on
    try:
        assert rebuilt.changes() == history_before
        for path, body in written.items():
            user = path.split("/")[3]
            with rebuilt.client(user) as c:
                got = c.get(path)
                assert got.status_code == 200 and got.content == body, path
        with rebuilt.client() as c:
            r = c.request("REPORT", "/dav/addressbooks/alice/contacts/", headers={"Depth": "0"},
                          content=(f'<D:sync-collection xmlns:D="DAV:"><D:sync-token>{old_token}'
                                   "</D:sync-token><D:sync-level>1</D:sync-level><D:prop>"
                                   "<D:getetag/></D:prop></D:sync-collection>").encode())
            assert r.status_code == 207, r.text  # same lineage: old tokens stay valid
            assert "late.vcf" in r.text
        drill = cli(new_dir, "drill", check=False)
        assert drill.returncode == 0, drill.stdout + drill.stderr
    finally:
        rebuilt.stop()


def test_replica_holds_no_plaintext(replicated: Server) -> None:
    _load(replicated, ["alice"], 30)
    _wait_shipped(replicated)
    for f in (replicated.data_dir / "replica").rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert b"needle-" not in data and b"BEGIN:VCARD" not in data, f


def test_verify_and_drill_name_damaged_objects(replicated: Server) -> None:
    _load(replicated, ["alice"], 30)
    _wait_shipped(replicated)
    with replicated.client("alice") as c:
        for i in range(3):  # one shipped round each: at least four segments to damage
            assert c.put(f"{BOOK.format(u='alice')}/extra-{i}.vcf",
                         content=card("alice", 100 + i)).status_code == 201
            _wait_shipped(replicated)
    env = replicated.env
    cli(replicated.data_dir, "backup", "now", env=env)
    replica = replicated.data_dir / "replica"
    ok = cli(replicated.data_dir, "backup", "verify", env=env)
    assert "authenticates" in ok.stdout
    segments = sorted((replica / "segments").iterdir())
    flipped, truncated, missing = segments[1], segments[2], segments[3]
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:20])
    missing.unlink()
    bad = cli(replicated.data_dir, "backup", "verify", check=False, env=env)
    assert bad.returncode == 1
    assert flipped.name in bad.stderr and truncated.name in bad.stderr
    drill = cli(replicated.data_dir, "drill", check=False, env=env)
    assert drill.returncode == 1 and "FAIL" in drill.stdout


def _pg_admin(url: str, sql: str) -> None:
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(sql)


def test_regression_is_refused_with_503(replicated: Server, tmp_path: Path) -> None:
    url = replicated.env.get("SAFEHOLD_DATABASE_URL")
    live = url.rsplit("/", 1)[1] if url else ""
    _load(replicated, ["alice"], 5)
    _wait_shipped(replicated)
    replicated.stop()
    old = tmp_path / "old-db"
    old.mkdir()
    if url:  # a copy of the PostgreSQL database, as a file-level backup would have it
        _pg_admin(url, f'CREATE DATABASE "{live}_old" TEMPLATE "{live}"')
    for f in replicated.data_dir.glob("safehold.db*"):
        shutil.copy(f, old / f.name)
    replicated.start()
    with replicated.client() as c:
        assert c.put(f"{BOOK.format(u='alice')}/new.vcf", content=card("alice", 500)).status_code == 201
    _wait_shipped(replicated)
    replicated.stop()
    if url:  # the server "woke up older"
        _pg_admin(url, f'DROP DATABASE "{live}"')
        _pg_admin(url, f'ALTER DATABASE "{live}_old" RENAME TO "{live}"')
    for f in replicated.data_dir.glob("safehold.db*"):
        f.unlink()
    for f in old.iterdir():
        shutil.copy(f, replicated.data_dir / f.name)  # the server "woke up older"
    replicated.start()
    with replicated.client() as c:
        r = c.request("PROPFIND", f"{BOOK.format(u='alice')}/", headers={"Depth": "1"})
        assert r.status_code == 503 and "safehold restore" in r.text
        assert "--into NEW_DIR" in r.text and "--database-url postgresql://" in r.text
    with httpx.Client(base_url=replicated.url) as anon:
        assert anon.get("/readyz").status_code == 503


@pytest.mark.parametrize("database", DATABASES)
def test_unreachable_replica_then_drain_and_sync_mode(database: str, tmp_path: Path,
                                                      request: pytest.FixtureRequest) -> None:
    env = env_for(database, request)
    data = tmp_path / "data"
    add_user(data, "alice", env=env)
    replica = tmp_path / "remote" / "replica"
    cli(data, "backup", "init", "--replica", f"file://{replica}", "--kit", str(tmp_path / "kit.json"),
        env=env)
    srv = Server(data, env=env).start()
    try:
        _load(srv, ["alice"], 5)
        _wait_shipped(srv)
        away = tmp_path / "remote-away"
        (tmp_path / "remote").rename(away)
        (tmp_path / "remote").write_text("not a directory")  # the replica is unreachable
        with srv.client() as c:
            for i in range(10):
                assert c.put(f"{BOOK.format(u='alice')}/offline{i}.vcf",
                             content=card("alice", 100 + i)).status_code == 201
        time.sleep(2)
        st = _status(srv)
        assert st["verdict"] == "red"
        rep = st["replicas"][0]  # type: ignore[index]
        assert rep["shipped_seq"] < st["last_seq"] and rep["last_error"]
        (tmp_path / "remote").unlink()
        away.rename(tmp_path / "remote")
        _wait_shipped(srv, timeout=60)
        assert cli(data, "backup", "verify", env=env).returncode == 0
    finally:
        srv.stop()
    sync = Server(data, env={**env, "SAFEHOLD_REPLICATION_MODE": "sync"}).start()
    try:
        with sync.client() as c:
            assert c.put(f"{BOOK.format(u='alice')}/synced.vcf", content=card("alice", 300)
                         ).status_code == 201
        (tmp_path / "remote").rename(tmp_path / "remote-away")
        (tmp_path / "remote").write_text("down")
        with sync.client() as c:
            statuses = [c.put(f"{BOOK.format(u='alice')}/down{i}.vcf",
                              content=card("alice", 400 + i)).status_code for i in range(3)]
        assert 503 in statuses and all(s in (201, 503) for s in statuses)
    finally:
        sync.stop()
    _ = PASSWORD


def test_s3_replica_ships_and_restores(s3: object, tmp_path: Path) -> None:
    """The same shipping and restore against a real S3 endpoint (rclone serve s3)."""
    env = dict(s3.env())  # type: ignore[attr-defined]
    url = s3.url(f"disaster-{time.time_ns()}")  # type: ignore[attr-defined]
    data = tmp_path / "data"
    add_user(data, "alice", env=env)
    cli(data, "backup", "init", "--replica", url, "--kit", str(tmp_path / "kit.json"), env=env)
    srv = Server(data, env=env).start()
    try:
        written = _load(srv, ["alice"], 25)
        deadline = time.monotonic() + 60
        while True:
            st = json.loads(cli(data, "status", "--json", env=env, check=False).stdout)
            if st["replicas"][0]["shipped_seq"] == st["last_seq"]:
                break
            assert time.monotonic() < deadline, st
            time.sleep(0.3)
        assert st["verdict"] in ("green", "amber")
        assert not any("same disk" in m for m in st["messages"])
        assert "authenticates" in cli(data, "backup", "verify", env=env).stdout
    finally:
        srv.stop()
    new_dir = tmp_path / "rebuilt"
    import os
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "safehold", "restore", "--from", url, "--kit",
                           str(tmp_path / "kit.json"), "--into", str(new_dir)],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rebuilt = Server(new_dir, env=env).start()
    try:
        with rebuilt.client() as c:
            for path, body in written.items():
                assert c.get(path).content == body, path
    finally:
        rebuilt.stop()
