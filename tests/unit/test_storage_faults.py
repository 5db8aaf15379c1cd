"""A full disk, a disk's I/O error, a damaged, a read-only database and one that cannot
be opened or reached are told apart from each other and from a bug (store/faults.py:
HTTP 507 and 503, not 500), on a real SQLite below a fault-injecting VFS
(tests/support/faulty_vfs.py), a real EMFILE, a real PostgreSQL; the store rolls the
write back and goes on, and /readyz names the fault without the database's words. The
server-level behaviour is in tests/integration/test_disk_faults.py."""

from __future__ import annotations

import errno
import logging
import os
import resource
from collections.abc import Iterator
from pathlib import Path

import apsw
import psycopg
import anyio
import pytest
import sqlalchemy as sa

from safehold.errors import (StorageCorrupt, StorageFailed, StorageFull, StorageReadOnly,
                             StorageUnreachable, StoreError)
from safehold.http import app as app_mod
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
    (apsw.SQLITE_IOERR_CORRUPTFS, StorageCorrupt), (apsw.SQLITE_CANTOPEN, StorageUnreachable),
    (apsw.SQLITE_CANTOPEN_ISDIR, StorageUnreachable),
    (apsw.SQLITE_CONSTRAINT, None), (apsw.SQLITE_ERROR, None), (apsw.SQLITE_BUSY, None)])
def test_sqlite_errors_are_known_by_their_result_code(code: int, kind: type | None) -> None:
    raised = apsw.exception_for(code)
    assert isinstance(raised, apsw.Error)
    translated = sqlite_dbapi._translate(raised)
    wrapped = sa.exc.DBAPIError.instance("COMMIT", (), translated, sqlite_dbapi.Error)
    assert faults.kind(translated) is kind
    assert faults.kind(wrapped) is kind  # as SQLAlchemy raises it
    assert faults.kind(raised) is kind  # APSW called directly (Store.writable)


