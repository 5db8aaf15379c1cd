"""What the events add up to over a window (a calendar month, a day): availability,
incidents with their causes, RPO and RTO achieved, the last verified restore, and the
credits owed under the policy. Pure: every input, the clock included, is an argument."""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction

from safehold.errors import UserError
from safehold.sla.events import DOWNTIME, DRILL_FAILURE, DURABILITY, RPO_BREACH, RTO, Event
from safehold.sla.policy import Policy


@dataclass(frozen=True)
class Drill:
    at: float
    replica: str
    seq: int
    ok: bool
    seconds: float
    detail: str


@dataclass(frozen=True)
class Incident:
    started_at: float
    ended_at: float | None  # None: still going on
    seconds: float  # within the window
    causes: tuple[str, ...]


@dataclass
class Measurement:
    start: float
    end: float  # the window's end, or now if that is earlier
    measured_seconds: float
    down_seconds: float
    availability: Fraction | None  # percent; None: nothing measured in the window
    incidents: list[Incident]
    rpo_breaches: list[Event]
    rpo_worst: float | None
    drill_failures: list[Event]
    rto_measured: float | None  # seconds, the worst scaled drill restore in the window
    rto_events: list[Event]
    last_verified_restore: float | None
    restore_age_ok: bool
    durability_breaches: list[Event]
    availability_credit: Fraction
    durability_credit: Fraction
    credit: Fraction
    policy: Policy = field(default_factory=Policy)

    @property
    def rpo_met(self) -> bool:
        return not self.rpo_breaches

    @property
    def rto_met(self) -> bool | None:
        return None if self.rto_measured is None else self.rto_measured <= self.policy.rto_seconds


def month_window(month: str | None, now: float) -> tuple[float, float, str]:
    """(start, end, "YYYY-MM") of a calendar month in UTC; None: the current one."""
    if month is None:
        d = datetime.fromtimestamp(now, UTC)
        year, mon = d.year, d.month
    else:
        try:
            year, mon = (int(x) for x in month.split("-"))
            datetime(year, mon, 1)
        except ValueError as exc:
            raise UserError(f"--month {month!r}: expected YEAR-MONTH, e.g. 2026-11") from exc
    start = datetime(year, mon, 1, tzinfo=UTC).timestamp()
    end = start + calendar.monthrange(year, mon)[1] * 86400
    return start, end, f"{year:04d}-{mon:02d}"


def merge(intervals: list[tuple[float, float, str]]) -> list[tuple[float, float, list[str]]]:
    """Union of [start, end) intervals, each merged one keeping every cause once."""
    out: list[tuple[float, float, list[str]]] = []
    for s, e, cause in sorted(intervals):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            ps, pe, causes = out[-1]
            out[-1] = (ps, max(pe, e), causes + ([cause] if cause not in causes else []))
        else:
            out.append((s, e, [cause]))
    return out


def drill_events(drills: list[Drill], last_seq: int, policy: Policy) -> list[Event]:
    """Failures (open until the next passing drill of the same replica), durability
    breaches (a failure open longer than the limit) and measured RTO: a passing
    drill's restore time scaled by the full change log over the restored one."""
    events: list[Event] = []
    failing: dict[str, Drill] = {}
    closed: list[tuple[Drill, float | None]] = []
    for d in sorted(drills, key=lambda d: d.at):
        if d.ok:
            if d.replica in failing:
                closed.append((failing.pop(d.replica), d.at))
            scaled = d.seconds * max(1.0, last_seq / d.seq) if d.seq > 0 else d.seconds
            events.append(Event(RTO, "drill", d.at, d.at + scaled,
                                f"restore of change {d.seq} took {d.seconds:.1f} s; "
                                f"scaled to {last_seq} changes: {scaled:.1f} s", scaled))
        elif d.replica not in failing:
            failing[d.replica] = d
    closed += [(d, None) for d in failing.values()]
    for d, ended in closed:
        events.append(Event(DRILL_FAILURE, "drill", d.at, ended, d.detail))
        limit = d.at + policy.drill_breach_seconds
        if ended is None or ended > limit:
            events.append(Event(DURABILITY, "drill", limit, ended,
                                f"a failed restore drill stayed unresolved for more than "
                                f"{policy.drill_breach_seconds / 3600:g} h: {d.detail}"))
    return events


def _overlaps(ev: Event, start: float, end: float) -> bool:
    return ev.started_at < end and ev.end_or(end) > start


def measure(events: list[Event], drills: list[Drill], policy: Policy, start: float, end: float,
            now: float, since: float | None, last_seq: int) -> Measurement:
    """``since``: when measuring began (the first probe ever); time before it, and
    after ``now``, is not counted either way."""
    end = min(end, now)
    begin = max(start, since) if since is not None else end
    measured = max(0.0, end - begin)
    every = events + drill_events(drills, last_seq, policy)
    down = [e for e in every if e.kind == DOWNTIME and _overlaps(e, begin, end)]
    merged = merge([(max(e.started_at, begin), min(e.end_or(now), end), f"{e.detail}")
                    for e in down])
    incidents = []
    for s, e, causes in merged:
        open_ = any(d.ended_at is None and d.started_at <= e for d in down) and e >= end == now
        incidents.append(Incident(s, None if open_ else e, e - s, tuple(causes)))
    down_seconds = sum(i.seconds for i in incidents)
    availability = (None if measured <= 0 else
                    100 * (Fraction(measured) - Fraction(down_seconds)) / Fraction(measured))
    in_window = [e for e in every if _overlaps(e, start, end)]
    rpo = [e for e in in_window if e.kind == RPO_BREACH]
    rto = [e for e in in_window if e.kind == RTO]
    passed = [d.at for d in drills if d.ok and d.at <= end]
    last_restore = max(passed) if passed else None
    durability = [e for e in in_window if e.kind == DURABILITY]
    a_credit = policy.availability_credit(availability)
    d_credit = policy.durability_credit if durability else Fraction(0)
    return Measurement(
        start=start, end=end, measured_seconds=measured, down_seconds=down_seconds,
        availability=availability, incidents=incidents, rpo_breaches=rpo,
        rpo_worst=max((e.value for e in rpo if e.value is not None), default=None),
        drill_failures=[e for e in in_window if e.kind == DRILL_FAILURE],
        rto_measured=max((e.value for e in rto if e.value is not None), default=None),
        rto_events=rto, last_verified_restore=last_restore,
        restore_age_ok=last_restore is not None
        and end - last_restore <= policy.restore_max_age_seconds,
        durability_breaches=durability, availability_credit=a_credit, durability_credit=d_credit,
        credit=min(Fraction(100), max(a_credit, d_credit)), policy=policy)


def daily(events: list[Event], days: int, now: float,
          since: float | None) -> list[tuple[str, Fraction | None]]:
    """Availability of each of the last ``days`` UTC days (oldest first); None for a
    day before measuring began."""
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for back in range(days - 1, -1, -1):
        start = today.timestamp() - back * 86400
        m = measure(events, [], Policy(), start, start + 86400, now, since, 0)
        out.append((datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d"), m.availability))
    return out
