"""safehold's own exceptions. Foreign errors are translated at the boundary.

    SafeholdError
    ├── ConfigError            bad configuration: says what to fix
    ├── StoreError             the database misbehaved
    │   ├── StoreUnavailable   cannot open / schema not current
    │   ├── WriteBusy          another writer holds the lock (Store.no_wait)
    │   ├── StorageFull        the disk is full; nothing was stored (HTTP 507)
    │   ├── StorageFailed      an I/O error of the disk; nothing was stored (HTTP 503)
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


class StorageFull(StoreError):
    """The disk (SQLITE_FULL, ENOSPC, PostgreSQL's 53100 disk_full) had no room: the
    write was rolled back; it may succeed once space is freed (store/faults.py)."""


class StorageFailed(StoreError):
    """The disk reported an I/O error other than a failed fsync (which stops the
    process): the request's write was rolled back, its read not answered; a retry may
    succeed (store/faults.py)."""


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
