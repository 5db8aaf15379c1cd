"""A full disk and a disk's I/O error are told apart from each other and from a bug
(store/faults.py: HTTP 507 and 503, not 500), on a real SQLite below a fault-injecting
VFS (tests/support/faulty_vfs.py); the store rolls the write back and goes on. The
server-level behaviour is in tests/integration/test_disk_faults.py."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import apsw
import psycopg
import pytest
import sqlalchemy as sa

from safehold.errors import StorageFailed, StorageFull, StoreError
from safehold.store import engine as engine_mod
from safehold.store import faults, sqlite_dbapi
from safehold.store.repo import Store
from tests.support import faulty_vfs


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
    faults_dir = tmp_path / "faults"
    faults_dir.mkdir()
    monkeypatch.setenv(sqlite_dbapi.TEST_VFS_ENV, faulty_vfs.NAME)
    monkeypatch.setenv(faulty_vfs.FAULTS_ENV, str(faults_dir))
    engine = engine_mod.create(f"sqlite:///{tmp_path / 'x.db'}")
    s = Store(engine, tmp_path)
    s._write(lambda c: c.exec_driver_sql("CREATE TABLE t (x INTEGER)"))
    yield s
    engine.dispose()


def _insert(store: Store, x: int) -> None:
    store._write(lambda c: c.exec_driver_sql(f"INSERT INTO t VALUES ({x})"))


def _rows(store: Store) -> list[int]:
    return store._read(lambda c: [r[0] for r in c.exec_driver_sql("SELECT x FROM t ORDER BY x")])


def _fail(switch: str, on: bool = True) -> None:
    path = Path(os.environ[faulty_vfs.FAULTS_ENV]) / switch
    if on:
        path.touch()
    else:
        path.unlink()


def test_a_write_on_a_full_disk_is_storage_full_and_the_store_goes_on(store: Store) -> None:
    _insert(store, 1)
    _fail(faulty_vfs.DISK_FULL)
    with pytest.raises(StorageFull):
        _insert(store, 2)
    with pytest.raises(StorageFull):
        with store.writing_now():
            _insert(store, 3)
    _fail(faulty_vfs.DISK_FULL, on=False)
    _insert(store, 4)
    assert _rows(store) == [1, 4]


def test_a_write_whose_wal_write_fails_is_storage_failed(store: Store) -> None:
    _insert(store, 1)
    _fail(faulty_vfs.FAIL_WRITE)
    with pytest.raises(StorageFailed):
        _insert(store, 2)
    _fail(faulty_vfs.FAIL_WRITE, on=False)
    _insert(store, 3)
    assert _rows(store) == [1, 3]


def test_a_read_that_fails_is_a_storage_fault(store: Store) -> None:
    _insert(store, 1)
    _fail(faulty_vfs.FAIL_READ)
    with pytest.raises(sa.exc.OperationalError) as raised:
        _rows(store)
    assert faults.kind(raised.value) is StorageFailed
    assert not isinstance(raised.value, StoreError)  # reads are not translated by the store
    _fail(faulty_vfs.FAIL_READ, on=False)
    assert _rows(store) == [1]
