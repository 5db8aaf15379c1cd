"""The replica's manifest: format version, lineage, high-water mark (the highest
committed seq the replica holds), snapshots; authenticated with the backup key so
that a tampered manifest cannot make a restore skip data."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from safehold.backup.crypto import CorruptObject, Key, KeyError_
from safehold.backup.replica_client import ObjectMissing, ReplicaClient

NAME = "manifest.json"
# Newer releases must keep reading every older format. 2: segments and snapshots may
# carry bodies inline (backup/segment.py); a manifest says 2 once a safehold that
# writes them shipped to the replica, so that an older safehold refuses it by name
# instead of failing on the first format-2 segment.
FORMAT = 2


@dataclass
class Manifest:
    lineage: str
    key_fingerprint: str
    high_water: int = 0
    last_segment: str | None = None
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    updated_at: float = 0.0
    format: int = FORMAT


def read(replica: ReplicaClient, key: Key | None) -> Manifest | None:
    try:
        raw = json.loads(replica.get(NAME))
    except ObjectMissing:
        return None
    except ValueError as exc:
        raise CorruptObject(f"{NAME} on {replica.url} is not valid JSON") from exc
    if not isinstance(raw, dict) or raw.get("format", 0) > FORMAT:
        raise CorruptObject(f"{NAME} on {replica.url} has format {raw.get('format')!r}, newer "
                            "than this safehold understands; upgrade safehold")
    mac = raw.pop("mac", None)
    if key is not None:
        if raw.get("key_fingerprint") != key.fingerprint:
            raise KeyError_(f"the replica {replica.url} was written with another key "
                            f"(fingerprint {raw.get('key_fingerprint')}, yours {key.fingerprint})")
        if mac != key.mac(json.dumps(raw, sort_keys=True).encode()):
            raise CorruptObject(f"{NAME} on {replica.url} failed authentication")
    fields_ = {k: raw[k] for k in Manifest.__dataclass_fields__ if k in raw}
    return Manifest(**fields_)


def write(replica: ReplicaClient, key: Key, manifest: Manifest) -> None:
    manifest.updated_at = time.time()
    manifest.format = FORMAT
    body = asdict(manifest)
    body["mac"] = key.mac(json.dumps(asdict(manifest), sort_keys=True).encode())
    replica.put(NAME, json.dumps(body, sort_keys=True, indent=1).encode())
