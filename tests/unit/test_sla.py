"""SLA arithmetic with an injected clock: scripted outages, lag spikes and failed
drills give exactly the expected availability, incidents and credits, boundaries
included (exactly 99.9 % is not below 99.9 %)."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest

from safehold.backup.status import Status
from safehold.config import Settings
from safehold.errors import ConfigError, UserError
from safehold.sla.events import (
    DOWNTIME, DURABILITY, RPO_BREACH, Condition, Event, Sample, downtime_from_samples, not_running,
    reconcile,
)
from safehold.sla.measurement import Drill, daily, measure, month_window
from safehold.sla.monitor import conditions
from safehold.sla.policy import Policy, parse_credits

NOV = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DEC = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
MONTH = DEC - NOV  # 30 days: 0.1 % of it is 2592 s
POLICY = Policy()


def _down(start: float, seconds: float, source: str = "probe", detail: str = "PUT failed") -> Event:
    return Event(DOWNTIME, source, start, start + seconds, detail)


def _month(events: list[Event], drills: list[Drill] | None = None, last_seq: int = 100,
           policy: Policy = POLICY):
    return measure(events, drills or [], policy, NOV, DEC, DEC + 3600, NOV - 86400, last_seq)


def test_month_window() -> None:
    assert month_window("2026-11", 0) == (NOV, DEC, "2026-11")
    assert month_window(None, NOV + 5)[2] == "2026-11"
    with pytest.raises(UserError):
        month_window("2026-13", 0)
    with pytest.raises(UserError):
        month_window("november", 0)


@pytest.mark.parametrize("down, percent, credit", [
    (0, Fraction(100), 0),
    (2592, Fraction("99.9"), 0),  # exactly the target: not below it, nothing owed
    (2593, None, 10),
    (25920, Fraction(99), 10),  # exactly 99 %: below 99.9 but not below 99
    (25921, None, 25),
    (129600, Fraction(95), 25),  # exactly 95 %
    (129601, None, 100),
])
def test_availability_and_credit_boundaries(down: float, percent: Fraction | None, credit: int) -> None:
    m = _month([_down(NOV + 86400, down)] if down else [])
    if percent is not None:
        assert m.availability == percent
    assert m.availability_credit == credit
    assert m.credit == credit
    assert m.down_seconds == down
    assert m.measured_seconds == MONTH


def test_overlapping_causes_merge_into_one_incident() -> None:
    t = NOV + 10 * 86400
    m = _month([_down(t, 600, "probe", "the prober's put failed: HTTP 500"),
                _down(t + 300, 600, "errors", "12 of 20 requests failed with 5xx"),
                _down(t + 7200, 60, "gate", "DAV answered 503")])
    assert [(i.started_at, i.seconds) for i in m.incidents] == [(t, 900), (t + 7200, 60)]
    assert m.incidents[0].causes == ("the prober's put failed: HTTP 500",
                                     "12 of 20 requests failed with 5xx")
    assert m.down_seconds == 960


def test_incident_across_the_month_boundary_counts_only_inside() -> None:
    m = _month([_down(NOV - 600, 1200)])
    assert m.down_seconds == 600
    assert m.incidents[0].started_at == NOV


def test_time_before_measuring_began_is_not_counted() -> None:
    since = NOV + 15 * 86400
    m = measure([_down(since + 10, 1296)], [], POLICY, NOV, DEC, DEC, since, 1)
    assert m.measured_seconds == MONTH / 2
    assert m.availability == Fraction("99.9")  # 1296 s of 15 days
    assert measure([], [], POLICY, NOV, DEC, DEC, None, 1).availability is None


def test_open_incident_lasts_until_now() -> None:
    now = NOV + 86400
    m = measure([Event(DOWNTIME, "probe", now - 120, None, "down")], [], POLICY, NOV, DEC, now,
                NOV, 1)
    assert m.end == now
    assert m.incidents[0].ended_at is None and m.incidents[0].seconds == 120


def test_lag_spikes_are_rpo_breaches_with_the_worst_lag() -> None:
    t = NOV + 3 * 86400
    m = _month([Event(RPO_BREACH, "replica 1", t, t + 30, "behind", 7.5),
                Event(RPO_BREACH, "replica 1", t + 999, t + 1010, "behind", 31.0)])
    assert not m.rpo_met and m.rpo_worst == 31.0 and len(m.rpo_breaches) == 2
    assert m.availability == 100 and m.credit == 0  # lag is not downtime
    assert _month([]).rpo_met


def test_failed_drill_resolved_in_time_owes_nothing() -> None:
    t = NOV + 86400
    drills = [Drill(t, "r", 50, False, 3.0, "digests differ"), Drill(t + 3600, "r", 60, True, 5.0, "ok")]
    m = _month([], drills)
    assert [(e.started_at, e.ended_at) for e in m.drill_failures] == [(t, t + 3600)]
    assert m.durability_breaches == [] and m.credit == 0
    assert m.last_verified_restore == t + 3600


def test_failed_drill_unresolved_past_the_limit_is_a_durability_breach() -> None:
    t = NOV + 86400
    drills = [Drill(t, "r", 50, False, 3.0, "digests differ"),
              Drill(t + 49 * 3600, "r", 60, True, 5.0, "ok")]
    m = _month([], drills)
    assert [(e.started_at, e.ended_at) for e in m.durability_breaches] == [(t + 48 * 3600, t + 49 * 3600)]
    assert m.durability_credit == 100 and m.credit == 100 and m.availability_credit == 0
    # Still failing at the end of the month: the breach is open.
    assert _month([], drills[:1]).durability_breaches[0].ended_at is None


def test_data_loss_event_is_a_durability_breach() -> None:
    m = _month([Event(DURABILITY, "gate", NOV + 5, NOV + 60, "data loss detected")],
               policy=Policy(durability_credit=Fraction(50)))
    assert m.credit == 50


def test_rto_is_the_drill_time_scaled_to_the_full_change_log() -> None:
    t = NOV + 86400
    m = _month([], [Drill(t, "r", 500, True, 60.0, "ok"), Drill(t + 1, "r", 1000, True, 100.0, "ok")],
               last_seq=1000)
    assert m.rto_measured == 120.0 and m.rto_met
    slow = _month([], [Drill(t, "r", 10, True, 100.0, "ok")], last_seq=1000)
    assert slow.rto_measured == 10000.0 and slow.rto_met is False
    assert _month([]).rto_met is None


def test_last_verified_restore_age() -> None:
    now = NOV + 10 * 86400
    fresh = measure([], [Drill(now - 3600, "r", 1, True, 1.0, "ok")], POLICY, NOV, DEC, now, NOV, 1)
    stale = measure([], [Drill(now - 27 * 3600, "r", 1, True, 1.0, "ok")], POLICY, NOV, DEC, now, NOV, 1)
    assert fresh.restore_age_ok and not stale.restore_age_ok
    assert not measure([], [], POLICY, NOV, DEC, now, NOV, 1).restore_age_ok


def test_daily_bars() -> None:
    now = NOV + 2 * 86400 + 3600
    bars = daily([_down(NOV + 86400, 864)], 3, now, NOV)
    assert [b[0] for b in bars] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert bars[0][1] == 100 and bars[1][1] == 99 and bars[2][1] == 100
    assert daily([], 2, now, now - 60)[0][1] is None  # before measuring began


def test_reconcile_opens_closes_and_raises_the_worst_value() -> None:
    lag = Event(RPO_BREACH, "replica 1", 10.0, None, "behind", 3.0, id=1)
    probe = Event(DOWNTIME, "probe", 10.0, None, "PUT failed", id=2)
    ch = reconcile([lag, probe], [Condition(RPO_BREACH, "replica 1", "behind", 9.0),
                                  Condition(DOWNTIME, "gate", "503")], 20.0)
    assert ch.close == [2]
    assert [(e.source, e.started_at) for e in ch.open] == [("gate", 20.0)]
    assert [(e.id, e.value) for e in ch.update] == [(1, 9.0)]
    assert reconcile([lag], [Condition(RPO_BREACH, "replica 1", "behind", 2.0)], 30).update == []


def test_conditions_from_one_tick() -> None:
    status = Status("red", [], {"replicas": [{"lag_seconds": 1.0}, {"lag_seconds": 4.25}]})
    conds = conditions(Sample(1.0, False, 0.1, "put", "HTTP 500"), "regressed", (4, 2), status, POLICY)
    assert {(c.kind, c.source) for c in conds} == {
        (DOWNTIME, "probe"), (DOWNTIME, "gate"), (DURABILITY, "gate"), (DOWNTIME, "errors"),
        (RPO_BREACH, "replica 2")}
    assert [c.value for c in conds if c.kind == RPO_BREACH] == [4.25]
    # One failure in three requests, or two in two (too few to judge), is not downtime.
    assert conditions(Sample(1.0, True, 0.1, "all", "ok"), None, (3, 1), None, POLICY) == []
    assert conditions(None, None, (2, 2), None, POLICY) == []


def test_not_running_gap() -> None:
    assert not_running(None, 100.0, 30.0) is None
    assert not_running(80.0, 100.0, 30.0) is None
    gap = not_running(10.0, 100.0, 30.0)
    assert gap is not None and (gap.started_at, gap.ended_at) == (10.0, 100.0)


def test_external_samples_become_downtime() -> None:
    samples = [Sample(float(t), t not in (30, 40, 50), 0.01, "propfind" if t in (30, 40, 50) else "all",
                      "ConnectionRefusedError") for t in range(0, 100, 10)]
    events = downtime_from_samples(samples)
    assert [(e.started_at, e.ended_at) for e in events] == [(30.0, 60.0)]
    assert "propfind failed" in events[0].detail
    # A last failure stands for one usual interval; a failure followed by a long
    # silence (the prober itself stopped) for at most three.
    assert downtime_from_samples(samples[:4])[0].ended_at == 40.0
    gap = [Sample(0, True, 0, "all", ""), Sample(10, True, 0, "all", ""), Sample(20, False, 0, "put", "x"),
           Sample(900, True, 0, "all", "")]
    assert [(e.started_at, e.ended_at) for e in downtime_from_samples(gap)] == [(20.0, 50.0)]


def test_policy_from_settings_and_bad_credit_tables() -> None:
    p = Policy.from_settings(Settings(sla_credits="99:5, 99.95:1", sla_rto_minutes=30))
    assert p.credits == ((Fraction("99.95"), 1), (99, 5)) and p.rto_seconds == 1800
    assert p.availability == Fraction("99.9")
    for bad in ("99.9", "x:10", "99:101", "-1:5"):
        with pytest.raises(ConfigError):
            parse_credits(bad)
    with pytest.raises(ConfigError):
        Policy.from_settings(Settings(sla_rpo_seconds=0))
