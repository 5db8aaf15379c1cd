"""Where the key lives and which replicas to ship to.

The key is kept in the data directory (``backup.key``, mode 0600) so the server can
encrypt, and in the recovery kit the operator keeps elsewhere; never in a replica.
`safehold backup init` chooses replicas and writes the kit; with no configuration at
all the first start ships to DATA_DIR/replica and writes the kit beside it (status
shows that in amber: same disk as the data)."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from safehold.backup.crypto import Key, KeyError_, new_key, read_kit, write_kit
from safehold.config import Settings
from safehold.store import replication as rep
from safehold.store.repo import Store


@dataclass(frozen=True)
class BackupConfig:
    replicas: list[str]
    key: Key | None
    problem: str | None  # why shipping cannot run, if it cannot
    kit_path: str | None
    local_only: bool  # every replica is on this machine's disk


def key_path(settings: Settings) -> Path:
    return settings.data_dir / "backup.key"


def default_replica(settings: Settings) -> str:
    return "file://" + str((settings.data_dir / "replica").resolve())


def _save_key(settings: Settings, key: Key) -> None:
    path = key_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside, then renamed over: a process killed mid-write (a restore or
    # `backup init` rewriting the same key) never leaves a truncated key behind.
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(key.secret).decode() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dirfd = os.open(path.parent, os.O_RDONLY)  # the rename itself on disk
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def _load_key(settings: Settings) -> Key | None:
    try:
        return Key(base64.b64decode(key_path(settings).read_text().strip()))
    except FileNotFoundError:
        return None


def read_key(path: Path) -> Key | None:
    """The key a ``backup.key`` file or a recovery kit holds, or None when it holds
    none that can be read."""
    if path.suffix == ".json":
        try:
            return read_kit(path)[0]
        except (KeyError_, OSError):
            return None
    try:
        key = Key(base64.b64decode(path.read_text().strip(), validate=True))
    except (OSError, ValueError):
        return None
    return key if len(key.secret) == 32 else None


def init(settings: Settings, store: Store, replicas: list[str], kit: Path,
         key: Key | None = None) -> Key:
    """Choose replicas and write the recovery kit (reusing the existing key, so that
    replicas already written stay readable; a restore passes the kit's key)."""
    key = key or _load_key(settings) or new_key()
    _save_key(settings, key)
    write_kit(kit, key, replicas, store.lineage())
    rep.set_meta(store, "backup.replicas", json.dumps(replicas))
    rep.set_meta(store, "backup.fingerprint", key.fingerprint)
    rep.set_meta(store, "backup.kit", str(kit.resolve()))
    return key


def resolve(settings: Settings, store: Store, create_default: bool = False) -> BackupConfig:
    stored = rep.get_meta(store, "backup.replicas")
    replicas = ([u.strip() for u in settings.replicas.split(",") if u.strip()]
                if settings.replicas else json.loads(stored) if stored else [])
    fingerprint = rep.get_meta(store, "backup.fingerprint")
    key = _load_key(settings)
    if not replicas and fingerprint is None and create_default:
        replicas = [default_replica(settings)]
        key = init(settings, store, replicas, settings.data_dir / "recovery-kit.json")
        fingerprint = key.fingerprint
    kit = rep.get_meta(store, "backup.kit")
    local = all(u.startswith("file://") for u in replicas)
    if not replicas:
        return BackupConfig([], key, "no replica configured: run `safehold backup init "
                            "--replica URL --kit FILE`", kit, local)
    if fingerprint is None or kit is None:
        return BackupConfig(replicas, key, "no recovery kit has been written: run `safehold "
                            "backup init --replica URL --kit FILE` and keep the kit elsewhere",
                            kit, local)
    if key is None:
        return BackupConfig(replicas, None, f"the backup key {key_path(settings)} is missing: "
                            "copy it back from the recovery kit; nothing is shipped without it",
                            kit, local)
    if key.fingerprint != fingerprint:
        return BackupConfig(replicas, None, "the backup key does not match the one the "
                            "replicas were written with; restore it from the recovery kit", kit,
                            local)
    return BackupConfig(replicas, key, None, kit, local)


def key_from_kit_or_fail(config: BackupConfig) -> Key:
    if config.key is None or config.problem:
        raise KeyError_(config.problem or "no backup key")
    return config.key
