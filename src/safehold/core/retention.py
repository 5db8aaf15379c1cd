"""Retention: which old versions lose their content (DESIGN promise 2).

Every version is kept for ``days``; after that only the last version of each UTC day
keeps its content. Never pruned: the current version of a live item, and the
change-log and version rows themselves (sync tokens and history are computed from
them; a pruned version still shows in history, marked as pruned)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class Candidate:
    id: int
    path: str
    created_at: float
    is_head: bool


def to_prune(candidates: list[Candidate], days: int, now: float) -> list[int]:
    """Version ids whose content may go. ``candidates`` are content-bearing versions."""
    cutoff = now - days * 86400
    by_day: dict[tuple[str, str], list[Candidate]] = defaultdict(list)
    for c in candidates:
        if c.created_at < cutoff:
            day = datetime.fromtimestamp(c.created_at, timezone.utc).strftime("%Y-%m-%d")
            by_day[(c.path, day)].append(c)
    out: list[int] = []
    for group in by_day.values():
        group.sort(key=lambda c: c.id)
        out.extend(c.id for c in group[:-1] if not c.is_head)
    return sorted(out)
