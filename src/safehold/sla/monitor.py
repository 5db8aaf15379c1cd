"""The built-in measurement: every ``sla_probe_seconds`` the server probes itself over
real HTTP, looks at its real request outcomes, its regression gate and its replicas'
lag, and opens or closes events accordingly. It does not trust itself: a gap in its own
samples (the server was not running) is recorded as downtime at the next start."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

from safehold.backup.status import Status
from safehold.core import users
from safehold.core.model import Actor
from safehold.errors import UserExists
from safehold.sla.events import (
    DOWNTIME, DURABILITY, RPO_BREACH, Condition, Event, Sample, not_running, reconcile,
)
from safehold.sla.policy import Policy
from safehold.sla.prober import Prober, Target
from safehold.store import sla as store_sla
from safehold.store.repo import Store

log = logging.getLogger("safehold.sla")

# Real requests: an interval in which at least this many requests came and at least
# half of them failed with 5xx counts as downtime even if the probe passed.
MIN_REQUESTS = 3
ACTOR = Actor(None, "safehold-sla")


class Outcomes:
    """Counts of the server's real answers since the last tick (the prober's own
    requests are not counted: they are measured as samples)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._errors = 0

    def count(self, status: int) -> None:
        with self._lock:
            self._total += 1
            self._errors += status >= 500

    def take(self) -> tuple[int, int]:
        with self._lock:
            out = (self._total, self._errors)
            self._total = self._errors = 0
            return out


def conditions(sample: Sample | None, gate: str | None, outcomes: tuple[int, int],
               status: Status | None, policy: Policy) -> list[Condition]:
    """What is wrong at this tick, as conditions that open (or keep open) events."""
    out = []
    if sample is not None and not sample.ok:
        out.append(Condition(DOWNTIME, "probe", f"the prober's {sample.step} failed: {sample.detail}"))
    if gate:
        out.append(Condition(DOWNTIME, "gate", "DAV answered 503: the server found its data "
                                               "older than its replica (data loss detected)"))
        out.append(Condition(DURABILITY, "gate", "data loss detected: the server's data ends "
                                                 "before what its replica holds"))
    total, errors = outcomes
    if total >= MIN_REQUESTS and 2 * errors >= total:
        out.append(Condition(DOWNTIME, "errors", f"{errors} of {total} requests failed with 5xx"))
    if status is not None:
        for i, r in enumerate(status.facts.get("replicas", []), start=1):
            lag = float(r["lag_seconds"])
            if lag > policy.rpo_seconds:
                out.append(Condition(RPO_BREACH, f"replica {i}",
                                     f"replica {i} fell more than {policy.rpo_seconds:g} s behind",
                                     lag))
    return out


def event_from_row(row: dict[str, Any]) -> Event:
    return Event(row["kind"], row["source"], float(row["started_at"]),
                 None if row["ended_at"] is None else float(row["ended_at"]), row["detail"],
                 None if row["value"] is None else float(row["value"]), int(row["id"]))


def ensure_canary(store: Store) -> str:
    """The internal principal and collection the built-in prober writes to; returns
    its password (made once, kept in ``meta``)."""
    password = store_sla.canary_password(store)
    if store.principal(store_sla.CANARY_USER) is None:
        password = secrets.token_urlsafe(24)
        try:
            store.add_principal(store_sla.CANARY_USER, users.hash_password(password), ACTOR,
                                users.HOMES)
        except UserExists:  # another process made it first; it also saved the password
            pass
        else:
            store_sla.save_canary_password(store, password)
    elif password is None:  # e.g. restored from a replica, which does not carry meta
        password = secrets.token_urlsafe(24)
        store.set_password(store_sla.CANARY_USER, users.hash_password(password))
        store_sla.save_canary_password(store, password)
    owner = store.principal(store_sla.CANARY_USER)
    assert owner is not None
    if store.get(store_sla.CANARY_COLLECTION) is None:
        store.mkcol(store_sla.CANARY_COLLECTION, owner.id, ACTOR)
    password = store_sla.canary_password(store)
    assert password is not None
    return password


class Monitor:
    def __init__(self, store: Store, policy: Policy, interval: float,
                 prober: Prober | None, gate: Callable[[], str | None],
                 status: Callable[[], Status], outcomes: Outcomes,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.policy = policy
        self.interval = interval
        self.prober = prober
        self.gate = gate
        self.status = status
        self.outcomes = outcomes
        self.clock = clock
        self.last: Sample | None = None

    @classmethod
    def local(cls, store: Store, policy: Policy, interval: float, base_url: str,
              gate: Callable[[], str | None], status: Callable[[], Status],
              outcomes: Outcomes, clock: Callable[[], float]) -> Monitor:
        password = ensure_canary(store)
        target = Target(base_url, store_sla.CANARY_USER, password,
                        f"/dav/{store_sla.CANARY_COLLECTION}/")
        return cls(store, policy, interval, Prober(target, clock), gate, status, outcomes, clock)

    def start(self) -> None:
        """Account for the time the server was not running, then begin measuring."""
        now = self.clock()
        last = store_sla.last_sample_at(self.store)
        gap = not_running(last, now, max(3 * self.interval, 30.0))
        still_open = [event_from_row(r) for r in store_sla.open_events(self.store)]
        opened = []
        if gap is not None:
            opened.append(_row(gap))
        # Events left open by a run that ended: they last until its last sample.
        self._apply([e.id for e in still_open if e.id is not None], last or now, opened, [])
        store_sla.start_measuring(self.store, now)

    def tick(self) -> Sample | None:
        sample = self.prober.run_once() if self.prober is not None else None
        if sample is not None:
            store_sla.record_sample(self.store, sample.at, sample.ok, sample.latency, sample.step,
                                    sample.detail)
            if not sample.ok:
                log.warning("SLA probe failed at %s: %s", sample.step, sample.detail)
        try:
            status: Status | None = self.status()
        except Exception:  # noqa: BLE001 - a status failure must not stop measuring
            log.exception("SLA monitor: status failed")
            status = None
        conds = conditions(sample, self.gate(), self.outcomes.take(), status, self.policy)
        now = self.clock()
        open_events = [event_from_row(r) for r in store_sla.open_events(self.store)]
        changes = reconcile(open_events, conds, sample.at if sample is not None else now)
        self._apply(changes.close, now, [_row(e) for e in changes.open],
                    [(e.id, e.value) for e in changes.update if e.id is not None and e.value is not None])
        self.last = sample
        return sample

    def _apply(self, close: list[int], at: float, opened: list[dict[str, Any]],
               values: list[tuple[int, float]]) -> None:
        store_sla.apply_events(self.store, close, at, opened, values)


def _row(e: Event) -> dict[str, Any]:
    return {"kind": e.kind, "source": e.source, "started_at": e.started_at, "ended_at": e.ended_at,
            "detail": e.detail, "value": e.value}
