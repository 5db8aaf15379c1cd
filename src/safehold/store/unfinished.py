"""A whole-server restore that has not finished, marked in the database it fills.

`safehold restore` marks the database before it restores anything and clears the mark
after its last step. A restore killed outright (SIGKILL, power loss, a failed fsync)
cannot clean up after itself (cli/backup.py undoes every other failure), so the mark
stays, and with it the facts: this database is missing data. Serving it would be
DESIGN promise 8's wipe: the devices delete what the partial listing lacks. So the
server and every command refuse such a database, and the next restore into it starts
over."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from safehold.store.repo import Store
from safehold.store.schema import meta

KEY = "restore.unfinished"


def mark(store: Store, detail: str) -> None:
    def tx(c: Connection) -> None:
        c.execute(sa.delete(meta).where(meta.c.key == KEY))
        c.execute(sa.insert(meta).values(key=KEY, value=detail))
    store._write(tx)


def clear(store: Store) -> None:
    store._write(lambda c: c.execute(sa.delete(meta).where(meta.c.key == KEY)))


def found(engine: sa.Engine) -> str | None:
    """What the unfinished restore said of itself (source, start), or None. A database
    without the schema has none."""
    with engine.connect() as c:
        if not sa.inspect(c).has_table(meta.name):
            return None
        value = c.execute(sa.select(meta.c.value).where(meta.c.key == KEY)).scalar()
    return None if value is None else str(value)


def refusal(detail: str) -> str:
    """Why a process will not open the database, and what to do."""
    return (f"this database holds a restore that did not finish ({detail}): it is missing "
            "data, and serving it would make devices delete what it lacks. Run the same "
            "`safehold restore` again (it starts over and replaces this partial restore)")
