"""The WAL checkpoint, kept off the HTTP event loop.

SQLite copies the write-ahead log back into the database file when a commit leaves
the log at 1,000 pages or more (its automatic checkpoint), inside that commit's call.
A small PUT commits on the server's event loop (Store.writing_now), so the commit that
crossed the mark held every other client for the whole checkpoint: on a copy of a
10,000-item database one commit in ~245 took 18-22 ms against a median of 0.69 ms.

Here the WAL hook only records the log's size (``log_pages``; a WAL hook replaces
SQLite's automatic checkpoint). The store's writer checkpoints after its commit, on
its own connection and still under the write lock, exactly where SQLite would have,
but only on a worker thread: a write that would run on the event loop while a
checkpoint is due is refused there (WriteBusy, nothing written) and goes to a worker
thread like any write that must wait, which then checkpoints. So the log starts over
as it did before (a checkpoint that no write of this process races with), and the
event loop never checkpoints. A checkpoint whose fsync fails stops the process, as a
commit's does (fsyncgate); the automatic checkpoint's errors went unreported.

A thread of its own was tried first and dropped: writers that never pause (an
import, a stream of PUTs) kept appending while it ran, so the log rarely caught up
and started over, and a one-client PUT stream got slower (676 -> 500 PUT/s, p99.9
16 -> 40 ms, same run).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable
from typing import Any

import apsw
from sqlalchemy.engine import Engine

from safehold.store import sqlite_dbapi

log = logging.getLogger(__name__)

PAGES = 1000  # SQLite's own default for its automatic checkpoint
_BY_ENGINE: weakref.WeakKeyDictionary[Engine, Checkpointer] = weakref.WeakKeyDictionary()


class Checkpointer:
    """The checkpoint of one SQLite database (one per engine; see engine.create)."""

    @staticmethod
    def of(engine: Engine) -> Checkpointer | None:
        return _BY_ENGINE.get(engine)

    def __init__(self, engine: Engine, fatal: Callable[[BaseException], None],
                 pages: int = PAGES) -> None:
        _BY_ENGINE[engine] = self
        self.fatal = fatal  # engine.fatal_fsync
        self.pages = pages
        self.log_pages = 0  # the log's size after the latest commit of this engine
        self.runs = 0  # checkpoints done (tests)
        self._file: tuple[str, int] | None = None  # (path, inode) of the database file
        self.vanished = False

    def watch(self, path: str) -> None:
        """Note the database file the engine's first connection opened (its inode)."""
        if self._file is None and path and os.path.exists(path):
            self._file = (path, os.stat(path).st_ino)

    def wal_hook(self, _db: Any, _name: str, pages: int) -> int:
        """SQLite's WAL hook: called on the committing thread after each commit."""
        self.log_pages = pages
        if self._file is not None and not self._still_there(*self._file):
            # The file was deleted, moved or replaced while open: this commit went into
            # a file no one will find again (a deleted one is gone when the process
            # exits). SQLite reports an error returned here from the COMMIT, so the write
            # is answered 503 (store/faults.py: StorageUnreachable) and the client keeps
            # its copy, instead of a 2xx for data that is lost.
            return apsw.SQLITE_CANTOPEN
        return 0  # SQLITE_OK

    def _still_there(self, path: str, inode: int) -> bool:
        try:
            found = os.stat(path).st_ino == inode
        except OSError:
            found = False
        if not found and not self.vanished:
            log.error("the database file %s was deleted, moved or replaced while the server "
                      "ran: writes are refused (503) until it is renamed back; if it was deleted, stop "
                      "the server and restore the database (safehold restore)", path)
        self.vanished = not found
        return found

    @property
    def due(self) -> bool:
        return self.log_pages >= self.pages

    def run(self, lite: sqlite_dbapi.Connection) -> None:
        """A PASSIVE checkpoint on ``lite``, outside any transaction (the caller just
        committed and holds the store's write lock)."""
        try:
            lite.checkpoint()
        except sqlite_dbapi.FsyncFailed as exc:
            self.fatal(exc)
        except sqlite_dbapi.Busy:
            # Another process (`safehold import`, the CLI) checkpoints right now.
            log.debug("WAL checkpoint skipped: another connection is checkpointing")
        except sqlite_dbapi.Error:
            # The next commit meets and reports a real I/O problem; the log stays.
            log.warning("WAL checkpoint failed; it is tried again after the next write",
                        exc_info=True)
        else:
            self.runs += 1
            self.log_pages = 0
