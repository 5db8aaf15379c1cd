"""Removing what a failed whole-server restore created in a PostgreSQL database, so
that the database is empty again and the next attempt accepts it (cli/backup.py).

Only for that: the restore checked, before it created anything, that the database
held no safehold data, so every safehold table in it is the restore's own. Tables
that are not safehold's are never touched."""

from __future__ import annotations

import sqlalchemy as sa

from safehold.errors import StoreUnavailable
from safehold.store.schema import metadata

ALEMBIC = "alembic_version"  # the schema revision table the migrations create
LOCK_WAIT = "10s"  # a connection the failed restore left in a transaction holds a lock


def drop_schema(engine: sa.Engine) -> list[str]:
    """Drop safehold's tables (with their indexes and id sequences) and Alembic's
    revision table, whichever exist, in one transaction: all of them or none (DDL is
    transactional in PostgreSQL). Returns the names dropped."""
    try:
        with engine.begin() as c:
            if engine.dialect.name == "postgresql":
                # Fail instead of waiting for ever on a lock the failed attempt holds.
                c.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
            present = set(sa.inspect(c).get_table_names())
            ours = [t for t in metadata.sorted_tables if t.name in present]
            metadata.drop_all(c, tables=ours, checkfirst=False)  # dependants first
            if ALEMBIC in present:
                c.execute(sa.text(f'DROP TABLE "{ALEMBIC}"'))
    except sa.exc.DBAPIError as exc:
        why = " ".join(str(exc.orig).split())
        raise StoreUnavailable(f"could not drop the restored tables ({why})") from exc
    return [t.name for t in ours] + ([ALEMBIC] if ALEMBIC in present else [])
