"""safehold's own exceptions. Foreign errors are translated at the boundary.

    SafeholdError
    ├── ConfigError            bad configuration: says what to fix
    ├── StoreError             the database misbehaved
    │   ├── StoreUnavailable   cannot open / schema not current
    │   ├── WriteBusy          another writer holds the lock (Store.no_wait)
    │   ├── StorageFault       the disk or the database file failed (store/faults.py)
    │   │   ├── StorageFull      the disk is full; nothing was stored (HTTP 507)
    │   │   ├── StorageFailed    an I/O error of the disk; nothing was stored (HTTP 503)
    │   │   ├── StorageCorrupt   the database file is damaged (HTTP 503, DAV paused)
    │   │   ├── StorageReadOnly  the database cannot be written (HTTP 503)
    │   │   └── StorageUnreachable  the database cannot be opened or reached (HTTP 503)
    │   └── SelfTestFailed     startup self-test refused the store
    ├── ArchiveError           an export archive or import file is unusable (says why)
    ├── UserError              principal management (CLI-facing)
    │   ├── UnknownUser
    │   └── UserExists
    └── DomainError            a request conflicts with the data (mapped to 4xx)
        ├── NotFound           404
        ├── Conflict           409 (missing parent, wrong kind)
        │   └── UidConflict    409 no-uid-conflict
        ├── AlreadyExists      405/412 depending on the method
        ├── PreconditionFailed 412 (If-Match, If-None-Match, Overwrite)
        ├── Forbidden          403
        ├── Locked             423
        └── TooLarge           413
"""

from __future__ import annotations


class SafeholdError(Exception):
    """Root of every error safehold raises on purpose."""


class ConfigError(SafeholdError):
    pass


class StoreError(SafeholdError):
    pass


class StoreUnavailable(StoreError):
    pass


class SelfTestFailed(StoreError):
    pass


class WriteBusy(StoreError):
    """A write inside ``Store.no_wait`` (or the start of ``Store.writing_now``) found
    the write lock taken; nothing was written, the caller runs it again where waiting
    is allowed."""


class StorageFault(StoreError):
    """The disk or the database file failed a request; nothing of it was stored. What
    a client is told (``public``: no detail of the disk or the database, those go to
    the log), with which HTTP status and Retry-After (seconds, or None): the DAV layer,
    the API and the web pages answer alike (http/app.py, web/site.py). ``reason``: the
    fault in a few stable words, for the log line and /readyz."""

    status = 503
    retry_after: str | None = None
    public = "storage error, nothing was stored"
    reason = "a disk I/O error"


class StorageFull(StorageFault):
    """The disk (SQLITE_FULL, ENOSPC, PostgreSQL's 53100 disk_full) had no room: the
    write was rolled back; it may succeed once space is freed (store/faults.py)."""

    status = 507  # RFC 4918 §11.5; DAVx5 shows "server storage full" and retries
    reason = "the disk is full"
    public = ("insufficient storage: the server's disk is full and nothing was stored; "
              "try again later")


class StorageFailed(StorageFault):
    """The disk reported an I/O error other than a failed fsync (which stops the
    process): the request's write was rolled back, its read not answered; a retry may
    succeed (store/faults.py)."""

    retry_after = "30"  # a disk's I/O error is often gone by then
    public = "storage error, nothing was stored; try again"


class StorageCorrupt(StorageFault):
    """The database file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB, PostgreSQL's
    XX001 data_corrupted, XX002 index_corrupted). It does not heal by itself: the
    server stops serving DAV (promise 8: never a listing from a damaged store) until
    the operator checks and restores it."""

    retry_after = "3600"  # a restore takes the operator a while; clients keep their data
    reason = "the database is damaged"
    public = ("the server's database is damaged; nothing was stored. The operator must "
              "check and restore it (safehold check, safehold restore)")


class StorageReadOnly(StorageFault):
    """The database cannot be written (SQLITE_READONLY: the file, its folder or the
    file system read-only; PostgreSQL's 25006 read_only_sql_transaction, a standby):
    nothing was stored; writes succeed again once the operator fixes it."""

    retry_after = "300"
    public = "the server's database is read-only; nothing was stored. Try again later"
    reason = "the database is read-only"


class StorageUnreachable(StorageFault):
    """The database cannot be opened or reached: SQLITE_CANTOPEN (its file or folder
    gone or not accessible, too many open files), PostgreSQL's 08xxx connection
    failures, 53300 too_many_connections, 57P01-57P03 (shutting down, starting up), or
    psycopg failing to connect at all. Nothing was stored. Unlike a damaged database it
    does not pause serving: it says nothing about the data already stored, a request it
    fails gets an error rather than a smaller answer (promise 8 holds), and its usual
    causes (a file-descriptor limit, a database server restarting, a mount or a
    permission the operator fixes) pass without a restore of the data."""

    retry_after = "60"
    public = "the server cannot open its database; nothing was stored. Try again later"
    # Said to the operator (the log, /readyz): what to check, no path.
    reason = ("the database cannot be opened (check that its file and folder exist and "
              "are readable and writable by the server, the open-files limit, or that "
              "the PostgreSQL server is up and accepts connections)")


class ArchiveError(SafeholdError):
    pass


class UserError(SafeholdError):
    pass


class UnknownUser(UserError):
    pass


class UserExists(UserError):
    pass


class DomainError(SafeholdError):
    status = 400


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class UidConflict(Conflict):
    """Another item of the collection has the same UID (RFC 4791 §5.3.2.1,
    RFC 6352 §6.3.2.1 no-uid-conflict)."""

    def __init__(self, message: str, path: str, uid: str = "") -> None:
        super().__init__(message)
        self.path = path  # the store path of the resource holding the UID
        self.uid = uid


class AlreadyExists(DomainError):
    status = 405


class PreconditionFailed(DomainError):
    status = 412


class Forbidden(DomainError):
    status = 403


class Locked(DomainError):
    status = 423


class TooLarge(DomainError):
    status = 413
