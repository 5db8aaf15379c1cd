"""History retention that dropped old content before a replica first received it (a
server pruned, then shipped to a new replica) leaves version rows in the replica's
first segments whose bodies are nowhere: the shipper ships every body the database
holds, and those were gone. Only the replica's first snapshot lists them as pruned.
A restore to a point before that snapshot (or to any point, before the replica has
one) used to fail half-way ("no blob description ... in the replica"). Now a point where every item still has its content restores,
with those versions recorded as pruned, as they were on the server; a point where an
item's content is gone is refused before anything is written, naming the earliest
point from which on every point restores."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import sqlalchemy as sa

from safehold.backup.crypto import Key
from safehold.backup.replica_client import open_replica
from safehold.backup.shipper import Shipper
from safehold.store import engine as engine_mod
from safehold.store.repo import Store
from tests.conftest import DATABASES
from tests.conftest import _env_for as env_for
from tests.support.server import Server, add_user, cli, run

BOOK = "/dav/addressbooks/alice/contacts"


def card(uid: str, tag: str) -> bytes:
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{tag}\r\nEND:VCARD\r\n".encode()


@pytest.mark.parametrize("database", DATABASES)
def test_restore_before_the_first_snapshot_after_early_pruning(
        database: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    data = tmp_path / "data"
    env = env_for(database, request)
    add_user(data, "alice", env=env)
    srv = Server(data, env=env).start()
    try:
        with srv.client("alice") as c:
            for tag in ("v1", "v2", "v3"):  # the same day: v1 and v2 are prunable
                assert c.put(f"{BOOK}/a.vcf", content=card("a", tag)).status_code in (201, 204)
            assert c.put(f"{BOOK}/b.vcf", content=card("b", "b")).status_code == 201
    finally:
        srv.stop()
    puts = [seq for seq, op, path in srv.changes() if path.endswith("/a.vcf")]
    assert len(puts) == 3
    s1, s3 = puts[0], puts[2]
    pruned = cli(data, "prune", env={**env, "SAFEHOLD_RETENTION_DAYS": "0"})
    assert "pruned 2 version(s)" in pruned.stdout, pruned.stdout

    url = f"file://{tmp_path / 'offsite'}"

    def restore(seq: int, into: Path) -> tuple[list[str], dict[str, str]]:
        args = ["restore", "--from", url, "--kit", str(data / "recovery-kit.json"),
                "--into", str(into), "--seq", str(seq)]
        target_env: dict[str, str] = {}
        if database == "postgresql":
            db = request.getfixturevalue("postgres").new_database()
            args += ["--database-url", db]
            target_env = {"SAFEHOLD_DATABASE_URL": db}
        return args, target_env

    # Only now a new replica: its segments carry v1 and v2 without their bodies.
    store = Store(engine_mod.create(srv.database_url), data / "tmp")
    try:
        key = Key(base64.b64decode((data / "backup.key").read_text()))
        shipper = Shipper(store, key, [open_replica(url)], store.lineage())
        shipper.ship_all()  # segments only: no snapshot lists the pruned versions yet
        last = store.last_seq()
        assert s3 < last

        # The newest point, with no snapshot: every item has its content.
        args, _ = restore(last, tmp_path / "newest")
        assert f"restored seq {last}" in run(*args).stdout
        shipper.ship_all(snapshot=True)
    finally:
        store.engine.dispose()

    # v1 was the item's content at s1 and is gone: refused, nothing written.
    args, _ = restore(s1, tmp_path / "at-s1")
    refused = run(*args, check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr and "blob description" not in refused.stderr
    assert f"seq {s1}" in refused.stderr and f"seq {s3}" in refused.stderr, refused.stderr
    assert not (tmp_path / "at-s1").exists()

    # At s3 every item has its content: restored, v1 and v2 recorded as pruned.
    args, target_env = restore(s3, tmp_path / "at-s3")
    done = run(*args)
    assert f"restored seq {s3}" in done.stdout, done.stdout
    db_url = target_env.get("SAFEHOLD_DATABASE_URL") or f"sqlite:///{tmp_path / 'at-s3' / 'safehold.db'}"
    engine = engine_mod.create(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM pruned")).scalar() == 2
    finally:
        engine.dispose()
    restored = Server(tmp_path / "at-s3", env=target_env).start()
    try:
        with restored.client("alice") as c:
            got = c.get(f"{BOOK}/a.vcf")
            assert got.status_code == 200 and got.content == card("a", "v3")
            assert c.get(f"{BOOK}/b.vcf").status_code == 404  # put after s3
    finally:
        restored.stop()
