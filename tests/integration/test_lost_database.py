"""A database lost from under its data directory is not replaced by a new, empty one
(store/lost.py): the server and the commands refuse to start while the backup key
shows that a server with data ran there, and name the restore (DESIGN promise 8)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from safehold.errors import StoreUnavailable
from safehold.store import engine as engine_mod
from safehold.store import lost, sqlite_dbapi, wipe
from tests.support.server import PASSWORD, Server, cli

CARD = b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:lost-1\r\nFN:Ada\r\nEND:VCARD\r\n"


def _lose(srv: Server) -> None:
    """The database goes (a file deleted or a disk swapped; a database dropped)."""
    if "SAFEHOLD_DATABASE_URL" in srv.env:
        engine = sa.create_engine(srv.database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            assert wipe.drop_schema(engine)
        finally:
            engine.dispose()
    else:
        for name in ("safehold.db", "safehold.db-wal", "safehold.db-shm"):
            (srv.data_dir / name).unlink(missing_ok=True)


def test_a_lost_database_is_refused_until_restored_or_the_key_is_moved(fresh_server: Server) -> None:
    with fresh_server.client() as dav:
        assert dav.put("/dav/addressbooks/alice/contacts/ada.vcf", content=CARD).status_code == 201
    fresh_server.stop()
    assert (fresh_server.data_dir / "backup.key").exists()
    _lose(fresh_server)
    for args, stdin in ((("serve", "--port", "1"), None),
                        (("user", "add", "alice", "--password-stdin"), PASSWORD + "\n")):
        out = cli(fresh_server.data_dir, *args, stdin=stdin, env=fresh_server.env, check=False)
        assert out.returncode == 1, out.stderr
        assert "the database is missing or empty" in out.stderr and "safehold restore" in out.stderr
        assert "Traceback" not in out.stderr
    # Nothing was created in its place.
    assert not (fresh_server.data_dir / "safehold.db").exists()
    # Someone who means a new, empty server moves the key (and its replica) away first.
    shutil.move(fresh_server.data_dir / "backup.key", fresh_server.data_dir.parent / "old.key")
    shutil.move(fresh_server.data_dir / "replica", fresh_server.data_dir.parent / "old-replica")
    cli(fresh_server.data_dir, "user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n",
        env=fresh_server.env)
    fresh_server.start()
    with fresh_server.client() as dav:
        assert dav.get("/dav/addressbooks/alice/contacts/ada.vcf").status_code == 404


@pytest.mark.parametrize("fresh_server", ["sqlite"], indirect=True)
def test_a_database_file_that_vanishes_while_serving_gets_no_write_acknowledged(
        fresh_server: Server) -> None:
    db = fresh_server.data_dir / "safehold.db"
    aside = fresh_server.data_dir.parent / "moved.db"
    with fresh_server.client() as dav:
        url = "/dav/addressbooks/alice/contacts/ada.vcf"
        assert dav.put(url, content=CARD).status_code == 201
        db.rename(aside)  # moved away (a deleted file is the same, and gone at exit)
        r = dav.put(url, content=CARD.replace(b"Ada", b"Ada L"))
        assert r.status_code == 503 and r.headers["retry-after"] == "60", r.text
        assert "Traceback" not in r.text
        assert not db.exists()  # no new, empty database in its place
        aside.rename(db)
        assert dav.put(url, content=CARD.replace(b"Ada", b"Ada B")).status_code == 204
        assert b"Ada B" in dav.get(url).content


def test_a_database_file_left_empty_by_a_connection_counts_as_lost(tmp_path: Path) -> None:
    """A connection that opened a missing file leaves one page without tables: that is
    no database either. A child process of the server never creates one (new=False)."""
    key = tmp_path / "backup.key"
    key.write_text("x\n")
    url = f"sqlite:///{tmp_path / 'safehold.db'}"
    child = engine_mod.create(url, new=False)
    with pytest.raises(sa.exc.OperationalError) as caught:
        child.connect()
    assert isinstance(caught.value.orig, sqlite_dbapi.CantOpen)
    child.dispose()
    assert not (tmp_path / "safehold.db").exists()
    engine = engine_mod.create(url)
    engine.connect().close()
    engine.dispose()
    assert (tmp_path / "safehold.db").stat().st_size > 0
    with pytest.raises(StoreUnavailable, match="missing or empty"):
        lost.refuse_if_lost(url, key)
    out = cli(tmp_path, "upgrade", "--dry-run", check=False)
    assert out.returncode == 1 and "missing or empty" in out.stderr, out.stderr
    key.unlink()
    lost.refuse_if_lost(url, key)  # no key: a first start
