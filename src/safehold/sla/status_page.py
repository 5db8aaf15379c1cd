"""The public status page (/status, no login): the current verdict, 90 days of daily
availability as bars, replica lag, the last verified restore and open incidents.
Server-rendered HTML and CSS, no JavaScript. It names no user, collection or replica
URL: replicas are "replica 1", "replica 2", … and incidents show their kind only."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from safehold.backup.status import Status
from safehold.sla.events import DOWNTIME, DURABILITY, RPO_BREACH, Event
from safehold.sla.measurement import daily, drill_events, measure, month_window
from safehold.sla.monitor import event_from_row
from safehold.sla.policy import Policy
from safehold.sla.report import drills
from safehold.store import sla as store_sla
from safehold.store.repo import Store

DAYS = 90
# What the public may read about an open event: its kind, never its detail (which can
# name a path or a replica URL).
PUBLIC = {DOWNTIME: "Service unavailable", RPO_BREACH: "Off-site copy behind target",
          DURABILITY: "Data durability problem", "drill_failure": "Restore drill failing"}


@dataclass
class Overview:
    verdict: str  # operational, degraded, outage
    bars: list[tuple[str, Fraction | None]]
    month_availability: Fraction | None
    lags: list[float]
    last_restore: float | None
    restore_ok: bool
    open_incidents: list[tuple[str, float]]  # (public kind, since)
    credit: Fraction
    rto: float | None


def overview(store: Store, policy: Policy, status: Status | None, now: float) -> Overview:
    since = store_sla.measured_since(store)
    events = [event_from_row(r) for r in store_sla.events_between(store, now - (DAYS + 1) * 86400, now + 1)]
    all_drills = drills(store)
    start, end, _ = month_window(None, now)
    m = measure(events, all_drills, policy, start, end, now, since, store.last_seq())
    open_: list[Event] = [e for e in events if e.ended_at is None]
    open_ += [e for e in drill_events(all_drills, store.last_seq(), policy)
              if e.kind == "drill_failure" and e.ended_at is None]
    lags = [float(r["lag_seconds"]) for r in (status.facts.get("replicas", []) if status else [])]
    verdict = ("outage" if any(e.kind == DOWNTIME for e in open_) else
               "degraded" if open_ or not m.restore_age_ok or any(lag > policy.rpo_seconds for lag in lags)
               else "operational")
    return Overview(verdict, daily(events, DAYS, now, since), m.availability, lags,
                    m.last_verified_restore, m.restore_age_ok,
                    [(PUBLIC.get(e.kind, e.kind), e.started_at) for e in open_], m.credit, m.rto_measured)


def _when(t: float | None) -> str:
    return "never" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _bar_class(a: Fraction | None, policy: Policy) -> str:
    if a is None:
        return "none"
    return "ok" if a >= policy.availability else "warn" if a >= 99 else "bad"


CSS = """
body{font-family:system-ui,sans-serif;max-width:56em;margin:2em auto;padding:0 1em;color:#222}
.verdict{padding:1em;border-radius:6px;font-size:1.3em;color:#fff}
.operational{background:#2e7d32}.degraded{background:#b26a00}.outage{background:#c62828}
.bars{display:flex;gap:2px;align-items:flex-end;height:40px;margin:1em 0}
.bar{flex:1;height:100%;border-radius:2px}
.bar.ok{background:#43a047}.bar.warn{background:#fb8c00}.bar.bad{background:#e53935}
.bar.none{background:#ddd}
table{border-collapse:collapse}th,td{text-align:left;padding:.2em 1em .2em 0}
"""


def render(o: Overview, policy: Policy) -> bytes:
    label = {"operational": "All systems operational", "degraded": "Degraded",
             "outage": "Service outage"}[o.verdict]
    bars = "".join(
        f'<div class="bar {_bar_class(a, policy)}" title="{day}: '
        f'{"no data" if a is None else f"{float(a):.3f} %"}"></div>' for day, a in o.bars)
    lags = "".join(f"<tr><th>Replica {i}</th><td>{lag:.1f} s behind</td></tr>"
                   for i, lag in enumerate(o.lags, start=1)) or "<tr><td>No replica configured</td></tr>"
    incidents = "".join(f"<li>{html.escape(kind)} since {_when(since)}</li>"
                        for kind, since in o.open_incidents) or "<li>None</li>"
    month = "no data" if o.month_availability is None else f"{float(o.month_availability):.3f} %"
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>safehold status</title><style>{CSS}</style></head><body>"
        f'<h1>Service status</h1><p class="verdict {o.verdict}" id="verdict">{label}</p>'
        f"<h2>Availability, last {DAYS} days</h2>"
        f'<div class="bars" id="bars" aria-label="daily availability">{bars}</div>'
        f"<p>This month: {month} (target {float(policy.availability):g} %)</p>"
        f"<h2>Off-site copies</h2><table>{lags}</table>"
        f"<p>Target: at most {policy.rpo_seconds:g} s behind.</p>"
        f"<h2>Last verified restore</h2><p>{_when(o.last_restore)}"
        f"{'' if o.restore_ok else ' (older than the promised ' + f'{policy.restore_max_age_seconds / 3600:g} h)'}</p>"
        f'<h2>Open incidents</h2><ul id="incidents">{incidents}</ul>'
        "</body></html>\n")
    return page.encode()


def metrics(o: Overview) -> dict[str, Any]:
    """The same figures for /metrics."""
    return {"verdict": {"operational": 0, "degraded": 1, "outage": 2}[o.verdict],
            "month_availability": None if o.month_availability is None else float(o.month_availability),
            "open_incidents": len(o.open_incidents),
            "last_restore": o.last_restore or 0.0, "credit": float(o.credit), "rto": o.rto}
