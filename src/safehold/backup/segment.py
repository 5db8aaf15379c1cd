"""Change-log segments, snapshots and blob objects: names and (de)serialization.

Layout of a replica (format 1):
  manifest.json                                    authenticated, rewritten
  segments/<first:020d>-<last:020d>.seg            encrypted change-log range, write-once
  snapshots/<seq:020d>.snap                        encrypted full log up to seq, write-once
  blobs/<kk>/<keyed hash>/<chunk:06d>              encrypted body chunk, write-once
Each segment names the last seq of the one before it, so a missing segment is a
detected gap, never a silent hole."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from safehold.backup.crypto import CorruptObject, Key

FORMAT = 1  # of segment and snapshot bodies; newer releases read every older one
SEGMENT = re.compile(r"^segments/(\d{20})-(\d{20})\.seg$")
SNAPSHOT = re.compile(r"^snapshots/(\d{20})\.snap$")


def segment_name(first: int, last: int) -> str:
    return f"segments/{first:020d}-{last:020d}.seg"


def snapshot_name(seq: int) -> str:
    return f"snapshots/{seq:020d}.snap"


def blob_prefix(key: Key, sha256: str) -> str:
    name = key.blob_name(sha256)
    return f"blobs/{name[:2]}/{name}/"


def blob_chunk_name(key: Key, sha256: str, idx: int) -> str:
    return f"{blob_prefix(key, sha256)}{idx:06d}"


@dataclass(frozen=True)
class SegmentRef:
    name: str
    first: int
    last: int


def parse_segment(name: str) -> SegmentRef | None:
    m = SEGMENT.match(name)
    return SegmentRef(name, int(m.group(1)), int(m.group(2))) if m else None


def encode(key: Key, name: str, body: dict[str, Any]) -> bytes:
    return key.seal(json.dumps(body, separators=(",", ":")).encode(), name)


def decode(key: Key, name: str, data: bytes) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(key.open(data, name))
    if int(body.get("format", 1)) > FORMAT:
        raise CorruptObject(f"{name} is in replica format {body.get('format')}, newer than this "
                            f"safehold reads ({FORMAT}); restore it with a newer safehold")
    return body
