"""A full disk and a disk's I/O error are told apart from each other and from a bug
(store/faults.py: HTTP 507 and 503, not 500), on a real SQLite below a fault-injecting
VFS (tests/support/faulty_vfs.py); the store rolls the write back and goes on. The
server-level behaviour is in tests/integration/test_disk_faults.py."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import apsw
import psycopg
import pytest
import sqlalchemy as sa

from safehold.errors import StorageFailed, StorageFull, StoreError
from safehold.store import faults, sqlite_dbapi
from safehold.store.repo import Store
from tests.support import faulty_store, faulty_vfs


@pytest.mark.parametrize("code, kind", [
    (apsw.SQLITE_FULL, StorageFull), (apsw.SQLITE_IOERR_WRITE, StorageFailed),
    (apsw.SQLITE_IOERR_READ, StorageFailed), (apsw.SQLITE_IOERR, StorageFailed),
    (apsw.SQLITE_CONSTRAINT, None), (apsw.SQLITE_ERROR, None), (apsw.SQLITE_CORRUPT, None)])
def test_sqlite_errors_are_known_by_their_result_code(code: int, kind: type | None) -> None:
    raised = apsw.exception_for(code)
    assert isinstance(raised, apsw.Error)
    translated = sqlite_dbapi._translate(raised)
    wrapped = sa.exc.DBAPIError.instance("COMMIT", (), translated, sqlite_dbapi.Error)
    assert faults.kind(translated) is kind
    assert faults.kind(wrapped) is kind  # as SQLAlchemy raises it


def _raised_from(cause: BaseException) -> BaseException:
    try:
        raise RuntimeError("the request failed") from cause
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize("exc, kind", [
    (OSError(errno.ENOSPC, "No space left on device"), StorageFull),  # spooling a body
    (OSError(errno.EDQUOT, "Disk quota exceeded"), StorageFull),
    (OSError(errno.EIO, "Input/output error"), StorageFailed),
    (psycopg.errors.DiskFull("could not extend file"), StorageFull),  # SQLSTATE 53100
    (psycopg.errors.IoError("could not read block"), StorageFailed),  # 58030
    (OSError(errno.ECONNRESET, "Connection reset"), None),
    (psycopg.errors.UniqueViolation("duplicate key"), None),
    (ValueError("a bug"), None)])
def test_other_sources_and_causes(exc: BaseException, kind: type | None) -> None:
    assert faults.kind(exc) is kind
    assert faults.kind(_raised_from(exc)) is kind


def test_an_error_raised_while_handling_a_fault_is_not_one() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise ValueError("a bug in the handler")  # noqa: B904 - the point of the test
    except ValueError as exc:
        assert faults.kind(exc) is None


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    s = faulty_store.open_store(tmp_path, monkeypatch)
    yield s
    s.engine.dispose()


def test_a_write_on_a_full_disk_is_storage_full_and_the_store_goes_on(store: Store) -> None:
    faulty_store.insert(store, 1)
    faulty_store.fail(faulty_vfs.DISK_FULL)
    with pytest.raises(StorageFull):
        faulty_store.insert(store, 2)
    with pytest.raises(StorageFull):
        with store.writing_now():
            faulty_store.insert(store, 3)
    faulty_store.fail(faulty_vfs.DISK_FULL, on=False)
    faulty_store.insert(store, 4)
    assert faulty_store.rows(store) == [1, 4]


def test_a_write_whose_wal_write_fails_is_storage_failed(store: Store) -> None:
    faulty_store.insert(store, 1)
    faulty_store.fail(faulty_vfs.FAIL_WRITE)
    with pytest.raises(StorageFailed):
        faulty_store.insert(store, 2)
    faulty_store.fail(faulty_vfs.FAIL_WRITE, on=False)
    faulty_store.insert(store, 3)
    assert faulty_store.rows(store) == [1, 3]


def test_a_read_that_fails_is_a_storage_fault(store: Store) -> None:
    faulty_store.insert(store, 1)
    faulty_store.fail(faulty_vfs.FAIL_READ)
    with pytest.raises(sa.exc.OperationalError) as raised:
        faulty_store.rows(store)
    assert faults.kind(raised.value) is StorageFailed
    assert not isinstance(raised.value, StoreError)  # reads are not translated by the store
    faulty_store.fail(faulty_vfs.FAIL_READ, on=False)
    assert faulty_store.rows(store) == [1]
