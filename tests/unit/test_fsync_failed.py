"""A failed fsync is told apart from other I/O errors (it stops the process, fsyncgate),
on a real SQLite below a fault-injecting VFS (tests/support/faulty_vfs.py).
The server-level behaviour is in tests/integration/test_disk_faults.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from safehold.errors import StoreError
from safehold.store import engine as engine_mod
from safehold.store import sqlite_dbapi
from safehold.store.checkpoint import Checkpointer
from safehold.store.repo import Store
from tests.support import faulty_store, faulty_vfs


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
    s.engine.dispose()


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
