"""The mass-deletion guard. Sync clients delete on the server what vanished on the
device, so a device that lost its data (or a bug) deletes everything. A burst of
deletions by one client (same user and User-Agent) of more than ``min_items`` items
and more than ``share`` of a collection within ``window`` seconds is recorded as an
incident the owner can undo in one action; in strict mode further deletions by that
client are refused (503, which clients treat as "try later" and keep their data on)
until the owner confirms or undoes the incident."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from safehold.core import history as core_history
from safehold.core.model import Actor, Incident, RestoreOp
from safehold.errors import DomainError, NotFound


class DeletionRefused(DomainError):
    status = 503

    def __init__(self, message: str, incident: Incident) -> None:
        super().__init__(message)
        self.incident = incident


@dataclass(frozen=True)
class Policy:
    mode: str = "record"  # "off", "record" or "strict"
    min_items: int = 10
    share: float = 0.25
    window: float = 600.0


class GuardPort(Protocol):
    def recent_deletes(self, collection: str, actor_id: int | None, user_agent: str,
                       since: float) -> tuple[int, int, int]: ...
    def member_count(self, collection: str) -> int: ...
    def find_open(self, collection: str, actor_id: int | None, user_agent: str) -> Incident | None: ...
    def save(self, inc: Incident) -> Incident: ...
    def get(self, incident_id: int) -> Incident | None: ...
    def deleted_paths(self, inc: Incident) -> list[str]: ...


class Guard:
    def __init__(self, port: GuardPort, policy: Policy,
                 clock: Callable[[], float] = time.time) -> None:
        self.port = port
        self.policy = policy
        self.clock = clock

    def before_delete(self, collection: str, actor: Actor) -> None:
        if self.policy.mode != "strict":
            return
        inc = self.port.find_open(collection, actor.principal_id, actor.user_agent or "")
        if inc is not None:
            raise DeletionRefused(
                f"deletions from this client are paused: it deleted {inc.count} items of this "
                f"collection in a short time (incident {inc.id}); the owner can undo or confirm "
                "it on the web page or with `safehold incident undo|confirm`", inc)

    def after_delete(self, owner_id: int, collection: str, actor: Actor) -> Incident | None:
        if self.policy.mode == "off":
            return None
        ua = actor.user_agent or ""
        now = self.clock()
        count, first, last = self.port.recent_deletes(collection, actor.principal_id, ua,
                                                      now - self.policy.window)
        if count <= self.policy.min_items:
            return None  # the usual case: no need to count the collection's members
        total = count + self.port.member_count(collection)
        if count / total <= self.policy.share:
            return None
        inc = self.port.find_open(collection, actor.principal_id, ua)
        if inc is None:
            return self.port.save(Incident(0, owner_id, collection, actor.principal_id, ua, now,
                                           first, last, count, "open"))
        first = min(first, inc.first_seq)
        grown = replace(inc, last_seq=last, first_seq=first,
                        count=len(self.port.deleted_paths(replace(inc, first_seq=first,
                                                                  last_seq=last))))
        return self.port.save(grown)


def undo(port: GuardPort, history: core_history.HistoryPort, incident_id: int, actor: Actor,
         owner_id: int, dry_run: bool = False, clock: Callable[[], float] = time.time
         ) -> tuple[Incident, core_history.Plan]:
    """Bring back every item the burst deleted (those re-created since are left alone)."""
    inc = port.get(incident_id)
    if inc is None or inc.owner_id != owner_id:
        raise NotFound(f"no incident {incident_id}")
    ops: list[RestoreOp] = []
    for path in port.deleted_paths(inc):
        try:
            plan = core_history.plan_undelete(history, path)
        except DomainError:
            continue  # re-created or restored since: nothing to bring back
        ops.extend(plan.ops)
    plan = core_history.Plan(inc.collection, inc.first_seq - 1, ops)
    if dry_run:
        return inc, plan
    done = core_history.execute(history, owner_id, plan, actor)
    inc = port.save(replace(inc, state="undone", resolved_at=clock(), undo_seq=done.seq))
    return inc, done


def confirm(port: GuardPort, incident_id: int, owner_id: int,
            clock: Callable[[], float] = time.time) -> Incident:
    """The owner says the deletions were intended: close the incident."""
    inc = port.get(incident_id)
    if inc is None or inc.owner_id != owner_id:
        raise NotFound(f"no incident {incident_id}")
    return port.save(replace(inc, state="confirmed", resolved_at=clock()))
