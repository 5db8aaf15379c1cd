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

from safehold.errors import (StorageCorrupt, StorageFailed, StorageFull, StorageReadOnly,
                             StoreError)
from safehold.store import engine as engine_mod
from safehold.store import faults, sqlite_dbapi
from safehold.store.repo import Store
from tests.support import faulty_store, faulty_vfs


@pytest.mark.parametrize("code, kind", [
    (apsw.SQLITE_FULL, StorageFull), (apsw.SQLITE_IOERR_WRITE, StorageFailed),
    (apsw.SQLITE_IOERR_READ, StorageFailed), (apsw.SQLITE_IOERR, StorageFailed),
    (apsw.SQLITE_CORRUPT, StorageCorrupt), (apsw.SQLITE_CORRUPT_INDEX, StorageCorrupt),
    (apsw.SQLITE_NOTADB, StorageCorrupt), (apsw.SQLITE_READONLY, StorageReadOnly),
    (apsw.SQLITE_READONLY_DBMOVED, StorageReadOnly), (apsw.SQLITE_READONLY_CANTINIT, StorageReadOnly),
    (apsw.SQLITE_CONSTRAINT, None), (apsw.SQLITE_ERROR, None), (apsw.SQLITE_CANTOPEN, None),
    (apsw.SQLITE_BUSY, None)])
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
    (psycopg.errors.ReadOnlySqlTransaction("read-only transaction"), StorageReadOnly),  # 25006
    (psycopg.errors.DataCorrupted("invalid page in block 7"), StorageCorrupt),  # XX001
    (psycopg.errors.IndexCorrupted("index contains unexpected zero page"), StorageCorrupt),
    (sa.exc.OperationalError("COMMIT", (), psycopg.errors.DataCorrupted("bad page")),
     StorageCorrupt),  # as SQLAlchemy raises it
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


@pytest.mark.parametrize("code, fsync", [
    (apsw.SQLITE_IOERR_FSYNC, True), (apsw.SQLITE_IOERR_DIR_FSYNC, True),
    (apsw.SQLITE_IOERR_WRITE, False), (apsw.SQLITE_FULL, False)])
def test_a_failed_fsync_is_found_through_its_causes(code: int, fsync: bool) -> None:
    # Where a caller outside the store catches it (upgrade.runner, the CLI's entry).
    translated = sqlite_dbapi._translate(apsw.exception_for(code))
    wrapped = sa.exc.DBAPIError.instance("COMMIT", (), translated, sqlite_dbapi.Error)
    assert faults.fsync_failed(translated) is fsync
    assert faults.fsync_failed(_raised_from(wrapped)) is fsync
    assert faults.kind(translated) is (None if fsync else faults.kind(wrapped))


def _corrupt(path: Path) -> None:
    """Overwrite every page of the database file but the header page with garbage."""
    with open(path, "r+b") as fh:
        size = fh.seek(0, 2)
        fh.seek(4096)
        fh.write(b"\xa5" * (size - 4096))


def test_a_damaged_database_file_is_storage_corrupt(tmp_path: Path) -> None:
    # A real file whose pages were overwritten (no fault injection): a read of it.
    engine = engine_mod.create(f"sqlite:///{tmp_path / 'x.db'}")
    store = Store(engine, tmp_path)
    store._write(lambda c: c.exec_driver_sql("CREATE TABLE t (x TEXT)"))
    store._write(lambda c: c.exec_driver_sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) "
        "INSERT INTO t SELECT hex(randomblob(500)) FROM n"))
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    _corrupt(tmp_path / "x.db")
    engine = engine_mod.create(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(sa.exc.DatabaseError) as raised:
            Store(engine, tmp_path)._read(
                lambda c: c.exec_driver_sql("SELECT count(*), max(x) FROM t").all())
        assert faults.kind(raised.value) is StorageCorrupt
    finally:
        engine.dispose()


def test_a_database_that_cannot_be_written_is_storage_read_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite's own SQLITE_READONLY (the file opened read-only), not injected: a write
    # is StorageReadOnly (HTTP 503), nothing is stored, reads go on.
    monkeypatch.chdir(tmp_path)  # engine.create makes the "file:…" URL's folder, relative
    engine = engine_mod.create(f"sqlite:///{tmp_path / 'x.db'}")
    Store(engine, tmp_path)._write(lambda c: c.exec_driver_sql("CREATE TABLE t (x INTEGER)"))
    engine.dispose()
    ro = engine_mod.create(f"sqlite:///file:{tmp_path / 'x.db'}?mode=ro&uri=true")
    store = Store(ro, tmp_path)
    try:
        with pytest.raises(StorageReadOnly):
            faulty_store.insert(store, 1)
        assert faulty_store.rows(store) == []
    finally:
        ro.dispose()
