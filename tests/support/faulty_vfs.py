"""A fault-injecting SQLite VFS: the real "unix" VFS below a real database, except
that, while a switch file exists, every xSync (fsync) or xWrite of a database's WAL
file fails with SQLITE_IOERR_FSYNC or SQLITE_IOERR_WRITE, as a disk that refuses, or
its xWrite with SQLITE_FULL, as a full disk, or with SQLITE_READONLY, as a database
that cannot be written, or every xRead of the database or its WAL with
SQLITE_IOERR_READ, or with SQLITE_CORRUPT, as a damaged file, or with
SQLITE_IOERR_CORRUPTFS, as the unix VFS answers a read the file system refused (EIO),
or every xOpen of a database or its WAL with SQLITE_CANTOPEN, as a folder gone.

The switches are files in the folder named by ``SAFEHOLD_TEST_FAULTS`` (``fail-sync``,
``fail-write``, ``disk-full``, ``fail-read``, ``read-only``, ``corrupt``, ``corrupt-fs``,
``cant-open``), so that a test
flips them in a server process it started. Run as a script, this module registers the VFS and then runs the
``safehold`` CLI with its arguments (``python faulty_vfs.py serve --data-dir …``); with
``SAFEHOLD_TEST_SQLITE_VFS=faulty`` every connection of the store uses it. The VFS is
registered at import, so a spawned child process (which re-imports this script as its
main module) has it too."""

from __future__ import annotations

import os
from pathlib import Path

import apsw

NAME = "faulty"
FAULTS_ENV = "SAFEHOLD_TEST_FAULTS"
FAIL_SYNC = "fail-sync"
FAIL_WRITE = "fail-write"
DISK_FULL = "disk-full"
FAIL_READ = "fail-read"
READ_ONLY = "read-only"
CORRUPT = "corrupt"
CORRUPT_FS = "corrupt-fs"
CANT_OPEN = "cant-open"


def _failing(switch: str) -> bool:
    folder = os.environ.get(FAULTS_ENV)
    return folder is not None and (Path(folder) / switch).exists()


class FaultyFile(apsw.VFSFile):
    def __init__(self, inherit: str, name: apsw.URIFilename | str | None, flags: list[int]) -> None:
        # Only the WAL: a commit in WAL mode writes and fsyncs the log, not the database.
        self.wal = bool(flags[0] & apsw.SQLITE_OPEN_WAL)
        self.data = self.wal or bool(flags[0] & apsw.SQLITE_OPEN_MAIN_DB)
        super().__init__(inherit, name, flags)

    def xSync(self, flags: int) -> None:
        if self.wal and _failing(FAIL_SYNC):
            raise apsw.exception_for(apsw.SQLITE_IOERR_FSYNC)
        super().xSync(flags)

    def xWrite(self, data: bytes, offset: int) -> None:
        if self.wal and _failing(FAIL_WRITE):
            raise apsw.exception_for(apsw.SQLITE_IOERR_WRITE)
        if self.wal and _failing(DISK_FULL):
            raise apsw.exception_for(apsw.SQLITE_FULL)
        if self.wal and _failing(READ_ONLY):
            raise apsw.exception_for(apsw.SQLITE_READONLY)
        super().xWrite(data, offset)

    def xRead(self, amount: int, offset: int) -> bytes:
        if self.data and _failing(FAIL_READ):
            raise apsw.exception_for(apsw.SQLITE_IOERR_READ)
        if self.data and _failing(CORRUPT):
            raise apsw.exception_for(apsw.SQLITE_CORRUPT)
        if self.data and _failing(CORRUPT_FS):
            raise apsw.exception_for(apsw.SQLITE_IOERR_CORRUPTFS)
        return super().xRead(amount, offset)


class FaultyVFS(apsw.VFS):
    def __init__(self) -> None:
        super().__init__(NAME, "unix")

    def xOpen(self, name: apsw.URIFilename | str | None, flags: list[int]) -> FaultyFile:
        if flags[0] & (apsw.SQLITE_OPEN_MAIN_DB | apsw.SQLITE_OPEN_WAL) and _failing(CANT_OPEN):
            raise apsw.exception_for(apsw.SQLITE_CANTOPEN)
        return FaultyFile("unix", name, flags)


VFS = FaultyVFS()

if __name__ == "__main__":
    from safehold.cli.main import main

    main(prog_name="safehold")
