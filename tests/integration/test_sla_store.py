"""The SLA bookkeeping on real databases (SQLite and PostgreSQL) with an injected
clock: the monitor turns scripted probe failures, a closed gate and lag into events
that the report counts; compaction removes the canary's old changes and nothing else,
and drills no longer compare them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from safehold.backup.status import Status
from safehold.core.model import Actor
from safehold.sla import report as report_mod
from safehold.sla.events import Sample
from safehold.sla.monitor import Monitor, Outcomes, ensure_canary
from safehold.sla.policy import Policy
from safehold.sla.prober import Prober, Target
from safehold.store import engine as engine_mod
from safehold.store import replication as rep
from safehold.store import sla as store_sla
from safehold.store.repo import Store

T0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedProber(Prober):
    """The outermost seam: the probe's outcome is scripted, everything after it is real."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(Target("http://127.0.0.1:9", "x", "x", "/dav/"), clock)
        self.fail: str | None = None

    def run_once(self) -> Sample:
        if self.fail:
            return Sample(self.clock(), False, 0.01, "put", self.fail)
        return Sample(self.clock(), True, 0.01, "all", "ok")


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    engine = engine_mod.create(database_url)
    engine_mod.ensure_schema(engine)
    clock = Clock(T0)
    yield Store(engine, tmp_path / "tmp", clock)
    engine.dispose()


def test_scripted_outage_gate_and_lag_become_events_and_a_report(store: Store) -> None:
    clock: Clock = store.clock  # type: ignore[assignment]
    prober = ScriptedProber(clock)
    gate: list[str | None] = [None]
    lag = [0.5]
    outcomes = Outcomes()
    monitor = Monitor(store, Policy(), 10, prober, lambda: gate[0],
                      lambda: Status("green", [], {"replicas": [{"lag_seconds": lag[0]}]}),
                      outcomes, clock)
    monitor.start()
    for i in range(360):  # one hour, a tick every 10 s
        clock.now = T0 + 10 * i
        prober.fail = "HTTP 500" if 60 <= i < 90 else None  # 5 minutes of failed probes
        gate[0] = "regressed" if 200 <= i < 203 else None  # 30 s of a closed gate
        lag[0] = 9.0 if i == 300 else 3.0 if i == 301 else 0.5  # a 20 s lag spike
        if i == 100:
            for _ in range(4):
                outcomes.count(503)
        monitor.tick()
    r = report_mod.gather(store, Policy(), "2026-11", T0 + 3600)
    m = r.m
    assert m.measured_seconds == 3600
    assert [(i.started_at - T0, i.seconds) for i in m.incidents] == [(600, 300), (1000, 10), (2000, 30)]
    assert "HTTP 500" in m.incidents[0].causes[0]
    assert m.incidents[1].causes == ("4 of 4 requests failed with 5xx",)
    assert m.availability is not None and float(m.availability) == pytest.approx(100 * (1 - 340 / 3600))
    assert [(e.started_at - T0, e.ended_at - T0 if e.ended_at else None, e.value)
            for e in m.rpo_breaches] == [(3000, 3020, 9.0)]
    assert [e.source for e in m.durability_breaches] == ["gate"]
    assert m.credit == 100  # data loss detected: the durability credit
    # A restart after 10 minutes without samples: the gap is downtime.
    clock.now = T0 + 3590 + 600
    Monitor(store, Policy(), 10, prober, lambda: None, lambda: Status("green"), Outcomes(), clock).start()
    later = report_mod.gather(store, Policy(), "2026-11", clock.now).m
    assert later.incidents[-1].started_at == T0 + 3590 and later.incidents[-1].seconds == 600
    assert "not running" in later.incidents[-1].causes[0]


def test_compaction_removes_old_canary_changes_only(store: Store) -> None:
    clock: Clock = store.clock  # type: ignore[assignment]
    ensure_canary(store)
    assert ensure_canary(store) == store_sla.canary_password(store)  # made once
    canary = store.principal(store_sla.CANARY_USER)
    assert canary is not None
    actor = Actor(canary.id, "safehold-prober")
    item = f"{store_sla.CANARY_COLLECTION}/canary.txt"
    for _ in range(5):
        store.put(item, canary.id, b"x", "text/plain", actor)
        store.delete(item, actor)
        clock.now += 10
    store.put(item, canary.id, b"x", "text/plain", actor)  # a probe cut off half-way: a head
    before = store.last_seq()
    digest_before = rep.digest_at(store, before)
    assert not any(k.startswith(store_sla.CANARY_PREFIX) for k in digest_before)
    store_sla.record_sample(store, T0 - 200 * 86400, True, 0.1, "all", "ok")
    samples, changes = store_sla.compact(store, T0 + 2 * 86400)
    assert (samples, changes) == (1, 10)
    assert store.get(item) is not None and store.get(store_sla.CANARY_COLLECTION) is not None
    assert store.last_seq() == before
    assert rep.digest_at(store, before) == digest_before
    # Nothing compacts what a replica does not hold yet.
    store.delete(item, actor)
    rep.save_replica_row(store, "file:///r", shipped_seq=0)
    assert store_sla.compact(store, T0 + 3 * 86400) == (0, 0)
