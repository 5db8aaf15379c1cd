"""The honest answer to "is my data safe right now?", for `safehold status`, the
admin page and /metrics. Verdicts: green, amber (safe but weaker than it should be),
red (act now)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from safehold.backup import retention
from safehold.backup import verify as verify_mod
from safehold.backup.setup import BackupConfig
from safehold.store import engine as engine_mod
from safehold.store import replication as rep
from safehold.store.repo import Store
from safehold.store.schema import change

LAG_RED_SECONDS = 300.0
DRILL_AMBER_HOURS = 26.0


@dataclass
class Status:
    verdict: str
    messages: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


def _oldest_unshipped(store: Store, shipped: int) -> float | None:
    return store._read(lambda c: c.execute(select(func.min(change.c.at))
                                           .where(change.c.seq > shipped)).scalar())


def _overdue(checked: dict[str, Any], now: float, days: float) -> bool:
    since = checked["last_full_pass"] or checked["pass_started"]
    return since is not None and now - float(since) > days * 86400


def compute(store: Store, config: BackupConfig, now: float | None = None,
            verify_days: float = 7.0) -> Status:
    now = now or time.time()
    last = store.last_seq()
    facts: dict[str, Any] = {"last_seq": last, "lineage": store.lineage(), "replicas": []}
    red: list[str] = []
    amber: list[str] = []
    if config.problem:
        red.append(config.problem)
    rows = {r["url"]: r for r in rep.replica_rows(store)}
    for url in config.replicas:
        row = rows.get(url, {})
        shipped = int(row.get("shipped_seq", 0))
        oldest = _oldest_unshipped(store, shipped)
        lag = 0.0 if oldest is None else max(0.0, now - float(oldest))
        checked = verify_mod.facts(store, url)
        pruned = retention.last_run(store, url)
        facts["replicas"].append({"url": url, "shipped_seq": shipped, "lag_seconds": round(lag, 3),
                                  "shipped_at": row.get("shipped_at"),
                                  "snapshot_seq": int(row.get("snapshot_seq", 0)),
                                  "last_error": row.get("last_error"),
                                  "objects": checked["objects"], "bytes": checked["bytes"],
                                  "verify": checked, "retention": pruned})
        if row.get("last_error"):
            red.append(f"replication to {url} is failing: {row['last_error']}")
        elif lag > LAG_RED_SECONDS:
            red.append(f"replica {url} is {lag:.0f} s behind")
        if checked["problems"]:
            red.append(f"the verify pass found {len(checked['problems'])} damaged or missing "
                       f"object(s) on {url}: " + "; ".join(checked["problems"][:3])
                       + "; run `safehold backup verify` after repairing, or `safehold drill`")
        elif _overdue(checked, now, verify_days):
            amber.append(f"the verify pass of {url} has not re-read every object in "
                         f"{verify_days:g} days; is the server running?")
        if pruned and not pruned.get("ok"):
            amber.append(f"replica retention on {url} did not run: {pruned.get('detail')}")
    durability = engine_mod.durability_problem(store.engine)
    if durability:
        amber.append(durability)
    if config.replicas and config.local_only:
        amber.append("replica on the same disk as the data; copy the kit elsewhere and add an "
                     "off-machine replica (safehold backup init --replica s3://…)")
    drills = rep.drills(store, limit=1)
    if drills:
        d = drills[0]
        facts["last_drill"] = {"at": d["at"], "ok": bool(d["ok"]), "seq": d["seq"],
                               "detail": d["detail"]}
        if not d["ok"]:
            red.append(f"the last restore drill failed: {d['detail']}; run `safehold drill`")
        elif now - float(d["at"]) > DRILL_AMBER_HOURS * 3600:
            amber.append(f"the last verified restore is {(now - float(d['at'])) / 3600:.0f} h old; "
                         "run `safehold drill`")
    else:
        facts["last_drill"] = None
        amber.append("no restore drill has run yet: run `safehold drill`")
    next_drill = rep.get_meta(store, "drill.next_at")
    facts["next_drill_at"] = float(next_drill) if next_drill else None
    restored = rep.get_meta(store, "restored_from")
    if restored:
        facts["restored_from"] = restored
    verdict = "red" if red else "amber" if amber else "green"
    return Status(verdict, red + amber, facts)
