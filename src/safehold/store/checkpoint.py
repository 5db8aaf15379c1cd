"""The WAL checkpoint, run beside the writers instead of inside a commit.

SQLite copies the write-ahead log back into the database file when a commit leaves
the log at 1,000 pages or more (its automatic checkpoint), inside that commit's call.
A small PUT commits on the server's event loop, so the commit that crossed the mark
held every other client for the whole checkpoint: on a copy of a 10,000-item
database one commit in ~245 took 18-22 ms against a median of 0.69 ms, and with
14 b-trees per commit (a table of 60,000 rows each, machine under load) the automatic
checkpoint put the p99.9 of a commit at 42-53 ms against 12 ms without it.

Here a commit that leaves the log at ``PAGES`` or more only starts a thread (if none
runs), which takes a pooled connection and runs the same PASSIVE checkpoint: it never
waits for a reader or a writer, and writers keep appending to the log meanwhile
(safe with the SQLite this project brings, which has no WAL-reset race; see
sqlite_dbapi). The thread checkpoints again while commits keep the log at ``PAGES``
or more, then ends. Only a commit that leaves the log at ``LIMIT`` pages waits, for a
checkpoint that began after it, so the log stays bounded under any write rate. A
checkpoint whose fsync fails stops the process, as a commit's does (fsyncgate); the
automatic checkpoint's errors went unreported.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from safehold.store import sqlite_dbapi

log = logging.getLogger(__name__)

PAGES = 1000  # SQLite's own default for its automatic checkpoint
# Past this the committing thread waits for a checkpoint, as SQLite's own would: without
# it a steady stream of writes (an import, the PUT benchmark) outran the thread and the
# log grew for as long as the stream lasted, since it starts over only after a
# checkpoint that caught up with the last commit.
LIMIT = 4 * PAGES
_WAIT_MAX = 30.0  # seconds; a pass that hangs longer is not waited for
_BY_ENGINE: weakref.WeakKeyDictionary[Engine, Checkpointer] = weakref.WeakKeyDictionary()


class Checkpointer:
    """The checkpoint of one SQLite database (one per engine; see engine.create)."""

    @staticmethod
    def of(engine: Engine) -> Checkpointer | None:
        return _BY_ENGINE.get(engine)

    def __init__(self, engine: Engine, fatal: Callable[[BaseException], None],
                 pages: int = PAGES, limit: int = LIMIT) -> None:
        _BY_ENGINE[engine] = self
        self.engine = engine
        self.fatal = fatal  # engine.fatal_fsync
        self.pages = pages
        self.limit = limit
        self.runs = 0  # checkpoints done (tests, metrics)
        self._cond = threading.Condition()
        self._running = False
        self._again = False
        self._started = 0  # passes begun
        self._finished = 0  # passes ended (done or failed)

    def wal_hook(self, _db: Any, _name: str, pages: int) -> int:
        """SQLite's WAL hook: called on the committing thread after each commit (its
        write lock already released), with the log's size in pages. Must stay cheap: it
        is on the PUT path."""
        if pages >= self.pages:
            due = self.wake()
            if pages >= self.limit:
                self._wait(due)
        return 0  # SQLITE_OK

    def wake(self) -> int:
        """Make sure a pass begins after this call; return its number."""
        with self._cond:
            due = self._started + 1
            if self._running:
                self._again = True
                return due
            self._running = True
        threading.Thread(target=self._run, name="safehold-checkpoint").start()
        return due

    def _wait(self, due: int) -> None:
        """Writers outran the thread: the log only starts over once a pass that began
        after the last commit has ended, so wait for pass ``due`` (bounded: a pass
        that fails ends too)."""
        with self._cond:
            self._cond.wait_for(lambda: self._finished >= due, timeout=_WAIT_MAX)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._started += 1
                number = self._started
            try:
                self._checkpoint()
            except Exception:  # noqa: BLE001 - later commits still need a checkpointer
                log.exception("WAL checkpoint failed; it is tried again after the next commit")
            with self._cond:
                self._finished = number
                self._cond.notify_all()
                more, self._again = self._again, False
                self._running = more
            if not more:
                return

    def _checkpoint(self) -> None:
        try:
            raw = self.engine.raw_connection()
        except Exception:  # the engine is gone (disposed, closed at exit): nothing to do
            log.warning("WAL checkpoint skipped: no database connection", exc_info=True)
            return
        try:
            dbapi = raw.dbapi_connection
            assert isinstance(dbapi, sqlite_dbapi.Connection)
            dbapi.checkpoint()
            self.runs += 1
        except sqlite_dbapi.FsyncFailed as exc:
            self.fatal(exc)
        except sqlite_dbapi.Busy:
            # Another connection (`safehold import`, the CLI) checkpoints right now: that
            # one copies the log back, and the next commit here wakes us again anyway.
            log.debug("WAL checkpoint skipped: another connection is checkpointing")
        except sqlite_dbapi.Error:
            # An I/O error the next commit will meet and report; the log stays as it is
            # and the next commit wakes us again.
            log.warning("WAL checkpoint failed; it is tried again after the next commit",
                        exc_info=True)
        finally:
            raw.close()
