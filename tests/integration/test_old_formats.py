"""A newer safehold reads every older replica and export format: restore and import
of the committed format-1 fixtures (tests/fixtures/format1/README.md)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import sqlalchemy as sa

from safehold.backup import segment
from safehold.backup.crypto import read_kit
from safehold.backup.replica_client import open_replica
from safehold.store import blobs
from safehold.store import engine as engine_mod
from tests.support.server import PASSWORD, add_user, cli, run

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "format1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def _items(data_dir: Path) -> dict[str, str]:
    """Live items (path -> blob hash) of a data directory, each body read back and
    checked against its hash."""
    engine = engine_mod.create(engine_mod.sqlite_url(data_dir))
    try:
        with engine.connect() as conn:
            rows: dict[str, str] = dict(conn.execute(sa.text(
                "SELECT path, blob_hash FROM resource WHERE kind = 'item'")).all())
        for digest in rows.values():
            assert hashlib.sha256(blobs.read_all(engine, digest)).hexdigest() == digest
        return {str(k): str(v) for k, v in rows.items()}
    finally:
        engine.dispose()


def test_the_fixture_is_format_1() -> None:
    key, _ = read_kit(FIXTURE / "recovery-kit.json")
    replica = open_replica(f"file://{FIXTURE / 'replica'}")
    assert json.loads(replica.get("manifest.json"))["format"] == 1
    names = [o.path for o in replica.list("") if o.path.endswith((".seg", ".snap"))]
    assert any(n.endswith(".seg") for n in names) and any(n.endswith(".snap") for n in names)
    for name in names:
        assert segment.decode(key, name, replica.get(name))["format"] == 1


def test_restore_reads_a_format_1_replica(tmp_path: Path) -> None:
    replica = tmp_path / "replica"
    shutil.copytree(FIXTURE / "replica", replica)  # restore must not need to write it
    for seq in ("23", "18"):  # the newest snapshot; an older one plus segments
        into = tmp_path / f"restored-{seq}"
        run("restore", "--from", f"file://{replica}", "--kit", str(FIXTURE / "recovery-kit.json"),
            "--into", str(into), "--seq", seq)
        assert _items(into) == EXPECTED["items_at"][seq]


def test_import_reads_a_format_1_export(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_user(data, "alice", PASSWORD)
    proc = cli(data, "import", "alice", str(FIXTURE / "export-alice.zip"), "--json")
    assert json.loads(proc.stdout)
    assert _items(data) == EXPECTED["items_at"]["23"]
