"""`safehold upgrade` (docs/upgrades.md): the gate, one-transaction migrations that
survive SIGKILL at every step, automatic restore after a failing migration, and an
upgrade from the first schema. Real server processes, real databases, real CLI;
the migrations that fail or pause are test-only (tests/support/migrations.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from safehold.core.model import COLLECTION, ITEM, Actor
from safehold.core.users import hash_password
from safehold.store import blobs
from safehold.store import engine as engine_mod
from safehold.store import versioning
from safehold.store.repo import Store
from safehold.upgrade import checks, preserve
from safehold.upgrade.runner import PAUSE_ENV
from tests.support import migrations
from tests.support.server import PASSWORD, Server, cli

BOOK = "/dav/addressbooks/alice/contacts"


def _card(i: int) -> bytes:
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:u-{i}\r\nFN:Person {i}\r\nEND:VCARD\r\n".encode()


def _load(srv: Server) -> dict[str, bytes]:
    """Contacts and files with some history (an edit, a delete)."""
    written: dict[str, bytes] = {}
    with srv.client() as c:
        for i in range(6):
            assert c.put(f"{BOOK}/{i}.vcf", content=_card(i)).status_code == 201
            written[f"{BOOK}/{i}.vcf"] = _card(i)
        assert c.delete(f"{BOOK}/5.vcf").status_code == 204
        written.pop(f"{BOOK}/5.vcf")
        edited = _card(0).replace(b"Person 0", b"Person Zero")
        assert c.put(f"{BOOK}/0.vcf", content=edited).status_code == 204
        written[f"{BOOK}/0.vcf"] = edited
        body = bytes(range(256)) * 40
        assert c.put("/dav/files/alice/blob.bin", content=body).status_code == 201
        written["/dav/files/alice/blob.bin"] = body
    return written


def _state(url: str) -> tuple[str | None, dict[str, Any], dict[str, Any] | None]:
    """(schema revision, invariants, upgrade marker) read from the database."""
    engine = engine_mod.create(url)
    try:
        with engine.connect() as conn:
            rev = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            inv = checks.capture(conn).to_json()
        return (None if rev is None else str(rev)), inv, versioning.marker(engine)
    finally:
        engine.dispose()


def _upgrade(srv: Server, folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return cli(srv.data_dir, "upgrade", *args, check=False,
               env={**srv.env, engine_mod.TEST_MIGRATIONS_ENV: str(folder), **env})


def _assert_serves(srv: Server, written: dict[str, bytes]) -> None:
    assert httpx.get(srv.url + "/readyz").status_code == 200, srv.log()
    with srv.client() as c:
        for path, body in written.items():
            r = c.get(path)
            assert r.status_code == 200 and r.content == body, path


def test_failing_migration_restores_and_server_starts_on_old_schema(
        fresh_server: Server, tmp_path: Path) -> None:
    """A migration that breaks an invariant, then one that raises half-way (after real
    DDL and a table copy): each is rolled back, digests identical, the old server starts."""
    written = _load(fresh_server)
    url = fresh_server.database_url
    rev, before, _ = _state(url)
    assert rev is not None
    folder = tmp_path / "migrations"
    for kind in ("breaks", "raises"):
        for old in folder.glob("t*.py"):
            old.unlink()
        migrations.add(folder, f"t{kind}", kind, down=rev)
        proc = _upgrade(fresh_server, folder, *(["--backup-now"] if kind == "breaks" else []))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "the upgrade failed" in proc.stderr and "Nothing was lost" in proc.stderr
        assert ("fails half-way on purpose" if kind == "raises" else "invariants do not hold") \
            in proc.stderr
        assert "pinned snapshots/" in proc.stdout  # the pre-upgrade snapshot was pinned first
        assert _state(url) == (rev, before, None), kind
    fresh_server.stop()
    fresh_server.start()  # the old code on the old schema: starts as before
    _assert_serves(fresh_server, written)


def _paused(proc: subprocess.Popen[str], log: Path, step: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while f"upgrade paused at {step}" not in log.read_text():
        assert proc.poll() is None, f"upgrade exited {proc.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_sigkill_at_every_step_then_rerun_completes(fresh_server: Server, tmp_path: Path) -> None:
    """Before, during and after the migration (and between commit and the marker's
    removal): SIGKILL, then `safehold upgrade` again. Each step adds one test
    migration on top of the last, so one database goes through every step."""
    srv = fresh_server
    written = _load(srv)
    cli(srv.data_dir, "backup", "now", env=srv.env)
    cli(srv.data_dir, "drill", env=srv.env)
    url = srv.database_url
    _, before, _ = _state(url)
    folder = tmp_path / "migrations"
    steps = ["marked", "during:{rev}", "after:{rev}", "verified", "committed"]
    for i, step in enumerate(steps):
        rev = f"k{i}"
        old = migrations.add(folder, rev)
        pause = step.format(rev=rev)
        log = tmp_path / f"upgrade-{i}.log"
        with open(log, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "safehold", "upgrade", "--data-dir", str(srv.data_dir)],
                stdout=err, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, **srv.env, engine_mod.TEST_MIGRATIONS_ENV: str(folder),
                     PAUSE_ENV: pause})
        try:
            _paused(proc, log, pause)
            # Every process sharing the database sees the marker: readiness and DAV 503.
            ready = httpx.get(srv.url + "/readyz")
            assert ready.status_code == 503 and "upgrade" in ready.text, ready.text
            with srv.client() as c:
                assert c.request("PROPFIND", f"{BOOK}/", headers={"Depth": "1"}).status_code == 503
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        rev_now, inv, marker = _state(url)
        assert rev_now == (rev if step == "committed" else old), (step, rev_now)
        assert inv == before, step  # old schema with old data, or new schema with the same data
        assert marker is not None  # still paused until a run finishes or restores
        rerun = _upgrade(srv, folder)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "interrupted upgrade" in rerun.stdout
        assert _state(url) == (rev, before, None), step
    srv.stop()
    srv.env = {**srv.env, engine_mod.TEST_MIGRATIONS_ENV: str(folder)}
    srv.start()
    _assert_serves(srv, written)


def test_gate_refuses_stale_or_never_drilled_backup(fresh_server: Server, tmp_path: Path) -> None:
    srv = fresh_server
    written = _load(srv)
    folder = tmp_path / "migrations"
    migrations.add(folder, "tgate")
    url = srv.database_url
    rev, before, _ = _state(url)
    cli(srv.data_dir, "backup", "now", env=srv.env)

    never = _upgrade(srv, folder)
    assert never.returncode == 2, never.stdout + never.stderr
    assert "refusing to upgrade: no restore drill has ever run" in never.stderr
    assert "safehold upgrade --backup-now" in never.stderr and "safehold drill" in never.stderr

    dry = _upgrade(srv, folder, "--dry-run")
    assert dry.returncode == 0 and "tgate" in dry.stdout and "gate: CLOSED" in dry.stdout
    assert "nothing was changed" in dry.stdout

    cli(srv.data_dir, "drill", env=srv.env)
    time.sleep(1.2)
    stale = _upgrade(srv, folder, SAFEHOLD_UPGRADE_MAX_DRILL_AGE_SECONDS="1")
    assert stale.returncode == 2, stale.stdout + stale.stderr
    assert "the newest passing restore drill is" in stale.stderr and "(limit 1 s)" in stale.stderr

    srv.stop()  # nothing ships now: a new account's changes stay behind
    cli(srv.data_dir, "user", "add", "carol", "--password-stdin", stdin=PASSWORD + "\n", env=srv.env)
    behind = _upgrade(srv, folder, SAFEHOLD_UPGRADE_MAX_LAG_SECONDS="0")
    assert behind.returncode == 2 and "behind (limit 0 s)" in behind.stderr, behind.stderr
    assert _state(url)[0] == rev  # every refusal changed nothing

    done = _upgrade(srv, folder, "--backup-now", SAFEHOLD_UPGRADE_MAX_LAG_SECONDS="0")
    assert done.returncode == 0, done.stdout + done.stderr
    for line in ("backup 1/2: shipping", "backup 2/2: restore drill", "PASS at change",
                 "gate: open", "invariants hold", "upgraded the schema to tgate"):
        assert line in done.stdout, done.stdout
    assert _state(url)[0] == "tgate"
    srv.env = {**srv.env, engine_mod.TEST_MIGRATIONS_ENV: str(folder)}
    srv.start()
    _assert_serves(srv, written)


def _populate_first_schema(url: str, tmp: Path) -> dict[str, bytes]:
    """A database at revision 0001 holding a user, folders and files with history,
    written by the store at that revision (no calendar index existed yet)."""
    engine = engine_mod.create(url)
    # Bodies in blob_chunk, as at 0001: the blob row's inline column is revision 0009.
    inline = pytest.MonkeyPatch()
    inline.setattr(blobs, "INLINE_MAX", -1)
    try:
        command.upgrade(engine_mod.alembic_config(engine), "0001")
        store = Store(engine, tmp)
        actor = Actor(None, "fixture", "r1")
        alice = store.add_principal("alice", hash_password(PASSWORD), actor, homes=("files",))
        written: dict[str, bytes] = {}

        def tx(conn: sa.engine.Connection) -> None:
            def write(path: str, kind: str, body: bytes | None) -> None:
                digest = None if body is None else blobs.store_bytes_in(conn, body)
                seq = store._append_change(conn, "put" if body is not None else "mkcol",
                                           alice.id, path, actor)
                store._write_version(conn, seq, "put" if body is not None else "mkcol",
                                     path=path, owner_id=alice.id, kind=kind, blob_hash=digest,
                                     size=len(body or b""), content_type=None, props={})
            for d in range(3):
                write(f"files/alice/d{d}", COLLECTION, None)
                for i in range(4):
                    write(f"files/alice/d{d}/f{i}.txt", ITEM, f"first {d}/{i}\n".encode())
                    written[f"/dav/files/alice/d{d}/f{i}.txt"] = f"first {d}/{i}\n".encode()
            write("files/alice/d0/f0.txt", ITEM, b"edited\n")  # a second version
            written["/dav/files/alice/d0/f0.txt"] = b"edited\n"
        store._write(tx)
        return written
    finally:
        inline.undo()
        engine.dispose()


def test_upgrade_from_first_schema_keeps_every_item(database_url: str, tmp_path: Path) -> None:
    written = _populate_first_schema(database_url, tmp_path / "tmp")
    rev, before, _ = _state(database_url)
    assert rev == "0001"
    srv = Server(tmp_path / "data", env={"SAFEHOLD_DATABASE_URL": database_url})
    refused = _upgrade(srv, tmp_path / "none")
    assert refused.returncode == 2 and "predates replication" in refused.stderr, refused.stderr
    proc = _upgrade(srv, tmp_path / "none", "--override-gate", "fixture at 0001, before backups")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "THE UPGRADE GATE IS OVERRIDDEN" in proc.stderr and "fixture at 0001" in proc.stderr
    assert "invariants hold" in proc.stdout
    head = migrations.current_head()
    engine = engine_mod.create(database_url)
    try:
        with engine.connect() as conn:
            override = versioning.get_json(conn, versioning.OVERRIDE)
            last = versioning.get_json(conn, versioning.LAST)
            recorded = versioning.get(conn, versioning.SCHEMA_REVISION)
    finally:
        engine.dispose()
    assert override is not None and override["reason"] == "fixture at 0001, before backups"
    assert last is not None and last["result"] == "upgraded" and last["from"] == "0001"
    assert recorded == head
    assert _state(database_url) == (head, before, None)
    srv.start()
    try:
        _assert_serves(srv, written)
    finally:
        srv.stop()


def test_local_copy_restores_every_page(tmp_path: Path) -> None:
    """The restore path for a rollback that did not bring the old state back: the
    SQLite copy taken before the upgrade is written back page by page."""
    url = f"sqlite:///{tmp_path / 'safehold.db'}"
    written = _populate_first_schema(url, tmp_path / "tmp")
    engine = engine_mod.create(url)
    try:
        store = Store(engine, tmp_path / "tmp")
        _, before, _ = _state(url)
        copy = preserve.local_copy(store, tmp_path, "0001")
        assert copy is not None and copy.parent == tmp_path.resolve() / "upgrades"
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM resource WHERE kind = 'item'"))
        assert _state(url)[1] != before
        preserve.restore_local_copy(store, copy)
        assert _state(url)[1] == before
        assert json.dumps(before["collections"]).count("files/alice/d") == 3
        assert len(written) == 12
    finally:
        engine.dispose()