def _raised_from(cause: BaseException) -> BaseException:
    try:
        raise RuntimeError("the request failed") from cause
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize("exc, kind", [
    (OSError(errno.ENOSPC, "No space left on device"), StorageFull),  # spooling a body
    (OSError(errno.EDQUOT, "Disk quota exceeded"), StorageFull),
    (OSError(errno.EIO, "Input/output error"), StorageFailed),
    (OSError(errno.EMFILE, "Too many open files"), StorageFailed),
    (OSError(errno.ENFILE, "Too many open files in system"), StorageFailed),
    (psycopg.errors.DiskFull("could not extend file"), StorageFull),  # SQLSTATE 53100
    (psycopg.errors.IoError("could not read block"), StorageFailed),  # 58030
    (psycopg.errors.ReadOnlySqlTransaction("read-only transaction"), StorageReadOnly),  # 25006
    (psycopg.errors.DataCorrupted("invalid page in block 7"), StorageCorrupt),  # XX001
    (psycopg.errors.IndexCorrupted("index contains unexpected zero page"), StorageCorrupt),
    (sa.exc.OperationalError("COMMIT", (), psycopg.errors.DataCorrupted("bad page")),
     StorageCorrupt),  # as SQLAlchemy raises it
    (psycopg.errors.ConnectionFailure("server closed the connection"), StorageUnreachable),
    (psycopg.errors.SqlclientUnableToEstablishSqlconnection("no route"), StorageUnreachable),
    (psycopg.errors.ConnectionException("08000"), StorageUnreachable),
    (psycopg.errors.TooManyConnections("too many clients already"), StorageUnreachable),
    (psycopg.errors.CannotConnectNow("the database system is starting up"), StorageUnreachable),
    (psycopg.errors.AdminShutdown("terminating connection"), StorageUnreachable),  # 57P01
    (psycopg.OperationalError("connection failed: Connection refused"), StorageUnreachable),
    (psycopg.errors.OutOfMemory("out of memory"), StorageFailed),  # 53200
    (psycopg.errors.ConfigurationLimitExceeded("too many locks"), StorageFailed),  # 53400
    (psycopg.errors.QueryCanceled("statement timeout"), None),  # 57014
    (psycopg.InterfaceError("the connection is closed"), None),
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
    faulty_store.close(s)


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
    assert faults.fsync_failed(apsw.exception_for(code)) is fsync  # APSW called directly
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


def test_a_read_the_file_system_calls_corrupt_is_storage_corrupt(store: Store) -> None:
    # SQLITE_IOERR_CORRUPTFS (the unix VFS's answer to EIO on a read): damaged, not a
    # passing I/O error; a checkpoint (outside a statement) reports it the same.
    with store.engine.connect() as conn:
        faulty_store.insert(store, 1)  # in the WAL: the checkpoint reads it
        faulty_store.fail(faulty_vfs.CORRUPT_FS)
        with pytest.raises(sa.exc.DatabaseError) as raised:
            faulty_store.rows(store)
        assert faults.kind(raised.value) is StorageCorrupt
        lite = conn.connection.dbapi_connection
        assert isinstance(lite, sqlite_dbapi.Connection)
        with pytest.raises(sqlite_dbapi.Corrupt):
            lite.checkpoint()
    faulty_store.fail(faulty_vfs.CORRUPT_FS, on=False)
    assert faulty_store.rows(store) == [1]


def test_a_database_that_cannot_be_opened_is_storage_unreachable(store: Store) -> None:
    faulty_store.insert(store, 1)
    store.engine.pool.dispose()  # the next read opens a new connection
    faulty_store.fail(faulty_vfs.CANT_OPEN)
    with pytest.raises(sa.exc.OperationalError) as raised:
        faulty_store.rows(store)
    assert faults.kind(raised.value) is StorageUnreachable
    faulty_store.fail(faulty_vfs.CANT_OPEN, on=False)
    assert faulty_store.rows(store) == [1]  # transient: no restart needed


def test_a_database_whose_folder_is_gone_is_storage_unreachable(tmp_path: Path) -> None:
    # SQLite's own SQLITE_CANTOPEN, not injected: the data folder moved away (a volume
    # unmounted); a new connection cannot open, nor create, the file.
    folder = tmp_path / "data"
    engine = engine_mod.create(f"sqlite:///{folder / 'x.db'}")
    store = Store(engine, tmp_path)
    try:
        store._write(lambda c: c.exec_driver_sql("CREATE TABLE t (x INTEGER)"))
        engine.pool.dispose()
        folder.rename(tmp_path / "moved")
        with pytest.raises(sa.exc.OperationalError) as raised:
            faulty_store.rows(store)
        assert faults.kind(raised.value) is StorageUnreachable
        (tmp_path / "moved").rename(folder)
        assert faulty_store.rows(store) == []
    finally:
        engine.dispose()


def test_too_many_open_files_is_storage_unreachable(tmp_path: Path) -> None:
    # The real EMFILE: the soft limit just above the open descriptors, the gaps filled.
    engine = engine_mod.create(f"sqlite:///{tmp_path / 'x.db'}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (max(int(fd) for fd in os.listdir("/proc/self/fd")) + 2, hard))
        while True:
            try:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        with pytest.raises(sa.exc.OperationalError) as raised:
            engine.connect()
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        engine.dispose()
    assert isinstance(raised.value.orig, sqlite_dbapi.CantOpen)
    assert faults.kind(raised.value) is StorageUnreachable


def test_a_postgresql_server_that_refuses_connections_is_storage_unreachable() -> None:
    # A real refused connection (nothing listens on port 1): psycopg's error has no
    # SQLSTATE, and SQLAlchemy does not mark it as a disconnect.
    engine = engine_mod.create("postgresql://safehold@127.0.0.1:1/safehold")
    try:
        with pytest.raises(sa.exc.OperationalError) as raised:
            engine.connect()
    finally:
        engine.dispose()
    assert faults.kind(raised.value) is StorageUnreachable


def test_a_request_the_database_cannot_be_opened_for_is_503_with_retry_after(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(sqlite_dbapi.CantOpen) as raised:
        sqlite_dbapi.connect(str(tmp_path / "no" / "such" / "x.db"))
    assert faults.kind(raised.value) is StorageUnreachable
    with caplog.at_level(logging.ERROR, "safehold.http"):
        reply = app_mod._failure(raised.value, {"method": "PUT", "path": "/dav/a.vcf"}, "r1")
    assert (reply.status, reply.body, dict(reply.headers).get("Retry-After")) == (
        503, b"the server cannot open its database; nothing was stored. Try again later "
        b"(request id r1)\n", "60")
    assert [r.getMessage() for r in caplog.records] == [
        "request r1 PUT /dav/a.vcf: the database cannot be opened (check that its file and "
        "folder exist and are readable and writable by the server, the open-files limit, "
        "or that the PostgreSQL server is up and accepts connections), nothing was stored: "
        "unable to open database file"]


def test_readyz_tells_a_fault_in_stable_words_and_logs_the_detail(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    assert faulty_store.rows(store) == []  # a pooled connection, then left behind by
    faulty_store.insert(store, 1)           # a write: its next transaction reads the disk
    faulty_store.fail(faulty_vfs.FAIL_READ)
    with pytest.raises(apsw.IOError) as raised:  # Store.writable calls APSW directly
        store.writable()  # what /readyz runs
    with caplog.at_level(logging.WARNING, "safehold.http"):
        reply = app_mod._not_ready(raised.value)
        # Not a storage fault: SQLAlchemy's text holds the SQL and its parameters.
        other = app_mod._not_ready(sa.exc.OperationalError(
            "SELECT x FROM t WHERE p = ?", ("/dav/alice/secret",),
            sqlite_dbapi.OperationalError("no such table: t")))
    assert (reply.status, reply.body) == (503, b"store not writable: a disk I/O error\n")
    assert (other.status, other.body) == (503, b"store not writable: see the server log\n")
    assert [r.getMessage() for r in caplog.records] == [
        "/readyz: the store is not writable (IOError): disk I/O error",
        "/readyz: the store is not writable (OperationalError): no such table: t"]


def test_readyz_and_dav_get_stable_words_when_the_schema_state_cannot_be_read(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # App._paused on a store without the schema (no such table: SQL in SQLAlchemy's
    # text), then with the disk failing its reads: never the database's own words.
    def paused() -> str | None:
        app = type("A", (), {"regressed": None, "_upgrade_checked": (-10.0, None),
                             "store": store, "_schema_head": "head"})()
        return anyio.run(app_mod.App._paused, app)

    with caplog.at_level(logging.WARNING, "safehold.http"):
        missing = paused()
        faulty_store.insert(store, 1)
        faulty_store.fail(faulty_vfs.FAIL_READ)
        failing = paused()
    assert missing == "cannot read the schema state; an upgrade may be running"
    assert failing == "cannot read the schema state: a disk I/O error"
    assert [r.getMessage() for r in caplog.records] == [
        "cannot read the schema state: no such table: meta",
        "cannot read the schema state: disk I/O error"]


@pytest.mark.skipif("postgresql" not in os.environ.get("SAFEHOLD_TEST_DATABASES", "postgresql"),
                    reason="the run is narrowed to SQLite")
def test_postgresql_connection_failures_are_storage_unreachable(postgres: object) -> None:
    # A real server: a backend terminated under a pooled connection (an administrator,
    # a failover), then a role over its connection limit (the server's 53300).
    url: str = postgres.new_database()  # type: ignore[attr-defined]
    role = f"r_{os.getpid()}"
    engine = engine_mod.create(url)
    limited = engine_mod.create(url.replace("postgres@", f"{role}@"))
    with psycopg.connect(url, autocommit=True) as admin:
        try:
            with engine.connect() as conn:
                pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                with pytest.raises(sa.exc.DBAPIError) as raised:
                    conn.exec_driver_sql("SELECT 1")
            assert faults.kind(raised.value) is StorageUnreachable, repr(raised.value.orig)
            admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
            with pytest.raises(sa.exc.OperationalError) as refused:
                limited.connect()
            # psycopg gives no SQLSTATE for a refused connection, whatever the server said.
            assert "too many connections" in str(refused.value)
            assert getattr(refused.value.orig, "sqlstate", None) is None
            assert faults.kind(refused.value) is StorageUnreachable
        finally:
            engine.dispose()
            limited.dispose()
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
