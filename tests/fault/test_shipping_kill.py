"""kill -9 during shipping: a server ships to a replica (a folder, and the rclone S3
server) under a write load and is SIGKILLed several times, at random moments. After
the restarts the replica must hold the change log with no gap and no duplicate
(consecutive, non-overlapping segment ranges whose ``prev_last`` chain is unbroken),
and a restore from the replica alone must equal the database, digest for digest."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from safehold.backup import manifest as manifest_mod
from safehold.backup import segment
from safehold.backup.crypto import read_kit
from safehold.backup.replica_client import open_replica
from safehold.store import engine as engine_mod
from safehold.store import replication as rep
from safehold.store.repo import Store
from tests.support.server import Server, add_user, cli

KILLS = int(os.environ.get("SAFEHOLD_SHIP_KILLS") or 4)
SEED = int(os.environ.get("SAFEHOLD_CRASH_SEED") or 20261127)


def _writer(srv: Server, stop: threading.Event, tag: str) -> Callable[[], None]:
    def run() -> None:
        i = 0
        with httpx.Client(base_url=srv.url, auth=("alice", "correct horse battery"),
                          timeout=10.0) as c:
            while not stop.is_set():
                body = (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{tag}-{i}\r\nFN:{tag} {i}\r\n"
                        "END:VCARD\r\n").encode()
                try:
                    c.put(f"/dav/addressbooks/alice/contacts/{tag}-{i % 40}.vcf", content=body)
                    if i % 9 == 0:
                        c.delete(f"/dav/addressbooks/alice/contacts/{tag}-{(i + 3) % 40}.vcf")
                except httpx.TransportError:
                    return  # the server was killed
                i += 1
    return run


def _store(srv: Server) -> Store:
    engine = engine_mod.create(srv.database_url)
    return Store(engine, srv.data_dir / "tmp")


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_kill_during_shipping_loses_and_duplicates_nothing(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(SEED)
    env: dict[str, str] = {}
    if backend == "s3":
        s3 = request.getfixturevalue("s3")
        env = dict(s3.env())
        url = s3.url(f"kill-{time.time_ns()}")
    else:
        url = f"file://{tmp_path / 'offsite'}"
    data = tmp_path / "data"
    kit = tmp_path / "kit.json"
    add_user(data, "alice", env=env)
    cli(data, "backup", "init", "--replica", url, "--kit", str(kit), env=env)
    # Small snapshots too, so that kills also land in the middle of a snapshot.
    env = {**env, "SAFEHOLD_SNAPSHOT_EVERY": "150"}
    srv = Server(data, env=env)
    for round_ in range(KILLS):
        srv.start()
        stop = threading.Event()
        threads = [threading.Thread(target=_writer(srv, stop, f"r{round_}t{t}")) for t in range(3)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(1.0, 3.0))
        srv.kill()
        stop.set()
        for t in threads:
            t.join(timeout=30)
    srv.start()
    try:
        deadline = time.monotonic() + 120
        store = _store(srv)
        while True:
            rows = rep.replica_rows(store)
            if rows and int(rows[0]["shipped_seq"]) == store.last_seq():
                break
            assert time.monotonic() < deadline, f"the backlog did not drain: {rows}"
            time.sleep(0.3)
    finally:
        srv.stop()
    last = store.last_seq()
    assert last > 50, f"too little load to prove anything: {last} changes"

    for k, v in env.items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)  # the replica client reads its credentials there
    key, _ = read_kit(kit)
    replica = open_replica(url)
    man = manifest_mod.read(replica, key)
    assert man is not None and man.high_water == last
    refs = sorted((r for r in (segment.parse_segment(o.path) for o in replica.list("segments/"))
                   if r), key=lambda r: r.first)
    assert refs and refs[0].first == 1 and refs[-1].last == last
    prev = 0
    for ref in refs:
        body = segment.decode(key, ref.name, replica.get(ref.name))
        # SQLite's change log has no holes, so consecutive means first = previous last + 1.
        assert ref.first == prev + 1, f"gap or duplicate before {ref.name} (previous ends at {prev})"
        assert int(body["prev_last"]) == prev, ref.name
        assert [int(c["seq"]) for c in body["tables"]["change"]] == list(range(ref.first, ref.last + 1))
        prev = ref.last

    restored = tmp_path / "restored"
    proc = subprocess.run([sys.executable, "-m", "safehold", "restore", "--from", url, "--kit",
                           str(kit), "--into", str(restored)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = _store(Server(restored))
    assert again.last_seq() == last
    assert rep.digest_at(again, last) == rep.digest_at(store, last)
    store.engine.dispose()
    again.engine.dispose()
