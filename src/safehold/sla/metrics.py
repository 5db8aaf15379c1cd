"""The status page's figures in /metrics (Prometheus text format), computed on scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from safehold.sla.status_page import Overview, metrics


class SlaCollector(Collector):
    def __init__(self, overview: Callable[[], Overview]) -> None:
        self.overview = overview

    def collect(self) -> Iterator[GaugeMetricFamily]:
        f = metrics(self.overview())
        yield GaugeMetricFamily("safehold_sla_verdict", "0 operational, 1 degraded, 2 outage (/status)",
                                value=f["verdict"])
        if f["month_availability"] is not None:
            yield GaugeMetricFamily("safehold_sla_availability_percent",
                                    "Availability this calendar month so far, percent",
                                    value=f["month_availability"])
        yield GaugeMetricFamily("safehold_sla_open_incidents", "Open SLA incidents",
                                value=f["open_incidents"])
        yield GaugeMetricFamily("safehold_sla_last_verified_restore_timestamp_seconds",
                                "When a restore drill last passed (0: never)", value=f["last_restore"])
        yield GaugeMetricFamily("safehold_sla_credit_percent",
                                "Credit owed for this month so far under the SLA policy, percent",
                                value=f["credit"])
        if f["rto"] is not None:
            yield GaugeMetricFamily("safehold_sla_rto_seconds",
                                    "Worst measured whole-server restore time this month (drills, scaled)",
                                    value=f["rto"])
