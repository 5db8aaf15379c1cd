"""A store on the fault-injecting VFS (tests/support/faulty_vfs.py) holding one table
``t(x)``: what the unit tests of a failing disk write to and read back."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from safehold.store import engine as engine_mod
from safehold.store import sqlite_dbapi
from safehold.store.repo import Store
from tests.support import faulty_vfs


def open_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A new store in ``tmp_path`` whose connections use the faulty VFS, its switches in
    ``tmp_path/faults`` (flipped by ``fail``); the caller disposes of its engine."""
    # Garbage from earlier tests (a connection on this VFS) closed now, while no fault
    # is on: closed later, it would read through this test's switches, and the faults
    # it met there would be reported as unraisable exceptions in this test.
    gc.collect()
    faults = tmp_path / "faults"
    faults.mkdir()
    monkeypatch.setenv(sqlite_dbapi.TEST_VFS_ENV, faulty_vfs.NAME)
    monkeypatch.setenv(faulty_vfs.FAULTS_ENV, str(faults))
    store = Store(engine_mod.create(f"sqlite:///{tmp_path / 'x.db'}"), tmp_path)
    store._write(lambda c: c.exec_driver_sql("CREATE TABLE t (x INTEGER)"))
    return store


def close(store: Store) -> None:
    """Turn every fault off, then close the store's connections, none left for later."""
    for switch in Path(os.environ[faulty_vfs.FAULTS_ENV]).iterdir():
        switch.unlink()
    store.engine.dispose()
    gc.collect()


def insert(store: Store, x: int) -> None:
    store._write(lambda c: c.exec_driver_sql(f"INSERT INTO t VALUES ({x})"))


def rows(store: Store) -> list[int]:
    return store._read(lambda c: [r[0] for r in c.exec_driver_sql("SELECT x FROM t ORDER BY x")])


def fail(switch: str, on: bool = True) -> None:
    """Turn a fault of faulty_vfs on (or off) for the store ``open_store`` made."""
    path = Path(os.environ[faulty_vfs.FAULTS_ENV]) / switch
    if on:
        path.touch()
    else:
        path.unlink()
