"""Run one orchestrator replica: store, maintenance, gRPC 9090, HTTP 8080, health 8081, metrics 9091 (served by one
process, or by `serving_processes` of them together: orchestrator/processes.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ai_agents.config import OrchestratorLive, OrchestratorSettings
from ai_agents.lifecycle import Lifecycle, run_until_signalled, watch_loops
from ai_agents.live import LiveConfig, live_part
from ai_agents.live.subscribers import follow_log_level
from ai_agents.observability.logs import configure_logging
from ai_agents.observability.metrics import OrchestratorMetrics, new_registry
from ai_agents.observability.servers import health_app, metrics_app
from ai_agents.observability.tracing import configure_tracing
from ai_agents.orchestrator.grpc_api import SERVICE_NAMES, servicer_adders
from ai_agents.orchestrator.http_api import build_http_app
from ai_agents.orchestrator.maintenance import Maintenance
from ai_agents.orchestrator.processes import ServingSiblings, end_with_parent
from ai_agents.orchestrator.service import OrchestratorService
from ai_agents.serving.auth import TokenCheck
from ai_agents.serving.grpc_server import GrpcServer
from ai_agents.serving.http_server import HttpServer
from ai_agents.serving.http_transport import HttpLimits
from ai_agents.serving.identity import build_agent_authenticator
from ai_agents.serving.long_calls import LongCalls
from ai_agents.store.database import Database

log = logging.getLogger(__name__)


class Orchestrator(Lifecycle):
    """`run()` serves until `shutdown()` (ai_agents.lifecycle), supervising the maintenance loop.

    Its two halves are public for embedding the orchestrator in a test's event loop: `start()` returns once
    it serves; `stop()` drains (NOT_SERVING, grace) and closes, is idempotent and copes with a partial start.
    """

    def __init__(
        self,
        settings: OrchestratorSettings,
        metrics: OrchestratorMetrics | None = None,
        *,
        siblings: ServingSiblings | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        # Set when this is one of several serving processes on the same ports (orchestrator/processes.py).
        self._siblings = siblings
        self.metrics = metrics or OrchestratorMetrics(new_registry())
        self.live = LiveConfig(
            live_part(settings, OrchestratorLive),
            path=settings.config_file,
            metrics=self.metrics,
            poll_seconds=settings.config_poll_seconds,
        )
        self.live.subscribe(follow_log_level)
        self.database = Database(
            settings.database_url,
            min_size=settings.database_pool_min,
            max_size=settings.database_pool_max,
            agent_stale_seconds=settings.agent_stale_seconds,
            group_commit=settings.database_group_commit,
        )
        self._ready = False
        self._stopped = False
        self._servers: list[HttpServer] = []
        self._maintenance_task: asyncio.Task[None] | None = None
        self._live_task: asyncio.Task[None] | None = None
        self._alive_task: asyncio.Task[None] | None = None
        self.grpc: GrpcServer | None = None
        self.http: HttpServer | None = None
        self.health: HttpServer | None = None
        self.metrics_server: HttpServer | None = None

    async def _readiness(self) -> tuple[bool, str]:
        if not self._ready:
            return False, "starting" if not self._stopped else "stopping"
        if self._siblings is not None and not self._siblings.all_ready():
            return False, "serving processes starting"
        if not await self.database.ping():
            return False, "database unreachable"
        return True, "ok"

    def _liveness(self) -> tuple[bool, str]:
        stalled = [] if self._siblings is None else self._siblings.stalled()
        if stalled:
            return False, "serving process " + ", ".join(str(index) for index in stalled) + " stalled"
        return True, "ok"

    def on_reload_signal(self) -> None:
        self.live.request_reload()

    async def start(self) -> None:
        s = self.settings
        # Before anything serves: a request must never see the start values and then the file's.
        self.live.load()
        limits = HttpLimits.from_settings(s)
        # Health and metrics first, so probes answer (not ready) while migrations run.
        shared = self._siblings is not None
        self.health = HttpServer(
            health_app(self._readiness, self._liveness), s.host, s.health_port, limits=limits, shared_port=shared
        )
        self.metrics_server = HttpServer(
            metrics_app(self.metrics.registry), s.host, s.metrics_port, limits=limits, shared_port=shared
        )
        for server in (self.health, self.metrics_server):
            await server.start()
            self._servers.append(server)
        stores = await self.database.start(connect_timeout=s.database_connect_timeout_seconds)
        service = OrchestratorService(
            settings=s, live=self.live, database=self.database, stores=stores, metrics=self.metrics
        )
        tokens = TokenCheck(s.api_token.get_secret_value() if s.api_token else None)
        long_calls = LongCalls()  # the agents' streams, ended at stop rather than after the grace
        self.grpc = GrpcServer(
            host=s.host,
            port=s.grpc_port,
            metrics=self.metrics,
            tokens=tokens,
            max_message_bytes=s.max_message_bytes,
            add_servicers=servicer_adders(service, s.orchestrator_id, build_agent_authenticator(s), long_calls),
            service_names=SERVICE_NAMES,
            long_calls=long_calls,
        )
        await self.grpc.start()
        self.http = HttpServer(
            build_http_app(
                service,
                self.metrics,
                tokens,
                max_body_bytes=s.max_message_bytes,
                body_timeout_seconds=s.http_body_timeout_seconds,
            ),
            s.host,
            s.http_port,
            limits=limits,
            shared_port=shared,
        )
        await self.http.start()
        self._servers.append(self.http)
        maintenance = Maintenance(live=self.live, stores=stores, metrics=self.metrics)
        await maintenance.refresh_gauges()
        self._maintenance_task = asyncio.create_task(maintenance.run(self._shutdown_requested), name="maintenance")
        self._live_task = asyncio.create_task(self.live.watch(self._shutdown_requested), name="live-config")
        await self.grpc.set_serving(True)
        self._ready = True
        if self._siblings is not None:
            self._siblings.mark_ready()
            self._alive_task = asyncio.create_task(
                self._siblings.keep_alive(self._shutdown_requested), name="serving-process-alive"
            )
        if s.agent_identity == "none":
            log.warning("agent identity is off (AI_AGENTS_AGENT_IDENTITY=none): any client may act as any agent")
        log.info(
            "orchestrator serving",
            extra={
                "grpc_port": self.grpc.port,
                "http_port": self.http.port,
                "health_port": self.health.port,
                "metrics_port": self.metrics_server.port,
                "auth": tokens.enabled,
                "agent_identity": s.agent_identity,
            },
        )

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._ready = False
        # Also ends maintenance; a run() in progress (if any) then sees an orderly stop, not a failed loop.
        self.shutdown()
        grace = self.settings.shutdown_grace_seconds
        if self.grpc is not None:
            await self.grpc.stop(grace)
        for task in (self._maintenance_task, self._live_task, self._alive_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for server in reversed(self._servers):
            await server.stop()
        await self.database.close()
        log.info("orchestrator stopped")

    async def _serve(self, stop: asyncio.Event) -> None:
        try:
            await self.start()
            assert self._maintenance_task is not None and self._live_task is not None
            await watch_loops(stop, (self._maintenance_task, self._live_task))
        finally:
            await self.stop()


def serve(settings: OrchestratorSettings, siblings: ServingSiblings | None) -> int:
    """One serving process of `ai-agents orchestrator` (orchestrator/processes.py decides how many); exit status."""
    if siblings is not None:
        end_with_parent()
    orchestrator = Orchestrator(settings, siblings=siblings)
    configure_logging(
        component="orchestrator",
        level=settings.log_level,
        fmt=settings.log_format,
        counter=orchestrator.metrics.log_messages,
        fields=None if siblings is None else {"serving_process": siblings.index},
    )
    configure_tracing("ai-agents-orchestrator")
    return run_until_signalled(orchestrator)
