"""History and restores (issue: undelete, revert, rollback, restore-user).

Every restore is planned as a list of RestoreOps and written as ONE new change on
top of the log: nothing in the past is touched, the restore itself can be undone,
and sync clients see ordinary forward changes with new ETags (DESIGN promise 8).
A restore-user is one plan (one change) per home, all written in one transaction:
a user is never left half in the past (``execute_all``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from safehold.core.items import InvalidItem, index_for
from safehold.core.model import ITEM, Actor, RestoreOp, Version, parent_of
from safehold.errors import Conflict, DomainError, NotFound

HOMES = ("files", "calendars", "addressbooks")


class HistoryPort(Protocol):
    def versions_of(self, path: str) -> list[Version]: ...
    def deleted_members(self, collection: str) -> list[Version]: ...
    def state_at(self, prefix: str, seq: int) -> dict[str, Version]: ...
    def seq_at(self, when: float) -> int: ...
    def last_seq(self) -> int: ...
    def current(self, prefix: str) -> dict[str, Version]: ...
    def kind_of(self, path: str) -> str | None: ...
    def blob(self, blob_hash: str) -> bytes: ...
    def apply(self, owner_id: int, changes: list[tuple[str, list[RestoreOp]]],
              actor: Actor) -> list[int]:
        """Write each (target, ops) as a change of its own, all in one transaction (a
        failure in any writes none of them; a Conflict names its target); their seqs."""
        ...


@dataclass(frozen=True)
class Plan:
    """What a restore will do; ``seq`` is set once it has been written."""

    target: str
    to_seq: int
    ops: list[RestoreOp]
    seq: int | None = None

    def summary(self) -> dict[str, int]:
        out = {"create": 0, "revert": 0, "delete": 0}
        for op in self.ops:
            out[op.action] += 1
        return out


def parse_point(value: str, history: HistoryPort) -> int:
    """TIME (ISO 8601; naive means the server's local time) or SEQ -> a seq."""
    text = value.strip()
    if text.isdigit():
        seq = int(text)
        if seq > history.last_seq():
            raise NotFound(f"change {seq} does not exist yet (the last is {history.last_seq()})")
        return seq
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise DomainError(f"{value!r} is neither a change number nor an ISO 8601 time "
                          "(e.g. 2026-11-20T10:42 or 2026-11-20T10:42:00+01:00)") from exc
    return history.seq_at(when.timestamp())


def _index(history: HistoryPort, path: str, v: Version, parent_kind: str | None) -> RestoreOp:
    if v.kind != ITEM or parent_kind not in ("calendar", "addressbook") or v.blob_hash is None:
        return RestoreOp(path, "create", v)
    try:
        ix = index_for(parent_kind, history.blob(v.blob_hash), stored=True)
    except InvalidItem as exc:
        raise Conflict(f"version {v.seq} of {path!r} no longer validates: {exc}") from exc
    return RestoreOp(path, "create", v, ix)


def _same(a: Version, b: Version) -> bool:
    return (a.kind, a.blob_hash, a.props, a.content_type) == (b.kind, b.blob_hash, b.props,
                                                              b.content_type)


def _kinds(history: HistoryPort, target: dict[str, Version], path: str) -> str | None:
    parent = parent_of(path)
    if parent in target and not target[parent].deleted:
        return target[parent].kind
    return history.kind_of(parent)


def plan_rollback(history: HistoryPort, prefix: str, seq: int) -> Plan:
    """Bring the subtree ``prefix`` back to its state right after change ``seq``."""
    target = history.state_at(prefix, seq)
    if prefix not in target or target[prefix].deleted:
        raise NotFound(f"{prefix!r} did not exist at change {seq}")
    current = {p: v for p, v in history.current(prefix).items() if not v.deleted}
    ops: list[RestoreOp] = []
    for path, v in sorted(target.items()):
        if v.deleted:
            continue
        now = current.get(path)
        if now is not None and _same(now, v):
            continue
        op = _index(history, path, v, _kinds(history, target, path))
        ops.append(RestoreOp(path, "create" if now is None else "revert", v, op.index))
    for path in sorted(current):
        if path not in target or target[path].deleted:
            ops.append(RestoreOp(path, "delete", None))
    return Plan(prefix, seq, ops)


def plan_undelete(history: HistoryPort, path: str, version_seq: int | None = None) -> Plan:
    """Bring back a deleted item or collection (with what it held when deleted), or
    revert a live item to ``version_seq``."""
    versions = history.versions_of(path)
    if not versions:
        raise NotFound(f"{path!r} never existed")
    latest = versions[-1]
    if version_seq is not None:
        chosen = next((v for v in reversed(versions) if v.seq == version_seq and not v.deleted), None)
        if chosen is None:
            raise NotFound(f"{path!r} has no version {version_seq} with content; "
                           f"see `safehold history`")
        if chosen.kind != ITEM:
            return _undelete_tree(history, path, chosen.seq)
        if not latest.deleted and _same(latest, chosen):
            return Plan(path, chosen.seq, [])
        op = _index(history, path, chosen, history.kind_of(parent_of(path)))
        return Plan(path, chosen.seq, [RestoreOp(path, "revert" if not latest.deleted else "create",
                                                 chosen, op.index)])
    if not latest.deleted:
        raise Conflict(f"{path!r} is not deleted; pass --version to restore an earlier version")
    before = next((v for v in reversed(versions) if not v.deleted), None)
    if before is None:
        raise NotFound(f"{path!r} has no version with content")
    if latest.kind != ITEM:
        return _undelete_tree(history, path, latest.seq - 1)
    op = _index(history, path, before, history.kind_of(parent_of(path)))
    return Plan(path, before.seq, [op])


def _undelete_tree(history: HistoryPort, path: str, seq: int) -> Plan:
    """A collection as it was at ``seq``: only what is missing now comes back; what
    was created since at the same paths is left alone."""
    target = history.state_at(path, seq)
    current = {p for p, v in history.current(path).items() if not v.deleted}
    ops = [_index(history, p, v, _kinds(history, target, p))
           for p, v in sorted(target.items()) if not v.deleted and p not in current]
    return Plan(path, seq, ops)


def plan_restore_user(history: HistoryPort, name: str, seq: int) -> list[Plan]:
    plans = []
    for home in HOMES:
        prefix = f"{home}/{name}"
        if prefix in history.state_at(prefix, seq):
            plans.append(plan_rollback(history, prefix, seq))
    return plans


def execute(history: HistoryPort, owner_id: int, plan: Plan, actor: Actor) -> Plan:
    return execute_all(history, owner_id, [plan], actor)[0]


def execute_all(history: HistoryPort, owner_id: int, plans: list[Plan], actor: Actor) -> list[Plan]:
    """Write every plan that changes something, each as its own change (the history
    shows one restore per home, as before), all or none: a restore-user that fails on
    its third home must not leave the first two restored."""
    todo = [p for p in plans if p.ops]
    if not todo:
        return plans
    seqs = iter(history.apply(owner_id, [(p.target, p.ops) for p in todo], actor))
    return [Plan(p.target, p.to_seq, p.ops, next(seqs)) if p.ops else p for p in plans]
