"""/metrics in the Prometheus text format (prometheus-client), computed on scrape
from the same status the CLI prints."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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
        shipped = GaugeMetricFamily("safehold_replica_shipped_seq",
                                    "Highest change number the replica holds", labels=["replica"])
        lag = GaugeMetricFamily("safehold_replication_lag_seconds",
                                "Age of the oldest change not yet on the replica", labels=["replica"])
        for r in f["replicas"]:
            shipped.add_metric([r["url"]], r["shipped_seq"])
            lag.add_metric([r["url"]], r["lag_seconds"])
        yield shipped
        yield lag
        drill = f.get("last_drill")
        yield GaugeMetricFamily("safehold_last_drill_timestamp_seconds",
                                "When the last restore drill ran (0: never)",
                                value=drill["at"] if drill else 0)
        yield GaugeMetricFamily("safehold_last_drill_success", "1 if the last drill passed",
                                value=1 if drill and drill["ok"] else 0)


def render(status: Callable[[], Status]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(status))
    return generate_latest(registry)
