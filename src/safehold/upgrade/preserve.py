"""What an upgrade keeps before it touches the schema:

- on every replica, a snapshot at the last change, pinned (``pinned_until`` in the
  manifest) for ``PIN_DAYS``: replica retention never removes it before then, so the
  pre-upgrade state can be restored from the replica alone for a month;
- with SQLite, a local copy (``VACUUM INTO`` DATA_DIR/upgrades/pre-REV-TIME.db): a
  consistent copy taken in one read transaction, so that restoring the pre-upgrade
  state needs neither the network nor the recovery kit. PostgreSQL has no cheap
  equivalent here; there the pinned snapshots (and the operator's own PostgreSQL
  backups) are the copy."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from safehold.backup import manifest as manifest_mod
from safehold.backup.replica_client import open_replica
from safehold.backup.setup import BackupConfig
from safehold.backup.shipper import LineageMismatch, Shipper
from safehold.errors import SafeholdError
from safehold.store import engine as engine_mod
from safehold.store import sqlite_dbapi
from safehold.store.repo import Store

PIN_DAYS = 30
Say = Callable[[str], None]


def pin_snapshots(store: Store, config: BackupConfig, snapshot_every: int, say: Say,
                  now: float | None = None, turn_timeout: float = 60.0) -> dict[str, int]:
    """Ship what is left and write (or pin) a snapshot at the last change on every
    replica. Returns {replica url: pinned seq}; raises SafeholdError on failure."""
    if config.problem or config.key is None:
        raise SafeholdError(config.problem or "no backup key")
    until = (time.time() if now is None else now) + PIN_DAYS * 86400
    replicas = [open_replica(u) for u in config.replicas]
    shipper = Shipper(store, config.key, replicas, store.lineage(), snapshot_every)
    deadline = time.monotonic() + turn_timeout
    pinned: dict[str, int] = {}
    while True:
        with store.shipping_turn() as mine:
            if mine:
                for replica in replicas:
                    result = shipper.ship_once(replica)
                    man = manifest_mod.read(replica, config.key)
                    if man is None or man.lineage != shipper.lineage:
                        raise LineageMismatch(f"{replica.url} holds no manifest of this server")
                    name = shipper.snapshot(replica, man, result.shipped_seq, pin_until=until)
                    pinned[replica.url] = result.shipped_seq
                    say(f"pinned {name} on {replica.url} until "
                        f"{time.strftime('%Y-%m-%d', time.localtime(until))}")
                return pinned
        if time.monotonic() > deadline:
            raise SafeholdError(f"another process kept the shipping turn for {turn_timeout:.0f} s")
        time.sleep(0.2)


def local_copy(store: Store, data_dir: Path, label: str) -> Path | None:
    """SQLite only: a consistent copy of the database under DATA_DIR/upgrades/."""
    if not engine_mod.is_sqlite(store.engine):
        return None
    folder = data_dir.resolve() / "upgrades"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"pre-{label}-{time.strftime('%Y%m%dT%H%M%S')}.db"
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with store.engine.connect() as conn:
        # VACUUM runs outside a transaction (the shim begins none for it) and reads
        # one consistent snapshot of the database.
        conn.exec_driver_sql("VACUUM INTO ?", (str(partial),))
    with open(partial, "rb") as fh:
        os.fsync(fh.fileno())  # VACUUM INTO does not sync its output
    os.replace(partial, path)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def restore_local_copy(store: Store, path: Path) -> None:
    """Copy every page of the pre-upgrade copy back into the live database, in one
    transaction of SQLite's online backup API (other connections wait, then see
    either the old or the restored state)."""
    import apsw
    source = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        with store.engine.connect() as conn:
            dbapi = conn.connection.dbapi_connection
            assert isinstance(dbapi, sqlite_dbapi.Connection)
            with dbapi.apsw.backup("main", source, "main") as backup:
                backup.step(-1)
    finally:
        source.close()
