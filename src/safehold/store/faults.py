"""Which storage faults an error stands for: a full disk or an I/O error, whether
SQLite (store/sqlite_dbapi.py), PostgreSQL or a temporary file reported it.

Both leave nothing stored (the transaction is rolled back, a spooled body discarded)
and the server serving, so the HTTP layer answers them with what a client can act on
(507, 503 with Retry-After) rather than a 500 that reads as a bug. A failed fsync is
not one of them: it stops the process (engine.fatal_fsync, fsyncgate)."""

from __future__ import annotations

import errno

import sqlalchemy as sa

from safehold.errors import StorageFailed, StorageFull
from safehold.store import sqlite_dbapi

# PostgreSQL's SQLSTATEs (Appendix A): 53100 disk_full, 58030 io_error.
_PG_FULL, _PG_IO = "53100", "58030"
_OS_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_OS_FAILED = frozenset({errno.EIO, errno.EROFS})


def _kind(exc: BaseException) -> type[StorageFull] | type[StorageFailed] | None:
    if isinstance(exc, (StorageFull, sqlite_dbapi.DiskFull)):
        return StorageFull
    if isinstance(exc, (StorageFailed, sqlite_dbapi.IOFailed)):
        return StorageFailed
    if isinstance(exc, OSError) and exc.errno in _OS_FULL:
        return StorageFull
    if isinstance(exc, OSError) and exc.errno in _OS_FAILED:
        return StorageFailed
    sqlstate = getattr(exc, "sqlstate", None)  # psycopg's errors
    if sqlstate == _PG_FULL:
        return StorageFull
    if sqlstate == _PG_IO:
        return StorageFailed
    return None


def kind(exc: BaseException) -> type[StorageFull] | type[StorageFailed] | None:
    """StorageFull or StorageFailed if ``exc`` or an error it was raised from (``raise
    … from``, SQLAlchemy's ``orig``) is a full disk or an I/O error, else None. Only
    explicit causes: an unrelated bug raised while handling an I/O error stays a bug."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        found = _kind(e)
        if found is not None:
            return found
        if isinstance(e, sa.exc.DBAPIError) and isinstance(e.orig, BaseException):
            todo.append(e.orig)
        if e.__cause__ is not None:
            todo.append(e.__cause__)
    return None
