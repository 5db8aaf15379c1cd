"""The server's big backup jobs, each in a child process: restore drills, snapshots
and replica retention.

A drill restores the replica into a scratch database and digests both sides at one
seq; a snapshot reads the whole change log and version table (and, in format 2, the
small bodies) into one object; replica retention decodes every kept snapshot and
restores the kept chain twice. For a server of 100,000 items either holds a few
hundred MB for a while, and in the serving process that memory would stay: CPython
and glibc rarely hand freed memory back to the OS, so the server's resident size would
carry the peak of every drill and snapshot. A child process started fresh (``spawn``:
no copy of the server's memory, no threads inherited mid-lock) opens the store and the
backup key itself from the same settings, does the job with the same code as
`safehold drill` / `safehold backup now`, returns a small result and exits; its memory
goes back to the OS. It dies with the server (PR_SET_PDEATHSIG), so a killed server
never leaves a child writing to its replica. It runs at a lower CPU priority than the
server (niceness +10): on a small machine a snapshot child competed with the requests
for the cores (a 70 ms vCard PUT fell inside a 2 s snapshot at N = 10,000), and
nothing waits on a backup job the way a client waits on its answer. For the same reason
a snapshot child writes nothing to the database (Shipper.make_snapshot): preempted while
it held SQLite's write lock, it made the server's writers wait (a 254 ms PUT).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from safehold import __version__
from safehold.backup import drill as drill_mod
from safehold.backup import retention as retention_mod
from safehold.backup import setup
from safehold.backup.crypto import Key
from safehold.backup.drill import DrillResult
from safehold.backup.replica_client import ReplicaClient, open_replica
from safehold.backup.shipper import BuiltSnapshot, Shipper
from safehold.config import Settings
from safehold.errors import ConfigError, SafeholdError
from safehold.store import engine as engine_mod
from safehold.store import replication as rep
from safehold.store.repo import Store

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1
CHILD_NICENESS = 10  # added to the server's; the kernel caps the sum at 19


def drill(settings: Settings, store: Store, replica: ReplicaClient, key: Key) -> list[DrillResult]:
    """Drill ``replica`` in a child process; a ``memory://`` replica (tests) lives only
    in this process, so it is drilled here."""
    if replica.url.startswith("memory://"):
        return drill_mod.drill(store, replica, key)
    return _in_child(_drill_child, settings, replica.url, key.fingerprint)


def retention(settings: Settings, store: Store, replica: ReplicaClient, key: Key,
              keep_snapshots: int, keep_days: float) -> retention_mod.Plan:
    """Replica retention (both phases) in a child process: at 100,000 items its proof
    took the server from 146 to 738 MiB. It takes the shipping turn from there (a lock
    shared by processes) for phase 2. A ``memory://`` replica runs here."""
    if replica.url.startswith("memory://"):
        return retention_mod.run(store, replica, key, keep_snapshots, keep_days)
    return _in_child(_retention_child, settings, replica.url, key.fingerprint, keep_snapshots,
                     keep_days)


def snapshot(settings: Settings, fingerprint: str, replica_url: str, seq: int
             ) -> BuiltSnapshot:
    """Build and upload the snapshot at ``seq`` from a child process, which writes
    nothing to the database (Shipper.make_snapshot); the shipper records and names it."""
    return _in_child(_snapshot_child, settings, replica_url, fingerprint, seq)


def _in_child(fn: Callable[..., T], *args: object) -> T:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_start_child,
                             initargs=(os.getpid(),)) as pool:
        try:
            return pool.submit(_checked, __version__, fn, *args).result()
        except BrokenProcessPool as exc:
            # A SafeholdError, so that the shipper and the drill schedule record it and
            # retry at their next pass instead of their thread dying.
            raise SafeholdError(f"the child process for {fn.__name__.strip('_')} died before it "
                                "finished (killed, or out of memory); it is retried at the next "
                                "pass") from exc


def _start_child(parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    os.nice(CHILD_NICENESS)


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this child when the server dies; and exit now if it died while this
    child was still starting (before the request below could take effect)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def _checked(parent_version: str, fn: Callable[..., T], *args: object) -> T:
    if __version__ != parent_version:
        # A child imports the code installed now: after an upgrade in place it would
        # write with a release the running server (and its schema) may not match.
        raise ConfigError(f"safehold {__version__} is installed but the server runs "
                          f"{parent_version}; restart the server (docs/upgrades.md)")
    return fn(*args)


def _open(settings: Settings, fingerprint: str) -> tuple[Store, Key]:
    # The server's database, never a new one: had its file gone, the child would leave an
    # empty one that the server, restarted, would take for a first start.
    store = Store(engine_mod.create(settings.db_url(), new=False), settings.tmp_dir)
    key = setup.resolve(settings, store).key
    if key is None or key.fingerprint != fingerprint:
        store.engine.dispose()
        raise ConfigError("the backup child process could not load the key the server uses; "
                          "check the key file (docs/backups.md)")
    return store, key


def _drill_child(settings: Settings, replica_url: str, fingerprint: str) -> list[DrillResult]:
    store, key = _open(settings, fingerprint)
    try:
        return drill_mod.drill(store, open_replica(replica_url), key)
    finally:
        store.engine.dispose()


def _snapshot_child(settings: Settings, replica_url: str, fingerprint: str, seq: int
                    ) -> BuiltSnapshot:
    store, key = _open(settings, fingerprint)
    try:
        replica = open_replica(replica_url)
        # Read, not store.lineage(), which takes the write lock to create a missing one
        # (the server created it before it started this child).
        lineage = rep.get_meta(store, "lineage") or store.lineage()
        shipper = Shipper(store, key, [replica], lineage, settings.snapshot_every)
        return shipper.make_snapshot(replica, shipper._manifest(replica), seq)
    finally:
        store.engine.dispose()


def _retention_child(settings: Settings, replica_url: str, fingerprint: str,
                     keep_snapshots: int, keep_days: float) -> retention_mod.Plan:
    store, key = _open(settings, fingerprint)
    try:
        return retention_mod.run(store, open_replica(replica_url), key, keep_snapshots,
                                 keep_days)
    finally:
        store.engine.dispose()
