"""Which storage fault an error stands for: a full disk, an I/O error, a damaged or a
read-only database, one that cannot be opened or reached, whether SQLite
(store/sqlite_dbapi.py), PostgreSQL or a temporary file reported it.

Each leaves nothing stored (the transaction is rolled back, a spooled body discarded)
and the process running, so the HTTP layer answers them with what a client can act on
(507, 503 with Retry-After: errors.StorageFault) rather than a 500 that reads as a bug.
A failed fsync is not one of them: it stops the process (engine.fatal_fsync,
fsyncgate); ``fsync_failed`` finds it where an error is caught outside the store."""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator

import sqlalchemy as sa

from safehold.errors import (StorageCorrupt, StorageFailed, StorageFault, StorageFull,
                             StorageReadOnly, StorageUnreachable)
from safehold.store import sqlite_dbapi

# PostgreSQL's SQLSTATEs (Appendix A): 53100 disk_full, 58030 io_error, 25006
# read_only_sql_transaction (a standby, default_transaction_read_only), XX001
# data_corrupted, XX002 index_corrupted; 53300 too_many_connections and 57P01-57P03
# (admin_shutdown, crash_shutdown, cannot_connect_now: restarting); class 08, the
# connection failed; the rest of class 53 (out of memory, a configured limit) as an I/O
# error: it passes, a retry may succeed.
_PG = {"53100": StorageFull, "58030": StorageFailed, "25006": StorageReadOnly,
       "XX001": StorageCorrupt, "XX002": StorageCorrupt, "53300": StorageUnreachable,
       "57P01": StorageUnreachable, "57P02": StorageUnreachable, "57P03": StorageUnreachable}
_PG_CLASSES = {"08": StorageUnreachable, "53": StorageFailed}
_OS_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# EMFILE/ENFILE: out of file descriptors while spooling a body or opening a file; it
# passes (a request ends, a limit is raised), so a retry may succeed, like an I/O error.
_OS_FAILED = frozenset({errno.EIO, errno.EROFS, errno.EMFILE, errno.ENFILE})
_SQLITE: tuple[tuple[type[sqlite_dbapi.DatabaseError], type[StorageFault]], ...] = (
    (sqlite_dbapi.DiskFull, StorageFull), (sqlite_dbapi.IOFailed, StorageFailed),
    (sqlite_dbapi.Corrupt, StorageCorrupt), (sqlite_dbapi.ReadOnly, StorageReadOnly),
    (sqlite_dbapi.CantOpen, StorageUnreachable))


def _kind(exc: BaseException) -> type[StorageFault] | None:
    if isinstance(exc, StorageFault):  # translated by the store already
        return type(exc)
    exc = sqlite_dbapi.translate(exc)
    for error, found in _SQLITE:
        if isinstance(exc, error):
            return found
    if isinstance(exc, OSError) and exc.errno in _OS_FULL:
        return StorageFull
    if isinstance(exc, OSError) and exc.errno in _OS_FAILED:
        return StorageFailed
    sqlstate = getattr(exc, "sqlstate", None)  # psycopg's errors
    if isinstance(sqlstate, str):
        return _PG.get(sqlstate) or _PG_CLASSES.get(sqlstate[:2])
    # No SQLSTATE: libpq's own error, the connection could not be made or was lost (a
    # refused connection has none even when the server said 53300 or 57P03). psycopg is
    # not imported here: a server on SQLite never loads it, so never raises its errors.
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        return StorageUnreachable
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors it was raised from (``raise … from``, SQLAlchemy's
    ``orig``). Only explicit causes: an unrelated bug raised while handling an I/O
    error stays a bug."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, sa.exc.DBAPIError) and isinstance(e.orig, BaseException):
            todo.append(e.orig)
        if e.__cause__ is not None:
            todo.append(e.__cause__)


def kind(exc: BaseException) -> type[StorageFault] | None:
    """StorageFull, StorageFailed, StorageCorrupt, StorageReadOnly or
    StorageUnreachable if ``exc`` or an error it was raised from is one of these faults,
    else None."""
    for e in _causes(exc):
        found = _kind(e)
        if found is not None:
            return found
    return None


def fsync_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised from, SQLite's report of a failed fsync: the
    caller must stop the process (engine.fatal_fsync) without touching the database
    again."""
    return any(isinstance(sqlite_dbapi.translate(e), sqlite_dbapi.FsyncFailed)
               for e in _causes(exc))


def detail(exc: BaseException) -> str:
    """What the database said, without SQLAlchemy's statement and parameters (they may
    hold a user's data): for the one log line of a storage fault."""
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else None
    return str(sqlite_dbapi.translate(orig if orig is not None else exc))
