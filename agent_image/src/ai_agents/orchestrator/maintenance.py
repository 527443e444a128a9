"""Background work of every orchestrator replica: redeliver expired leases, refresh gauges, sweep agents.

Every replica runs it; SKIP LOCKED makes concurrent sweeps split the work instead of repeating it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ai_agents.config import OrchestratorLive
from ai_agents.domain import AGENT_TYPES, AgentState, TaskState
from ai_agents.errors import Unavailable
from ai_agents.live import LiveConfig
from ai_agents.observability.metrics import OrchestratorMetrics
from ai_agents.store.database import Stores

log = logging.getLogger(__name__)


class Maintenance:
    def __init__(self, *, live: LiveConfig[OrchestratorLive], stores: Stores, metrics: OrchestratorMetrics) -> None:
        # Intervals are read from the live settings each round, so a change applies from the next one.
        self._live = live
        self._stores = stores
        self._metrics = metrics
        self._last_gauges = 0.0
        self._last_sweep = 0.0

    async def expire_leases(self) -> int:
        expired = await self._stores.tasks.expire_leases()
        for lease in expired:
            self._metrics.lease_expiries.labels(lease.agent_type).inc()
            if lease.new_state == TaskState.QUEUED:
                self._metrics.redeliveries.labels(lease.agent_type).inc()
            else:
                self._metrics.tasks_completed.labels(lease.agent_type, lease.new_state).inc()
        if expired:
            log.info("expired leases returned", extra={"count": len(expired)})
        return len(expired)

    async def refresh_gauges(self) -> None:
        tasks = await self._stores.tasks.active_counts()
        agents = await self._stores.agents.counts()
        for agent_type in AGENT_TYPES:
            self._metrics.queue_depth.labels(agent_type).set(tasks.get((agent_type, TaskState.QUEUED), 0))
            self._metrics.tasks_leased.labels(agent_type).set(tasks.get((agent_type, TaskState.LEASED), 0))
            for state in (AgentState.ACTIVE, AgentState.DRAINING, AgentState.STALE):
                self._metrics.agents.labels(agent_type, state.value).set(agents.get((agent_type, state), 0))

    async def run_once(self) -> None:
        await self.expire_leases()
        now = time.monotonic()
        if now - self._last_gauges >= self._live.current.gauge_refresh_seconds:
            self._last_gauges = now
            await self.refresh_gauges()
        if now - self._last_sweep >= 60:
            self._last_sweep = now
            swept = await self._stores.agents.sweep(self._live.current.agent_sweep_seconds)
            if swept:
                log.info("silent agents deregistered", extra={"agents": swept})

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Unavailable as exc:
                # The database is down or restarting: the store already logs the outage (rate-limited) and
                # readiness reports it; a traceback every round would only bury that.
                log.debug("maintenance round skipped: %s", exc.message)
            except Exception:
                log.warning("maintenance round failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._live.current.maintenance_interval_seconds)
