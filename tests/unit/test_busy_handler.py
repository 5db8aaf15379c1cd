"""Waiting for a lock another connection holds (store/sqlite_dbapi.py busy_handler):
short, even retries until the timeout, instead of SQLite's sleeps of up to 100 ms;
then Busy. On real SQLite files, two connections as two processes would hold them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from safehold.store import sqlite_dbapi


def test_the_handler_retries_evenly_until_the_timeout() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    handler = sqlite_dbapi.busy_handler(50, sleep=sleep, clock=lambda: now[0])
    tries = 0
    while handler(tries):
        tries += 1
    assert slept and set(slept) == {sqlite_dbapi.BUSY_RETRY_SECONDS}
    assert 0.05 <= now[0] - 100.0 < 0.05 + 2 * sqlite_dbapi.BUSY_RETRY_SECONDS
    # A new wait starts its own clock.
    assert handler(0) is True


def test_a_writer_waits_for_another_connections_lock_and_then_gets_it(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    holder = sqlite_dbapi.connect(path, timeout=5.0)
    waiter = sqlite_dbapi.connect(path, timeout=5.0)
    holder.apsw.execute("PRAGMA journal_mode=WAL")
    holder.apsw.execute("CREATE TABLE t (x)")
    holder.begin_immediate()
    got = threading.Event()

    def wait() -> None:
        waiter.begin_immediate()
        got.set()

    thread = threading.Thread(target=wait)
    thread.start()
    assert not got.wait(0.2)  # still held
    holder.apsw.execute("INSERT INTO t VALUES (1)")
    holder.commit()
    assert got.wait(5.0)
    thread.join()
    waiter.run("INSERT INTO t VALUES (2)", ())
    waiter.commit()
    assert holder.run("SELECT count(*) FROM t", ()) == [(2,)]
    holder.close()
    waiter.close()


def test_a_writer_gives_up_after_its_timeout_and_a_no_wait_one_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    holder = sqlite_dbapi.connect(path, timeout=5.0)
    waiter = sqlite_dbapi.connect(path, timeout=0.1)
    holder.apsw.execute("PRAGMA journal_mode=WAL")
    holder.begin_immediate()
    with pytest.raises(sqlite_dbapi.Busy):
        waiter.begin_immediate()
    with pytest.raises(sqlite_dbapi.Busy):
        waiter.begin_immediate(wait=False)
    holder.rollback()
    waiter.begin_immediate()  # the handler is back after a no-wait try
    waiter.rollback()
    holder.close()
    waiter.close()
