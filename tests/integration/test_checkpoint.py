"""The WAL checkpoint runs on a thread of its own, not inside a commit (store/checkpoint.py)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from safehold.store import engine as engine_mod
from safehold.store import sqlite_dbapi
from safehold.store.checkpoint import LIMIT, Checkpointer

PAGE = 4096


def _fill(engine: sa.Engine, pages: int) -> None:
    """About ``pages`` WAL pages, ten one-page rows per commit."""
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, b BLOB)")
    for _ in range(pages // 10):
        with engine.begin() as conn:
            for _ in range(10):
                conn.exec_driver_sql("INSERT INTO filler (b) VALUES (?)", (os.urandom(3500),))


def _wal_pages(path: Path) -> int:
    return (path.parent / (path.name + "-wal")).stat().st_size // PAGE


def test_a_commit_that_fills_the_log_leaves_the_checkpoint_to_a_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    original = sqlite_dbapi.Connection.checkpoint

    def recording(self: sqlite_dbapi.Connection) -> None:
        threads.append(threading.current_thread().name)
        time.sleep(0.05)  # a slow disk: the writer below outruns the checkpoints
        original(self)
    monkeypatch.setattr(sqlite_dbapi.Connection, "checkpoint", recording)
    path = tmp_path / "db.sqlite"
    engine = engine_mod.create(f"sqlite:///{path}")
    try:
        checkpointer = Checkpointer.of(engine)
        assert checkpointer is not None
        _fill(engine, 6000)
        deadline = time.monotonic() + 10
        while checkpointer.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checkpointer.runs >= 1
        assert threads and set(threads) == {"safehold-checkpoint"}

        # However fast the writer, the log starts over by LIMIT pages: it did not grow to
        # the 6,000 pages written.
        assert _wal_pages(path) < LIMIT + 100
    finally:
        engine.dispose()


def test_no_commit_checkpoints_by_itself(tmp_path: Path) -> None:
    """SQLite's automatic checkpoint is off: with the thread's mark out of reach, the log
    grows past SQLite's 1,000 pages instead of being copied back inside a commit."""
    path = tmp_path / "db.sqlite"
    engine = engine_mod.create(f"sqlite:///{path}")
    try:
        checkpointer = Checkpointer.of(engine)
        assert checkpointer is not None
        checkpointer.pages = 10**9
        _fill(engine, 1500)
        assert _wal_pages(path) >= 1400
        assert checkpointer.runs == 0
    finally:
        engine.dispose()
