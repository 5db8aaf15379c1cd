"""The upgrade gate: no migration starts without a verified backup taken moments
before (DESIGN promise 7). Open when every configured replica is current (holds
every change older than ``upgrade_max_lag_seconds``, and its last shipping pass did
not fail) and a restore drill passed within ``upgrade_max_drill_age_seconds``.
``backup_now`` is what ``--backup-now`` runs first: ship, snapshot, drill."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from safehold.backup import drill as drill_mod
from safehold.backup.replica_client import open_replica
from safehold.backup.setup import BackupConfig
from safehold.backup.shipper import Shipper, ShipResult
from safehold.errors import SafeholdError
from safehold.store import replication as rep
from safehold.store.repo import Store

Say = Callable[[str], None]
WHAT_TO_RUN = ("Run `safehold upgrade --backup-now` (ships, snapshots and drills first), or "
               "`safehold backup now` and `safehold drill`; or, knowingly and recorded, "
               "`safehold upgrade --override-gate REASON`")


@dataclass
class GateReport:
    open: bool
    reasons: list[str] = field(default_factory=list)  # why it is closed
    facts: list[str] = field(default_factory=list)  # what was found, for the operator

    def refusal(self) -> str:
        return "refusing to upgrade: " + "; ".join(self.reasons) + ". " + WHAT_TO_RUN


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def has_backup_tables(store: Store) -> bool:
    with store.engine.connect() as conn:
        inspector = sa.inspect(conn)
        return inspector.has_table("replica_state") and inspector.has_table("drill")


def _oldest_unshipped(store: Store, shipped: int) -> float | None:
    with store.engine.connect() as conn:
        value = conn.execute(sa.text("SELECT min(at) FROM change WHERE seq > :s"),
                             {"s": shipped}).scalar()
    return None if value is None else float(value)


def evaluate(store: Store, config: BackupConfig, max_lag: float, max_drill_age: float,
             now: float | None = None) -> GateReport:
    now = time.time() if now is None else now
    if not has_backup_tables(store):
        return GateReport(False, ["this database's schema predates replication, so no backup "
                                  "of it can have been verified"])
    reasons: list[str] = []
    facts: list[str] = []
    if config.problem:
        reasons.append(f"backups are not running ({config.problem})")
    rows = {r["url"]: r for r in rep.replica_rows(store)}
    for url in config.replicas:
        row = rows.get(url)
        if row is None:
            reasons.append(f"nothing was ever shipped to the replica {url}")
            continue
        if row.get("last_error"):
            reasons.append(f"the last shipping to {url} failed: {row['last_error']}")
            continue
        oldest = _oldest_unshipped(store, int(row["shipped_seq"]))
        lag = 0.0 if oldest is None else max(0.0, now - oldest)
        if lag > max_lag:
            reasons.append(f"the replica {url} is {_age(lag)} behind (limit {_age(max_lag)})")
        else:
            facts.append(f"replica {url} holds change {row['shipped_seq']} (lag {_age(lag)})")
    drills = [d for d in rep.drills(store, limit=100) if d["replica"] in config.replicas]
    passed = [d for d in drills if d["ok"]]
    recent = [d for d in passed if now - float(d["at"]) <= max_drill_age]
    if recent:
        best = max(recent, key=lambda d: (int(d["seq"]), int(d["id"])))
        failed = [d for d in drills if not d["ok"] and int(d["id"]) > int(best["id"])]
        if failed:
            reasons.append(f"the last restore drill failed ({failed[0]['detail']})")
        else:
            facts.append(f"restore drill of {best['replica']} passed {_age(now - float(best['at']))} "
                         f"ago at change {best['seq']}")
    elif passed:
        newest = max(passed, key=lambda d: float(d["at"]))
        reasons.append(f"the newest passing restore drill is {_age(now - float(newest['at']))} old "
                       f"(limit {_age(max_drill_age)})")
    elif drills:
        reasons.append(f"no restore drill has passed yet (the last one: {drills[0]['detail']})")
    else:
        reasons.append("no restore drill has ever run, so no backup is verified")
    return GateReport(not reasons, reasons, facts)


def backup_now(store: Store, config: BackupConfig, snapshot_every: int, say: Say,
               turn_timeout: float = 60.0) -> list[str]:
    """Ship everything, snapshot and drill every replica, saying each step. Returns the
    problems (empty: done)."""
    if config.problem or config.key is None:
        return [config.problem or "no backup key"]
    if not has_backup_tables(store):
        return ["this database's schema predates replication: it cannot be shipped by this "
                "release"]
    replicas = [open_replica(u) for u in config.replicas]
    shipper = Shipper(store, config.key, replicas, store.lineage(), snapshot_every)
    total = 1 + len(replicas)
    say(f"backup 1/{total}: shipping every change and a snapshot to {len(replicas)} replica(s)")
    deadline = time.monotonic() + turn_timeout
    while True:
        with store.shipping_turn() as mine:
            if mine:
                results = shipper.ship_all(snapshot=True)
                break
        if time.monotonic() > deadline:
            return [f"another process kept the shipping turn for {turn_timeout:.0f} s; try again"]
        time.sleep(0.2)
    problems = []
    for url, result in results.items():
        if isinstance(result, ShipResult):
            say(f"  {url}: holds change {result.shipped_seq} ({result.segments} new segment(s), "
                f"{result.blobs} new blob(s))")
        else:
            problems.append(f"shipping to {url} failed: {result}")
    if problems:
        return problems
    for i, replica in enumerate(replicas, start=2):
        say(f"backup {i}/{total}: restore drill of {replica.url}")
        try:
            for r in drill_mod.drill(store, replica, config.key):
                say(f"  {'PASS' if r.ok else 'FAIL'} at change {r.seq} in {r.seconds:.1f} s: "
                    f"{r.detail}")
                if not r.ok:
                    problems.append(f"the drill of {replica.url} failed: {r.detail}")
        except SafeholdError as exc:
            problems.append(f"the drill of {replica.url} failed: {exc}")
    return problems
