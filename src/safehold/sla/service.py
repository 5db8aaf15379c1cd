"""What the server holds of service levels: the policy, the built-in prober loop, the
request-outcome counter, the guard the canary writes under, and the status page and
metrics. http/app.py wires this in with a handful of lines."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable

import anyio

from safehold.backup.status import Status
from safehold.config import Settings
from safehold.core.guard import Guard
from safehold.core.guard import Policy as GuardPolicy
from safehold.sla import status_page
from safehold.sla.metrics import SlaCollector
from safehold.sla.monitor import Monitor, Outcomes
from safehold.sla.policy import Policy
from safehold.sla.prober import USER_AGENT
from safehold.store import sla as store_sla
from safehold.store.incidents import Incidents
from safehold.store.repo import Store

log = logging.getLogger("safehold.sla")
COMPACT_EVERY = 3600.0


def own_url(host: str, port: int) -> str:
    """The server's own listening address, as the built-in prober dials it."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Sla:
    def __init__(self, settings: Settings, store: Store, gate: Callable[[], str | None],
                 status: Callable[[], Status], clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.policy = Policy.from_settings(settings)
        self.gate = gate
        self.status = status
        self.clock = clock
        self.outcomes = Outcomes()
        self.collector = SlaCollector(self.overview)
        # The canary deletes one item per probe in a collection of one: the mass-
        # deletion guard would call that a burst (and, strict, refuse it).
        self.canary_guard = Guard(Incidents(store), GuardPolicy("off", 1 << 30, 1.0, 1.0))
        self.monitor: Monitor | None = None

    def count(self, status: int, user_agent: str | None) -> None:
        """A real request's outcome (the prober's own are samples, not counted here)."""
        if user_agent != USER_AGENT:
            self.outcomes.count(status)

    def overview(self) -> status_page.Overview:
        try:
            st: Status | None = self.status()
        except Exception:  # noqa: BLE001 - the page shows what it can
            log.error("status for /status failed:\n%s", traceback.format_exc())
            st = None
        return status_page.overview(self.store, self.policy, st, self.clock())

    def page(self) -> bytes:
        return status_page.render(self.overview(), self.policy)

    async def run(self) -> None:
        """The built-in prober: one synthetic transaction every sla_probe_seconds."""
        interval = float(self.settings.sla_probe_seconds)
        if interval <= 0:
            return
        try:
            self.monitor = await anyio.to_thread.run_sync(
                Monitor.local, self.store, self.policy, interval,
                own_url(self.settings.host, self.settings.port), self.gate, self.status,
                self.outcomes, self.clock)
            await anyio.to_thread.run_sync(self.monitor.start)
        except Exception:  # noqa: BLE001 - the server serves on; /status shows no data
            log.error("the SLA prober cannot start:\n%s", traceback.format_exc())
            return
        compacted = 0.0
        while True:
            await anyio.sleep(interval)
            try:
                await anyio.to_thread.run_sync(self.monitor.tick)
                if self.clock() - compacted > COMPACT_EVERY:
                    compacted = self.clock()
                    samples, changes = await anyio.to_thread.run_sync(
                        store_sla.compact, self.store, compacted)
                    if samples or changes:
                        log.info("SLA compaction: %d old samples, %d canary changes removed",
                                 samples, changes)
            except Exception:  # noqa: BLE001 - measuring goes on; the gap shows as no data
                log.error("SLA monitor tick failed:\n%s", traceback.format_exc())
