"""Data invariants compared across a migration (DESIGN promise 7).

What must be equal after migrating, unless a migration declares a transformation:
per collection, the number of live heads and a digest of (path, kind, ETag, blob
hash) over them; and globally the number of change-log rows, the highest seq, the
number of versions and of blobs (history is never lost by an upgrade).

A migration that changes any of these on purpose says so on its module, next to
``upgrade()``::

    TRANSFORMS = "re-computes every ETag from the blob hash"   # one line, for the log

    def check_invariants(conn, before, after):  # -> list[str], empty when it holds
        ...

``before``/``after`` are :class:`Invariants`; ``conn`` is the migration transaction.
When any pending migration declares a transformation, its checks replace the
equality of the per-collection figures; the history counts may then only grow.
Everything is read with plain SQL, so it works on every revision since 0001."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


@dataclass
class Invariants:
    collections: dict[str, list[Any]] = field(default_factory=dict)  # parent -> [count, digest]
    changes: int = 0
    max_seq: int = 0
    versions: int = 0
    blobs: int = 0

    @property
    def items(self) -> int:
        return sum(int(c[0]) for c in self.collections.values())

    def to_json(self) -> dict[str, Any]:
        return {"collections": self.collections, "changes": self.changes, "max_seq": self.max_seq,
                "versions": self.versions, "blobs": self.blobs}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Invariants:
        return cls({str(k): list(v) for k, v in dict(data.get("collections") or {}).items()},
                   int(data.get("changes", 0)), int(data.get("max_seq", 0)),
                   int(data.get("versions", 0)), int(data.get("blobs", 0)))


def capture(conn: Connection) -> Invariants:
    out = Invariants()
    hashes: dict[str, Any] = {}
    counts: dict[str, int] = {}
    rows = conn.execute(sa.text("SELECT parent, path, kind, etag, blob_hash FROM resource "
                                "ORDER BY path"))
    for parent, path, kind, etag, blob_hash in rows:
        h = hashes.setdefault(parent, hashlib.sha256())
        h.update(f"{path}\0{kind}\0{etag}\0{blob_hash or ''}\n".encode())
        counts[parent] = counts.get(parent, 0) + 1
    out.collections = {p: [counts[p], h.hexdigest()] for p, h in hashes.items()}
    out.changes, out.max_seq = (int(v or 0) for v in conn.execute(
        sa.text("SELECT count(*), max(seq) FROM change")).one())
    out.versions = int(conn.execute(sa.text("SELECT count(*) FROM version")).scalar() or 0)
    out.blobs = int(conn.execute(sa.text("SELECT count(*) FROM blob")).scalar() or 0)
    return out


Check = Callable[[Connection, Invariants, Invariants], list[str]]


def compare(before: Invariants, after: Invariants) -> list[str]:
    """What differs, in words naming the collections (empty: equal)."""
    problems = _history(before, after, exact=True)
    for path in sorted(set(before.collections) | set(after.collections)):
        b, a = before.collections.get(path), after.collections.get(path)
        if b == a:
            continue
        if b is None or a is None:
            problems.append(f"/dav/{path}/ {'appeared' if b is None else 'vanished'} "
                            f"({(a or b or [0])[0]} items)")
        elif b[0] != a[0]:
            problems.append(f"/dav/{path}/ held {b[0]} items, now {a[0]}")
        else:
            problems.append(f"/dav/{path}/ content digest changed ({b[1][:12]} -> {a[1][:12]})")
    return problems


def verify(conn: Connection, before: Invariants, after: Invariants,
           transforms: list[tuple[str, Check]]) -> list[str]:
    if not transforms:
        return compare(before, after)
    problems = _history(before, after, exact=False)
    for rev, check in transforms:
        problems += [f"{rev}: {p}" for p in check(conn, before, after)]
    return problems


def _history(before: Invariants, after: Invariants, exact: bool) -> list[str]:
    out = []
    for name in ("changes", "max_seq", "versions", "blobs"):
        b, a = getattr(before, name), getattr(after, name)
        if a < b or (exact and a != b):
            out.append(f"{name.replace('_', ' ')}: {b} before, {a} after")
    return out
