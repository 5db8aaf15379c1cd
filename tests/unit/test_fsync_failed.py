"""A failed fsync is told apart from other I/O errors (it stops the process, fsyncgate),
on a real SQLite below a fault-injecting VFS (tests/support/faulty_vfs.py).
The server-level behaviour is in tests/integration/test_disk_faults.py; the upgrade
runner's, which writes through the engine, is here."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from safehold import config
from safehold.errors import StoreError
from safehold.store import engine as engine_mod
from safehold.store import sqlite_dbapi, versioning
from safehold.store.checkpoint import Checkpointer
from safehold.store.repo import Store
from safehold.upgrade import runner
from tests.support import faulty_store, faulty_vfs, migrations


class _Stopped(BaseException):
    """Stands for the process exit of engine.fatal_fsync."""


@pytest.mark.parametrize("code, fsync", [
    (apsw.SQLITE_IOERR_FSYNC, True), (apsw.SQLITE_IOERR_DIR_FSYNC, True),
    (apsw.SQLITE_IOERR_WRITE, False), (apsw.SQLITE_IOERR, False), (apsw.SQLITE_FULL, False)])
def test_fsync_failure_is_known_by_its_extended_code(code: int, fsync: bool) -> None:
    # SQLite's message for all of these is "disk I/O error" (or "database or disk is full").
    raised = apsw.exception_for(code)
    assert isinstance(raised, apsw.Error)
    err = sqlite_dbapi._translate(raised)
    assert isinstance(err, sqlite_dbapi.FsyncFailed) is fsync
    assert isinstance(err, sqlite_dbapi.OperationalError)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    def stop(exc: BaseException) -> None:
        raise _Stopped(exc)
    monkeypatch.setattr(engine_mod, "fatal_fsync", stop)
    s = faulty_store.open_store(tmp_path, monkeypatch)
    yield s
    faulty_store.close(s)


@pytest.mark.parametrize("in_block", [False, True], ids=["write", "writing_now"])
def test_a_commit_whose_fsync_fails_stops_the_process(store: Store, in_block: bool) -> None:
    faulty_store.insert(store, 1)
    faulty_store.fail(faulty_vfs.FAIL_SYNC)
    # Nothing may touch the database after the failure (the process is gone), so one
    # commit path a test: the group commit's, or the event loop's block.
    with pytest.raises(_Stopped):
        if in_block:
            with store.writing_now():
                faulty_store.insert(store, 2)
        else:
            faulty_store.insert(store, 2)


def test_a_checkpoint_whose_fsync_fails_stops_the_process(store: Store) -> None:
    faulty_store.insert(store, 1)  # frames in the log for the checkpoint to copy
    checkpointer = Checkpointer.of(store.engine)
    assert checkpointer is not None
    stopped: list[BaseException] = []
    checkpointer.fatal = stopped.append
    faulty_store.fail(faulty_vfs.FAIL_SYNC)
    with store.engine.connect() as conn:
        lite = conn.connection.dbapi_connection
        assert isinstance(lite, sqlite_dbapi.Connection)
        checkpointer.run(lite)
    assert len(stopped) == 1 and isinstance(stopped[0], sqlite_dbapi.FsyncFailed)


def test_a_commit_whose_write_fails_is_an_error_and_the_store_goes_on(store: Store) -> None:
    faulty_store.insert(store, 1)
    faulty_store.fail(faulty_vfs.FAIL_WRITE)
    with pytest.raises(StoreError):
        faulty_store.insert(store, 2)
    with pytest.raises(StoreError):
        with store.writing_now():
            faulty_store.insert(store, 3)
    faulty_store.fail(faulty_vfs.FAIL_WRITE, on=False)
    faulty_store.insert(store, 4)
    assert faulty_store.rows(store) == [1, 4]


@pytest.mark.parametrize("at", ["first-write", "migration-commit"])
def test_an_upgrade_whose_fsync_fails_stops_at_once_and_the_next_run_finishes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: str) -> None:
    """fsyncgate in `safehold upgrade` (its own writes go through the engine, not the
    store's writer): a failed fsync stops the process, no rollback, local-copy restore or
    marker write after it; the next run, in a new process, finishes or rolls back."""
    # Connections the tests above left to the garbage collector would close (and sync)
    # below this test's switches: closed now, before they exist.
    gc.collect()
    data = tmp_path / "data"
    data.mkdir()
    faults_dir = tmp_path / "faults"
    faults_dir.mkdir()
    monkeypatch.setenv(sqlite_dbapi.TEST_VFS_ENV, faulty_vfs.NAME)
    monkeypatch.setenv(faulty_vfs.FAULTS_ENV, str(faults_dir))
    settings = config.load(None, {"data_dir": str(data)}, environ={})
    engine = engine_mod.create(settings.db_url())
    engine_mod.ensure_schema(engine)
    folder = tmp_path / "migrations"
    migrations.add(folder, "tfsync")
    monkeypatch.setenv(engine_mod.TEST_MIGRATIONS_ENV, str(folder))

    def stop(exc: BaseException) -> None:
        raise _Stopped(exc)
    monkeypatch.setattr(engine_mod, "fatal_fsync", stop)
    recovered: list[BaseException] = []
    monkeypatch.setattr(runner, "_recover", lambda store, marker, exc, say: recovered.append(exc))
    armed = [at == "migration-commit"]

    def pause(step: str) -> None:
        if step == "verified" and armed[0]:
            faulty_store.fail(faulty_vfs.FAIL_SYNC)  # the migration transaction's COMMIT
            armed[0] = False
    monkeypatch.setattr(runner, "pause_point", pause)
    if at == "first-write":
        faulty_store.fail(faulty_vfs.FAIL_SYNC)  # the override's record in meta
    said: list[str] = []
    opts = runner.Options(override="test: no replica")
    with pytest.raises(_Stopped):
        runner.upgrade(Store(engine, settings.tmp_dir), settings, opts, said.append)
    assert recovered == [] and "failed to fsync" in said[-1]
    faulty_store.fail(faulty_vfs.FAIL_SYNC, on=False)
    engine.dispose()

    engine = engine_mod.create(settings.db_url())  # "the next process"
    try:
        runner.upgrade(Store(engine, settings.tmp_dir), settings, opts, said.append)
        assert engine_mod.schema_state(engine) == ("tfsync", "tfsync")
        assert versioning.marker(engine) is None
        assert engine_mod.integrity_check(engine) == "ok"
    finally:
        engine.dispose()
