"""`safehold sla report`: a month's figures against the policy, and what is owed, as
Markdown (default), JSON or HTML."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from safehold.sla.events import Event, Sample, downtime_from_samples
from safehold.sla.measurement import Drill, Measurement, measure, month_window
from safehold.sla.monitor import event_from_row
from safehold.sla.policy import Policy
from safehold.store import replication as rep
from safehold.store import sla as store_sla
from safehold.store.repo import Store


@dataclass
class Report:
    month: str
    generated_at: float
    m: Measurement
    external_samples: int


def drills(store: Store) -> list[Drill]:
    return [Drill(float(d["at"]), d["replica"], int(d["seq"]), bool(d["ok"]), float(d["seconds"]),
                  d["detail"]) for d in rep.drills(store, limit=100000)]


def gather(store: Store, policy: Policy, month: str | None, now: float,
           external: list[Sample] | None = None) -> Report:
    start, end, label = month_window(month, now)
    events = [event_from_row(r) for r in store_sla.events_between(store, start, end)]
    since = store_sla.measured_since(store)
    if external:
        events += downtime_from_samples(external)
        first = min(s.at for s in external)
        since = first if since is None else min(since, first)
    m = measure(events, drills(store), policy, start, end, now, since, store.last_seq())
    return Report(label, now, m, len(external or []))


def _when(t: float | None) -> str:
    return "—" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pct(f: Fraction | None, digits: int = 3) -> str:
    return "no data" if f is None else f"{float(f):.{digits}f} %"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _event(e: Event) -> dict[str, Any]:
    return {"kind": e.kind, "source": e.source, "started_at": e.started_at,
            "ended_at": e.ended_at, "detail": e.detail, "value": e.value}


def to_json(r: Report) -> dict[str, Any]:
    m, p = r.m, r.m.policy
    return {
        "month": r.month, "generated_at": r.generated_at, "window": [m.start, m.end],
        "measured_seconds": m.measured_seconds, "external_samples": r.external_samples,
        "availability": {"percent": None if m.availability is None else float(m.availability),
                         "target": float(p.availability), "downtime_seconds": m.down_seconds,
                         "met": m.availability is None or m.availability >= p.availability},
        "incidents": [{"started_at": i.started_at, "ended_at": i.ended_at, "seconds": i.seconds,
                       "causes": list(i.causes)} for i in m.incidents],
        "rpo": {"target_seconds": p.rpo_seconds, "worst_seconds": m.rpo_worst, "met": m.rpo_met,
                "breaches": [_event(e) for e in m.rpo_breaches]},
        "rto": {"target_seconds": p.rto_seconds, "measured_seconds": m.rto_measured,
                "met": m.rto_met, "drills": [_event(e) for e in m.rto_events]},
        "last_verified_restore": {"at": m.last_verified_restore,
                                  "max_age_seconds": p.restore_max_age_seconds,
                                  "met": m.restore_age_ok},
        "drill_failures": [_event(e) for e in m.drill_failures],
        "durability_breaches": [_event(e) for e in m.durability_breaches],
        "credits": {"availability_percent": float(m.availability_credit),
                    "durability_percent": float(m.durability_credit),
                    "owed_percent": float(m.credit),
                    "table": [[float(a), float(b)] for a, b in p.credits]},
    }


def _lines(r: Report) -> list[tuple[str, str]]:
    """(label, value) rows shared by the Markdown and HTML renderings."""
    m, p = r.m, r.m.policy
    rto = ("no passing drill this month" if m.rto_measured is None else
           f"{m.rto_measured / 60:.1f} min ({'met' if m.rto_met else 'MISSED'})")
    rpo = ("within target (no breach)" if m.rpo_met else
           f"MISSED: {len(m.rpo_breaches)} breach(es), worst lag {m.rpo_worst or 0:.1f} s")
    return [
        ("Availability", f"{_pct(m.availability)} (target {float(p.availability):g} %)"),
        ("Downtime", f"{_minutes(m.down_seconds)} in {len(m.incidents)} incident(s), "
                     f"over {m.measured_seconds / 86400:.2f} measured days"),
        ("RPO", f"{rpo}; target {p.rpo_seconds:g} s"),
        ("RTO", f"{rto}; target {p.rto_seconds / 60:g} min"),
        ("Last verified restore", f"{_when(m.last_verified_restore)} "
         f"({'within' if m.restore_age_ok else 'OLDER THAN'} {p.restore_max_age_seconds / 3600:g} h)"),
        ("Drill failures", str(len(m.drill_failures))),
        ("Durability breaches", str(len(m.durability_breaches))),
        ("Credit owed", f"{float(m.credit):g} % (availability {float(m.availability_credit):g} %, "
                        f"durability {float(m.durability_credit):g} %)"),
    ]


def to_markdown(r: Report) -> str:
    out = [f"# Service levels for {r.month}", "",
           f"Generated {_when(r.generated_at)}"
           + (f"; includes {r.external_samples} external probe samples" if r.external_samples else ""),
           "", "| measure | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in _lines(r)]
    out += ["", "## Incidents", ""]
    if not r.m.incidents:
        out.append("None.")
    for i in r.m.incidents:
        out.append(f"- {_when(i.started_at)} to {_when(i.ended_at) if i.ended_at else 'ongoing'}: "
                   f"{_minutes(i.seconds)}; cause: {'; '.join(i.causes)}")
    others = r.m.rpo_breaches + r.m.drill_failures + r.m.durability_breaches
    if others:
        out += ["", "## Other events", ""]
        out += [f"- {e.kind} ({e.source}) {_when(e.started_at)} to "
                f"{_when(e.ended_at) if e.ended_at else 'ongoing'}: {e.detail}" for e in others]
    return "\n".join(out) + "\n"


def to_html(r: Report) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _lines(r))
    items = "".join(f"<li>{html.escape(_when(i.started_at))} to "
                    f"{html.escape(_when(i.ended_at) if i.ended_at else 'ongoing')}: "
                    f"{html.escape(_minutes(i.seconds))}; cause: {html.escape('; '.join(i.causes))}</li>"
                    for i in r.m.incidents) or "<li>None.</li>"
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Service levels for {html.escape(r.month)}</title>"
            "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}"
            "th{text-align:left;padding-right:1em}</style></head><body>"
            f"<h1>Service levels for {html.escape(r.month)}</h1><table>{rows}</table>"
            f"<h2>Incidents</h2><ul>{items}</ul></body></html>\n")


def render(r: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(to_json(r), indent=1) + "\n"
    if fmt == "html":
        return to_html(r)
    return to_markdown(r)
