"""A disaster restore that fails half-way (here: a damaged object late in the
replica, after earlier objects were committed) removes what it wrote, into SQLite
and into PostgreSQL alike: no data directory, no safehold tables (other tables stay),
a message naming what failed and no traceback; the same command then succeeds once
the replica is whole again. Before, the partly filled target was left behind and the
retry refused it as not new."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import DATABASES
from tests.support.server import Server, add_user, cli, run

BOOK = "/dav/addressbooks/alice/contacts"


def _replica(tmp_path: Path) -> tuple[Path, Path, int]:
    """A replica of a few changes in several segments (one shipping round each), its
    kit, and its last change; the server and its data are gone afterwards."""
    data = tmp_path / "data"
    add_user(data, "alice")
    srv = Server(data).start()
    try:
        for i in range(3):
            with srv.client("alice") as c:
                body = f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{i}\r\nFN:P {i}\r\nEND:VCARD\r\n"
                assert c.put(f"{BOOK}/{i}.vcf", content=body.encode()).status_code == 201
            deadline = time.monotonic() + 30
            while True:
                st = json.loads(cli(data, "status", "--json", check=False).stdout)
                if st["replicas"] and st["replicas"][0]["shipped_seq"] == st["last_seq"]:
                    break
                assert time.monotonic() < deadline, f"replication did not catch up: {st}"
                time.sleep(0.2)
        last = int(st["last_seq"])
    finally:
        srv.stop()
    kit, replica = tmp_path / "kit.json", tmp_path / "offsite"
    shutil.copy(data / "recovery-kit.json", kit)
    shutil.copytree(data / "replica", replica)
    shutil.rmtree(data)
    return replica, kit, last


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}


@pytest.mark.parametrize("target", DATABASES)
def test_failed_restore_leaves_the_target_as_it_was(target: str, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    replica, kit, last = _replica(tmp_path)
    assert "--database-url postgresql://" in json.loads(kit.read_text())["restore"]  # its hint
    segments = sorted((replica / "segments").iterdir())
    assert len(segments) >= 2, segments  # something is committed before the damaged one
    newest = max(segments, key=lambda p: int(p.name.split("-")[0]))
    good = newest.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x01
    newest.write_bytes(bytes(damaged))

    new_dir = tmp_path / "rebuilt"
    command = ["restore", "--from", f"file://{replica}", "--kit", str(kit), "--into", str(new_dir)]
    env: dict[str, str] = {}
    if target == "postgresql":
        url = request.getfixturevalue("postgres").new_database()
        with psycopg.connect(url) as conn:  # not safehold's: a failed restore leaves it alone
            conn.execute("CREATE TABLE notes (line text)")
            conn.execute("INSERT INTO notes VALUES ('mine')")
        command += ["--database-url", url]
        env = {"SAFEHOLD_DATABASE_URL": url}

    failed = run(*command, check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "segments: 1/" in failed.stderr  # it had started loading
    assert newest.name in failed.stderr and "authentication failed" in failed.stderr
    assert "Traceback" not in failed.stderr
    if target == "postgresql":
        assert _tables(url) == {"notes"}
    assert not new_dir.exists()
    assert "Removed what it had written" in failed.stderr
    assert "run the same command again" in failed.stderr
    # Into a directory that existed already: only what the restore added goes.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    again = run(*[str(mine) if a == str(new_dir) else a for a in command], check=False)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

    newest.write_bytes(good)  # the replica is whole again: the same command succeeds
    out = run(*command)
    assert f"restored seq {last}" in out.stdout
    st = json.loads(cli(new_dir, "status", "--json", env=env, check=False).stdout)
    assert st["last_seq"] == last
    assert "alice" in cli(new_dir, "user", "list", env=env).stdout
    if target == "postgresql":
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT line FROM notes").fetchall() == [("mine",)]


def test_failure_before_anything_is_written_says_only_what_failed(tmp_path: Path) -> None:
    """A kit that cannot be read: nothing was written, so nothing is said to be undone
    (the message is the error alone) and no directory appears."""
    kit = tmp_path / "kit.json"
    kit.write_text("{}")
    new_dir = tmp_path / "rebuilt"
    failed = run("restore", "--from", f"file://{tmp_path / 'offsite'}", "--kit", str(kit),
                 "--into", str(new_dir), check=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "Removed" not in failed.stderr and not new_dir.exists()
