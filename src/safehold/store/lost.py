"""A database that is gone while its data directory shows that a server ran there.

The server creates its database on first use. A missing SQLite file (deleted, moved
away, a disk swapped) or an empty PostgreSQL database (dropped, or a URL naming the
wrong one) looks exactly like a first use, so the server used to start on a new, empty
database: ``/readyz`` said ready, and a device that synced with it found its
collections empty and deleted its own copies. That is DESIGN promise 8's wipe and the
story safehold exists for. The data directory's backup key is the sign: it is written
the first time the server (or ``safehold backup init``) runs on a database, so a key
beside a database that is missing or empty means the data was lost. The server and
every command then refuse to start, say so, and name the restore; whoever really means
a new, empty server moves the key away first."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from safehold.errors import StoreUnavailable
from safehold.store import engine as engine_mod


def _sqlite_path(url: str) -> Path | None:
    path = engine_mod.sqlite_file(url)
    return Path(path) if path and not path.startswith(":memory:") else None


def _empty(url: str) -> bool:
    """Whether the database at ``url`` is missing or holds none of safehold's tables,
    looked at without creating it (a SQLite file is opened read-only, if it exists: any
    connection that opened a missing one left a file of one page without tables)."""
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is None:
            return False
        if not path.exists() or path.stat().st_size == 0:
            return True
        import apsw

        db = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            return not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'change'").fetchall()
        except apsw.Error:
            return False  # unreadable: the self-test or the damaged-database answer says why
        finally:
            db.close()
    engine = engine_mod.create(url)
    try:
        with engine.connect() as conn:
            return not sa.inspect(conn).has_table("change")
    finally:
        engine.dispose()


def refuse_if_lost(url: str, key: Path) -> None:
    """Raise StoreUnavailable if ``key`` (the data directory's backup key) exists while
    the database at ``url`` is missing or empty. Call before anything creates it."""
    if not key.exists() or not _empty(url):
        return
    where = str(_sqlite_path(url) or "the PostgreSQL database named by the database URL")
    raise StoreUnavailable(
        f"the database is missing or empty ({where}), but {key} is there: a server with "
        "data ran in this data directory. Starting would serve a new, empty server, and "
        "devices that sync with it would delete their own copies. If the database was "
        "lost, restore it into a new directory from the replica (safehold restore --kit "
        "KIT --into NEW_DIR, docs/backups.md) and serve that; if the database URL names "
        f"the wrong database, correct it. To start a new, empty server here on purpose, "
        f"move {key} (and the replica folder it encrypted) somewhere else first.")
