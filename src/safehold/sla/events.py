"""Events with a start and an end, and the tick-by-tick bookkeeping that opens and
closes them.

Stored kinds (table ``sla_event``): ``downtime`` (users could not be served: the
prober failed, the regression gate answered 503, most real requests failed, or the
server was not running), ``rpo_breach`` (a replica more than the RPO target behind)
and ``durability`` (data loss detected). Derived kinds, computed from the ``drill``
table when measuring: ``drill_failure`` and ``rto``."""

from __future__ import annotations

from dataclasses import dataclass, replace

DOWNTIME = "downtime"
RPO_BREACH = "rpo_breach"
DURABILITY = "durability"
DRILL_FAILURE = "drill_failure"
RTO = "rto"


@dataclass(frozen=True)
class Event:
    kind: str
    source: str  # what saw it: probe, gate, errors, not-running, replica N, external, drill
    started_at: float
    ended_at: float | None  # None: still open
    detail: str
    value: float | None = None
    id: int | None = None

    def end_or(self, now: float) -> float:
        return now if self.ended_at is None else self.ended_at


@dataclass(frozen=True)
class Sample:
    """One synthetic DAV transaction: ``step`` is the step that failed, or "all"."""
    at: float
    ok: bool
    latency: float
    step: str
    detail: str


@dataclass(frozen=True)
class Condition:
    """Something true at this tick that should be (or stay) an open event."""
    kind: str
    source: str
    detail: str
    value: float | None = None


@dataclass
class Changes:
    close: list[int]
    open: list[Event]
    update: list[Event]


def reconcile(open_events: list[Event], conditions: list[Condition], now: float) -> Changes:
    """Open an event for each new condition, close each open event whose condition
    went away, and raise the value (worst lag) of those that continue. One open
    event per (kind, source)."""
    wanted = {(c.kind, c.source): c for c in conditions}
    out = Changes([], [], [])
    seen = set()
    for ev in open_events:
        key = (ev.kind, ev.source)
        cond = wanted.get(key)
        if cond is None or key in seen:
            assert ev.id is not None
            out.close.append(ev.id)
            continue
        seen.add(key)
        if cond.value is not None and (ev.value is None or cond.value > ev.value):
            out.update.append(replace(ev, value=cond.value))
    for key, cond in wanted.items():
        if key not in seen:
            out.open.append(Event(cond.kind, cond.source, now, None, cond.detail, cond.value))
    return out


def not_running(last_seen: float | None, now: float, max_gap: float) -> Event | None:
    """At start: the time since the last sample the previous run recorded, if longer
    than ``max_gap``, was downtime nobody could measure from inside."""
    if last_seen is None or now - last_seen <= max_gap:
        return None
    return Event(DOWNTIME, "not-running", last_seen, now,
                 "the server was not running (no probe samples in this period)")


def downtime_from_samples(samples: list[Sample], source: str = "external") -> list[Event]:
    """Downtime seen by a prober: each failed sample stands for the time until the next
    sample, at most three usual intervals (a prober that stopped says nothing after)."""
    ordered = sorted(samples, key=lambda s: s.at)
    if not ordered:
        return []
    gaps = sorted(b.at - a.at for a, b in zip(ordered, ordered[1:], strict=False) if b.at > a.at)
    usual = gaps[len(gaps) // 2] if gaps else 10.0
    events: list[Event] = []
    for i, s in enumerate(ordered):
        if s.ok:
            continue
        nxt = ordered[i + 1].at if i + 1 < len(ordered) else s.at + usual
        end = min(nxt, s.at + 3 * usual)
        detail = f"{source} prober: {s.step} failed: {s.detail}"
        last = events[-1] if events else None
        if last is not None and last.ended_at is not None and last.ended_at >= s.at:
            events[-1] = replace(last, ended_at=max(last.ended_at, end))
        else:
            events.append(Event(DOWNTIME, source, s.at, end, detail))
    return events
