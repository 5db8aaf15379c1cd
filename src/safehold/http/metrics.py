"""/metrics in the Prometheus text format (prometheus-client), computed on scrape
from the same status the CLI prints."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from safehold.backup.status import Status

VERDICTS = {"green": 0, "amber": 1, "red": 2}


class _StatusCollector(Collector):
    def __init__(self, status: Callable[[], Status]) -> None:
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        st = self.status()
        f = st.facts
        yield GaugeMetricFamily("safehold_last_committed_seq", "Highest committed change number",
                                value=f["last_seq"])
        yield GaugeMetricFamily("safehold_safety_verdict",
                                "0 green, 1 amber, 2 red (see safehold status)",
                                value=VERDICTS[st.verdict])
        per = {name: GaugeMetricFamily(name, text, labels=["replica"]) for name, text in (
            ("safehold_replica_shipped_seq", "Highest change number the replica holds"),
            ("safehold_replication_lag_seconds", "Age of the oldest change not yet on the replica"),
            ("safehold_replica_objects", "Objects in the replica at the last verify slice"),
            ("safehold_replica_bytes", "Bytes in the replica at the last verify slice"),
            ("safehold_replica_verify_progress_ratio",
             "Share of the replica's objects re-read in the current verify pass"),
            ("safehold_replica_verify_last_full_pass_timestamp_seconds",
             "When the last complete verify pass ended (0: never)"),
            ("safehold_replica_verify_problems",
             "Damaged or missing objects found by the verify pass (0 is healthy)"),
            ("safehold_replica_retention_timestamp_seconds",
             "When replica retention last ran (0: never)"),
            ("safehold_replica_retention_success", "1 if the last replica retention run passed"),
        )}
        for r in f["replicas"]:
            v, p = r["verify"], r.get("retention") or {}
            for name, value in (
                    ("safehold_replica_shipped_seq", r["shipped_seq"]),
                    ("safehold_replication_lag_seconds", r["lag_seconds"]),
                    ("safehold_replica_objects", r["objects"]),
                    ("safehold_replica_bytes", r["bytes"]),
                    ("safehold_replica_verify_progress_ratio", v["progress"]),
                    ("safehold_replica_verify_last_full_pass_timestamp_seconds",
                     v["last_full_pass"] or 0),
                    ("safehold_replica_verify_problems", len(v["problems"])),
                    ("safehold_replica_retention_timestamp_seconds", p.get("at") or 0),
                    ("safehold_replica_retention_success", 1 if p.get("ok") else 0)):
                per[name].add_metric([r["url"]], value)
        yield from per.values()
        drill = f.get("last_drill")
        yield GaugeMetricFamily("safehold_last_drill_timestamp_seconds",
                                "When the last restore drill ran (0: never)",
                                value=drill["at"] if drill else 0)
        yield GaugeMetricFamily("safehold_last_drill_success", "1 if the last drill passed",
                                value=1 if drill and drill["ok"] else 0)
        yield GaugeMetricFamily("safehold_next_drill_timestamp_seconds",
                                "When the server runs its next restore drill (0: not scheduled)",
                                value=f.get("next_drill_at") or 0)


def render(status: Callable[[], Status], extra: Sequence[Collector] = ()) -> bytes:
    """``extra``: collectors of other layers (the SLA figures, sla/metrics.py)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(status))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)
