"""A DB-API 2.0 face for APSW, so that SQLAlchemy and Alembic can drive it.

Why APSW: Python's built-in ``sqlite3`` here links SQLite 3.40.1, which has the
WAL-reset bug (3.7.0 to 3.51.2: a checkpoint racing another connection can lose
committed data). APSW wheels bundle a fixed SQLite (>= 3.51.3), so the server may
use WAL with several connections and the CLI may open the database while the server
runs. ``store.engine.self_test`` refuses to start on an affected library.

Transactions follow the classic ``sqlite3`` module: the first statement after a
commit opens a transaction implicitly; ``commit``/``rollback`` end it. A connection
flagged ``immediate`` opens with ``BEGIN IMMEDIATE`` so that a writer takes the write
lock up front and never fails half-way with SQLITE_BUSY_SNAPSHOT.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import apsw

paramstyle = "qmark"
threadsafety = 1
apilevel = "2.0"

sqlite_version = apsw.sqlite_lib_version()
sqlite_version_info = tuple(int(p) for p in sqlite_version.split("."))
version = apsw.apsw_version()
version_info = sqlite_version_info


class Warning(Exception):  # noqa: A001 - DB-API name
    pass


class Error(Exception):
    pass


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


class FsyncFailed(OperationalError):
    """SQLite reported that an fsync failed: the process must stop (see engine)."""


class Busy(OperationalError):
    """Another connection (or process) holds the lock this statement needs."""


class DiskFull(OperationalError):
    """SQLITE_FULL: the disk (or the file system's quota) has no room for the write;
    SQLite rolled the statement back (store/faults.py maps it to HTTP 507)."""


class IOFailed(OperationalError):
    """An I/O error other than a failed fsync (SQLITE_IOERR_WRITE, _READ, …): the
    statement failed and may succeed later (store/faults.py maps it to HTTP 503)."""


class Corrupt(DatabaseError):
    """SQLITE_CORRUPT, SQLITE_NOTADB or SQLITE_IOERR_CORRUPTFS: the database file is
    damaged, or not a database at all (store/faults.py: HTTP 503, DAV paused until the
    operator restores it)."""


class CantOpen(OperationalError):
    """SQLITE_CANTOPEN: the database, its WAL or a temporary file could not be opened
    (the file or its folder gone or not accessible, too many open files); nothing was
    stored (store/faults.py maps it to HTTP 503)."""


class ReadOnly(OperationalError):
    """SQLITE_READONLY: the database (or its WAL, its folder) cannot be written; the
    statement failed and nothing was stored (store/faults.py maps it to HTTP 503)."""


# SQLite tells a failed fsync only by its extended result code: the message is the
# generic "disk I/O error" (the test that looked for "fsync" in it never matched, so a
# failed fsync went on as an ordinary write error; tests/integration/test_disk_faults).
_FSYNC_FAILED = frozenset({apsw.SQLITE_IOERR_FSYNC, apsw.SQLITE_IOERR_DIR_FSYNC})
# The unix VFS answers a read the file system refused (EIO, ERANGE, ENXIO: a bad block,
# a checksum failure of btrfs or ZFS) with SQLITE_IOERR_CORRUPTFS. A statement turns it
# into SQLITE_CORRUPT (vdbe.c), a call outside one (a WAL checkpoint, the backup API)
# may not, nor does a VFS written in Python (APSW raises that VFS's own exception).
_CORRUPT_FS = apsw.SQLITE_IOERR_CORRUPTFS


def _translate(exc: apsw.Error) -> DatabaseError:
    if isinstance(exc, apsw.ConstraintError):
        return IntegrityError(str(exc))
    extended = getattr(exc, "extendedresult", None)
    if isinstance(exc, apsw.IOError) and extended in _FSYNC_FAILED:
        return FsyncFailed(str(exc) or "disk I/O error (fsync)")
    if isinstance(exc, apsw.IOError) and extended == _CORRUPT_FS:
        return Corrupt(str(exc) or "disk I/O error (the file system reports corruption)")
    if isinstance(exc, apsw.SQLError):
        return OperationalError(str(exc))
    if isinstance(exc, (apsw.BusyError, apsw.LockedError)):
        return Busy(str(exc))
    if isinstance(exc, apsw.FullError):
        return DiskFull(str(exc) or "database or disk is full")
    if isinstance(exc, apsw.IOError):  # not a failed fsync: that one is checked first
        return IOFailed(str(exc) or "disk I/O error")
    if isinstance(exc, apsw.ReadOnlyError):
        return ReadOnly(str(exc) or "attempt to write a readonly database")
    if isinstance(exc, apsw.CantOpenError):
        return CantOpen(str(exc) or "unable to open database file")
    if isinstance(exc, (apsw.CorruptError, apsw.NotADBError)):
        return Corrupt(str(exc) or "database disk image is malformed")
    return DatabaseError(str(exc))


def translate(exc: BaseException) -> BaseException:
    """``exc`` as this module raises it if it is APSW's own error, else ``exc``: for
    errors of code that calls APSW directly (Store.writable), where store/faults.py
    looks for a fault."""
    return _translate(exc) if isinstance(exc, apsw.Error) else exc


_NO_TX = re.compile(r"^\s*(BEGIN|COMMIT|END|ROLLBACK|PRAGMA|SAVEPOINT|RELEASE|VACUUM)\b", re.I)

Binary = bytes


class Cursor:
    arraysize = 1

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._cur = conn._db.cursor()
        self._desc: tuple[tuple[str, str | None], ...] = ()
        self._cur.exec_trace = self._trace
        self._rows: Iterator[Any] | None = None
        self.description: list[tuple[Any, ...]] | None = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    def _trace(self, cur: apsw.Cursor, sql: str, bindings: Any) -> bool:
        # The statement is prepared but not yet stepped: the only moment APSW
        # reports columns of a query that returns no rows.
        self._desc = cur.get_description()
        return True

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        self._conn._maybe_begin(sql)
        self._desc = ()
        try:
            it = self._cur.execute(sql, params)
            desc = self._desc
        except apsw.Error as exc:
            raise _translate(exc) from exc
        if desc:
            self.description = [(d[0], None, None, None, None, None, None) for d in desc]
            self._rows = iter(it)
            self.rowcount = -1
        else:
            self.description = None
            self._rows = None
            self.rowcount = self._conn._db.changes()
        self.lastrowid = self._conn._db.last_insert_rowid()
        return self

    def executemany(self, sql: str, seq: Sequence[Sequence[Any] | dict[str, Any]]) -> Cursor:
        self._conn._maybe_begin(sql)
        total = 0
        try:
            for params in seq:
                self._cur.execute(sql, params)
                total += self._conn._db.changes()
        except apsw.Error as exc:
            raise _translate(exc) from exc
        self.description = None
        self._rows = None
        self.rowcount = total
        return self

    def fetchone(self) -> Any:
        if self._rows is None:
            return None
        try:
            return next(self._rows)
        except StopIteration:
            return None
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def fetchmany(self, size: int | None = None) -> list[Any]:
        out = []
        for _ in range(size or self.arraysize):
            row = self.fetchone()
            if row is None:
                break
            out.append(row)
        return out

    def fetchall(self) -> list[Any]:
        if self._rows is None:
            return []
        try:
            return list(self._rows)
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def close(self) -> None:
        self._rows = None
        self._cur.close(True)

    def setinputsizes(self, *a: Any) -> None:
        pass

    def setoutputsize(self, *a: Any) -> None:
        pass


BUSY_RETRY_SECONDS = 0.002  # between tries for a lock another connection holds


def busy_handler(timeout_ms: int, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> Callable[[int], bool]:
    """A busy handler that tries again every BUSY_RETRY_SECONDS until ``timeout_ms``
    have passed since the first try. SQLite's own busy timeout sleeps longer and longer,
    up to 100 ms a try: a writer waiting for another process's write lock (``safehold
    import``, a backup child, the CLI) went on up to 100 ms after the lock was free
    (seen as 189-254 ms PUTs behind a backup child's commits)."""
    first = 0.0

    def handler(tries: int) -> bool:
        nonlocal first
        now = clock()
        if tries == 0:
            first = now
        elif now - first >= timeout_ms / 1000:
            return False  # SQLITE_BUSY to the caller
        sleep(BUSY_RETRY_SECONDS)
        return True
    return handler


class Connection:
    def __init__(self, db: apsw.Connection, busy_timeout_ms: int = 0) -> None:
        self._db = db
        self.isolation_level: str | None = ""
        self.immediate = False
        self.busy_timeout_ms = busy_timeout_ms  # how long a statement waits for a lock
        # Made once: re-installed after every no-wait BEGIN (each loop PUT), and each wait
        # starts its own clock at its first try.
        self._busy = busy_handler(busy_timeout_ms) if busy_timeout_ms else None

    @property
    def in_transaction(self) -> bool:
        return not self._db.getautocommit()

    def _maybe_begin(self, sql: str) -> None:
        if self.isolation_level is None or not self._db.getautocommit():
            return
        if _NO_TX.match(sql):
            return
        try:
            self._db.execute("BEGIN IMMEDIATE" if self.immediate else "BEGIN")
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def cursor(self) -> Cursor:
        return Cursor(self)

    def run(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run one statement on APSW itself and return its rows (store/fastsql.py): no
        DB-API cursor, trace hook or description per statement, which cost three times
        what SQLite spends on a PUT's small statements. Same transaction rules and errors
        as ``Cursor.execute``."""
        self._maybe_begin(sql)
        try:
            return self._db.execute(sql, params).fetchall()
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def run_count(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> int:
        """``run`` for a statement without rows: the number of rows it changed."""
        self._maybe_begin(sql)
        try:
            self._db.execute(sql, params).fetchall()
        except apsw.Error as exc:
            raise _translate(exc) from exc
        return int(self._db.changes())

    def run_many(self, sql: str, params: Sequence[Sequence[Any] | Mapping[str, Any]]) -> None:
        """``run_count`` once per parameter set, in one call into APSW."""
        self._maybe_begin(sql)
        try:
            self._db.executemany(sql, params).fetchall()
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def begin_immediate(self, wait: bool = True) -> None:
        """BEGIN IMMEDIATE now: the write lock up front (a writer never fails half-way
        with SQLITE_BUSY_SNAPSHOT). Without ``wait``, Busy at once if another
        connection holds the lock, instead of waiting up to ``busy_timeout_ms``."""
        if not wait:
            self._db.set_busy_timeout(0)
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except apsw.Error as exc:
            raise _translate(exc) from exc
        finally:
            if not wait:
                self.wait_for_locks()

    def wait_for_locks(self) -> None:
        """Wait up to ``busy_timeout_ms`` for a lock another connection holds (busy_handler)."""
        self._db.set_busy_handler(self._busy)

    def commit(self) -> None:
        if not self._db.getautocommit():
            try:
                self._db.execute("COMMIT")
            except apsw.Error as exc:
                raise _translate(exc) from exc

    def rollback(self) -> None:
        if not self._db.getautocommit():
            try:
                self._db.execute("ROLLBACK")
            except apsw.Error as exc:
                raise _translate(exc) from exc

    def checkpoint(self) -> None:
        """A PASSIVE WAL checkpoint (store/checkpoint.py): copies what it can of the log
        into the database without waiting for readers or writers."""
        try:
            self._db.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
        except apsw.Error as exc:
            raise _translate(exc) from exc

    def close(self) -> None:
        self._db.close(True)

    def create_function(self, name: str, nargs: int, fn: Any, deterministic: bool = False) -> None:
        flags = apsw.SQLITE_DETERMINISTIC if deterministic else 0
        self._db.create_scalar_function(name, fn, nargs, flags=flags)

    @property
    def apsw(self) -> apsw.Connection:
        return self._db


# Only tests set this: the name of an SQLite VFS registered in the process (a fault-
# injecting one that fails fsync or write on demand, tests/support/faulty_vfs.py), read
# at each connection (docs/testing.md).
TEST_VFS_ENV = "SAFEHOLD_TEST_SQLITE_VFS"


def connect(database: str, timeout: float = 30.0, opened: list[bool] | None = None,
            **_: Any) -> Connection:
    """Open ``database``. ``opened`` (one per engine, engine.create): once a connection
    of the engine has opened the file, later ones never create it. A database file that
    vanishes while the server runs (deleted, moved) is then SQLITE_CANTOPEN, a 503, not
    a new empty database that readers would find without tables, or worse, a server
    that answers from it."""
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_URI
    if not opened:
        flags |= apsw.SQLITE_OPEN_CREATE
    try:
        db = apsw.Connection(database, flags=flags, vfs=os.environ.get(TEST_VFS_ENV))
    except apsw.Error as exc:
        raise _translate(exc) from exc
    if opened is not None:
        opened[:] = [True]
    conn = Connection(db, int(timeout * 1000))
    conn.wait_for_locks()
    return conn
